"""The `wav2lip` method: official Wav2Lip inference (face boxes + pads, 96x96 lower-half-masked faces,
16-frame mel windows, box paste-back), in-process, on the official checkpoints.

Follows Rudrabha/Wav2Lip inference.py: the box is the face detection with pads (top 0, bottom 10, left 0,
right 0) clipped to the frame; the crop is resized to 96x96 (cv2 bilinear), its lower half zeroed and
stacked with the unmasked crop as the reference (6 channels, BGR, /255); the prediction is resized back
to the box and written into the full frame. Differences, all forced by the harness: faces come from the
harness face track (dlib HOG by default, the official code uses S3FD: pass detector="s3fd"); the output
has exactly n_frames frames (frame i uses source frame i % T and mel window i, see audio.mel_windows).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.core import weights
from harness.core.errors import WeightsMissingError
from harness.core.methods import Method, MethodInput, register

from baselines.wav2lip.audio import HP, mel_windows

IMG_SIZE = 96
OFFICIAL_PADS = (0, 10, 0, 0)  # top, bottom, left, right (inference.py --pads default)
CHECKPOINT_KEYS = ("wav2lip", "wav2lip_gan")


def padded_boxes(boxes: np.ndarray, frame_hw: tuple[int, int], pads: tuple[int, int, int, int] = OFFICIAL_PADS
                 ) -> np.ndarray:
    """Official box rule: y1 = max(0, top - pady1), y2 = min(H, bottom + pady2), likewise x; int [T,4] x1,y1,x2,y2."""
    H, W = frame_hw
    pt, pb, pl, pr = pads
    b = np.asarray(boxes, dtype=np.float64)
    out = np.stack([np.maximum(0, b[:, 0] - pl), np.maximum(0, b[:, 1] - pt),
                    np.minimum(W, b[:, 2] + pr), np.minimum(H, b[:, 3] + pb)], axis=1)
    out = np.round(out).astype(np.int64)
    out[:, 2] = np.maximum(out[:, 2], out[:, 0] + 1)
    out[:, 3] = np.maximum(out[:, 3], out[:, 1] + 1)
    return out


def network_inputs(faces_bgr: np.ndarray) -> np.ndarray:
    """[B,96,96,3] uint8 BGR crops -> [B,6,96,96] float32: (lower half zeroed, unmasked reference) / 255."""
    masked = faces_bgr.copy()
    masked[:, IMG_SIZE // 2:] = 0
    x = np.concatenate([masked, faces_bgr], axis=3).astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@register
class Wav2LipMethod(Method):
    """Wav2Lip (or Wav2Lip+GAN with checkpoint='wav2lip_gan'), official checkpoints, in-process."""

    name = "wav2lip"
    kind = "in-process"

    def __init__(self, checkpoint: str = "wav2lip", batch_size: int = 32, device: str = "cpu",
                 detector: str = "dlib_hog", pads: tuple[int, int, int, int] = OFFICIAL_PADS, **_: Any):
        self.checkpoint = checkpoint
        self.batch_size = int(batch_size)
        self.device = device
        self.detector = detector
        self.pads = tuple(int(p) for p in pads)
        self._model = None

    # -- the checkpoint ---------------------------------------------------------------------------------
    def checkpoint_path(self) -> Path | None:
        if self.checkpoint in CHECKPOINT_KEYS:
            return weights.REGISTRY[self.checkpoint].path()
        return Path(self.checkpoint).expanduser()

    def _require(self) -> Path:
        if self.checkpoint in CHECKPOINT_KEYS:
            return weights.require(self.checkpoint)
        p = self.checkpoint_path()
        assert p is not None
        if not p.is_file():
            raise WeightsMissingError("Wav2Lip checkpoint not found", p,
                                      hint="pass checkpoint='wav2lip' | 'wav2lip_gan' or the path of an official .pth")
        return p

    def availability(self) -> tuple[bool, str]:
        try:
            self._require()
        except WeightsMissingError as e:
            return False, str(e)
        return True, ""

    def fingerprint(self) -> str:
        p = self.checkpoint_path()
        if p is None or not p.is_file():
            return f"wav2lip:{self.checkpoint}:missing"
        return weights.file_sha256(p)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(checkpoint=self.checkpoint, detector=self.detector, pads=list(self.pads), img_size=IMG_SIZE)
        return d

    def model(self):
        if self._model is None:
            from baselines.wav2lip.model import load_wav2lip

            self._model = load_wav2lip(self._require(), self.device)
        return self._model

    # -- inference --------------------------------------------------------------------------------------
    def face_boxes(self, frames: np.ndarray, name: str | Path | None = None) -> np.ndarray:
        """[T,4] int padded boxes (x1,y1,x2,y2) from the harness face track."""
        from harness.core.faces.track import track_faces

        track = track_faces(frames, self.detector, name=name)
        return padded_boxes(track.boxes, frames.shape[1:3], self.pads)

    def predict(self, mels: np.ndarray, faces_bgr: np.ndarray) -> np.ndarray:
        """mels [B,80,16], faces [B,96,96,3] uint8 BGR -> predicted faces [B,96,96,3] uint8 BGR (official
        `astype(np.uint8)` truncation)."""
        import torch

        model = self.model()
        out = []
        with torch.no_grad():
            for s in range(0, len(mels), self.batch_size):
                m = torch.from_numpy(np.ascontiguousarray(mels[s:s + self.batch_size, None])).to(self.device)
                f = torch.from_numpy(network_inputs(faces_bgr[s:s + self.batch_size])).to(self.device)
                pred = model(m, f).float().cpu().numpy().transpose(0, 2, 3, 1) * 255.0
                out.append(pred.astype(np.uint8))
        return np.concatenate(out) if out else np.zeros((0, IMG_SIZE, IMG_SIZE, 3), np.uint8)

    def generate(self, inp: MethodInput) -> np.ndarray:
        import cv2

        from harness.core.media import audio_frames

        if inp.sample_rate != HP.sample_rate:
            raise ValueError(f"wav2lip needs {HP.sample_rate} Hz audio, got {inp.sample_rate}")
        src = np.asarray(inp.source_frames)
        T = len(src)
        n = int(inp.n_frames)
        audio = audio_frames(inp.audio, n, inp.fps, inp.sample_rate)
        mels = mel_windows(audio, n, inp.fps)
        boxes = self.face_boxes(src, name=inp.source_video)
        idx = np.arange(n) % T
        faces = np.stack([cv2.resize(np.ascontiguousarray(src[i, y1:y2, x1:x2, ::-1]), (IMG_SIZE, IMG_SIZE))
                          for i, (x1, y1, x2, y2) in zip(idx, boxes[idx])])
        pred = self.predict(mels, faces)
        out = src[idx].copy()
        for k, (i, (x1, y1, x2, y2)) in enumerate(zip(idx, boxes[idx])):
            out[k, y1:y2, x1:x2] = cv2.resize(pred[k], (int(x2 - x1), int(y2 - y1)))[:, :, ::-1]
        return out

    def latency_stages(self, *, device: str = "cpu", batch: int = 1, dtype: str = "fp32", compile: bool = False,
                       cuda_graphs: bool = False) -> list[Any]:
        """The generator on [B,6,96,96] faces + [B,1,80,16] mels (official weights if present, else random)."""
        from baselines.wav2lip.latency import latency_stages_for_method

        return latency_stages_for_method(self, device=device, batch=batch, dtype=dtype, compile=compile,
                                         cuda_graphs=cuda_graphs)
