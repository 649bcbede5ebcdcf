"""Reference "methods" that bound every metric: the real frames (ceiling) and a frozen frame (lip-sync floor).

ground_truth returns the source clip's own frames. In reconstruction they are the exact target, so every
metric's value for it is the sanity line (PSNR inf / SSIM 1 / sync = the real video's). In cross_audio it
STILL returns the source frames, which were spoken to different audio: there it is a "real video, wrong
audio" line (sync should drop to chance), and describe() labels it so.
static_frame repeats the first source frame n_frames times: no motion at all, the floor for lip sync.
copy_reference is what RealTalk's renderer would output if it copied its reference: each source frame with
RealTalk's generated region (realtalk.mask.lower_face_mask of that frame's fitted expression and pose: lower
face + neck) replaced by the FIRST frame's pixels at the same crop position, pasted back with the same
feathered alpha as realtalk.inference. A learned renderer has to beat it to show it uses the expressions.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from harness.core.methods import Method, MethodInput, register


def _fit_length(frames: np.ndarray, n: int) -> np.ndarray:
    """Exactly n frames: trim, or hold the last frame."""
    if len(frames) >= n:
        return frames[:n]
    return np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])


@register
class GroundTruth(Method):
    """The real source frames (trimmed / last-frame-padded to n_frames)."""

    name = "ground_truth"
    kind = "reference"

    def fingerprint(self) -> str:
        return "ground_truth:v1"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["label"] = {"reconstruction": "real frames (exact target: metric sanity line)",
                      "cross_audio": "real source frames, NOT driven by the cross audio (real-video / wrong-audio line)"}
        return d

    def generate(self, inp: MethodInput) -> np.ndarray:
        return _fit_length(np.asarray(inp.source_frames), int(inp.n_frames)).copy()

    def generate_chunks(self, inp: MethodInput, size: int) -> Iterator[np.ndarray]:
        """generate() chunk by chunk, for a long clip whose source decodes in chunks (harness.evaluate)."""
        from harness.core.frame_chunks import fitted_chunks

        yield from fitted_chunks(inp.source_frames, int(inp.n_frames), size)


@register
class StaticFrame(Method):
    """The first source frame repeated n_frames times: the lip-sync floor."""

    name = "static_frame"
    kind = "reference"

    def fingerprint(self) -> str:
        return "static_frame:v1"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["label"] = "first source frame held for the whole clip (no mouth motion: lip-sync floor)"
        return d

    def generate(self, inp: MethodInput) -> np.ndarray:
        first = np.asarray(inp.source_frames[:1])
        return np.repeat(first, int(inp.n_frames), axis=0)

    def generate_chunks(self, inp: MethodInput, size: int) -> Iterator[np.ndarray]:
        first = np.asarray(inp.source_frames[:1])
        for i in range(0, int(inp.n_frames), size):
            yield np.repeat(first, min(size, int(inp.n_frames) - i), axis=0)


@register
class CopyReference(Method):
    """Source frame i (pingpong past the end) with the first crop's pixels in frame i's masked region."""

    name = "copy_reference"
    kind = "reference"

    def __init__(self, feather_sigma: float = 2.0):
        self.feather_sigma = float(feather_sigma)

    def fingerprint(self) -> str:
        return f"copy_reference:v1:feather={self.feather_sigma}"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["label"] = ("source frames with the first frame's lower face pasted into RealTalk's mask region "
                      "(a renderer that copies its reference)")
        return d

    def generate(self, inp: MethodInput) -> np.ndarray:
        frames = np.asarray(inp.source_frames)
        paste, idx = self._paster(inp, frames)
        out = np.empty((len(idx),) + frames.shape[1:], np.uint8)
        for i, s in enumerate(idx):  # frame by frame, as realtalk.inference builds its masks
            out[i] = paste(s, frames[[s]])[0]
        return out

    def generate_chunks(self, inp: MethodInput, size: int) -> Iterator[np.ndarray]:
        """generate() chunk by chunk (the same frames), for a long clip whose source decodes in chunks: the
        source frames are read in one pass (a seek only where the pingpong turns back past the clip's end)."""
        from harness.core.frame_chunks import ForwardFrames

        frames = inp.source_frames
        paste, idx = self._paster(inp, frames)
        src = ForwardFrames(frames, size)
        for lo in range(0, len(idx), size):
            yield np.concatenate([paste(s, src.one(s)) for s in idx[lo:lo + size]])

    def _paster(self, inp: MethodInput, frames: Any) -> tuple[Any, list[int]]:
        """(paste(s, source frame s as [1,H,W,3]) -> output frame [1,H,W,3], the source index of each output
        frame): faces, coefficients and the first crop of the source, computed once."""
        import dataclasses
        from pathlib import Path
        from types import SimpleNamespace

        import cv2
        import torch

        from harness.core.faces.clip import clip_faces
        from harness.core.faces.crop import paste_frames_alpha
        from realtalk.coefficients import clip_coefficients
        from realtalk.face_models import load_default_face_model
        from realtalk.inference import frames_identity, pingpong_index
        from realtalk.mask import lower_face_mask

        ts = inp.source_timestamps
        if ts is None or len(ts) != len(frames):
            ts = frames_identity(frames)
        faces = clip_faces(SimpleNamespace(frames=frames, fps=inp.fps, path=Path(inp.source_video),
                                           source_timestamps=np.asarray(ts, np.float64)))
        fm = load_default_face_model()
        co = clip_coefficients(faces, fm)
        idx = [pingpong_index(i, len(frames)) for i in range(int(inp.n_frames))]
        alpha = torch.as_tensor(co.alpha, dtype=torch.float32)[None]
        beta = torch.as_tensor(co.beta, dtype=torch.float32)
        rho = torch.as_tensor(co.rho, dtype=torch.float32)
        ref = np.asarray(faces.crops[0])

        def paste(s: int, frame: np.ndarray) -> np.ndarray:
            m = lower_face_mask(fm, alpha, beta[s:s + 1], rho[s:s + 1], size=ref.shape[0])[0, 0].numpy()
            gen = 1.0 - m
            if self.feather_sigma > 0:
                gen = cv2.GaussianBlur(gen, (0, 0), self.feather_sigma)
            a8 = np.clip(np.rint(gen * 255), 0, 255).astype(np.uint8)
            track = dataclasses.replace(faces.crop_track, boxes=np.asarray(faces.crop_track.boxes)[[s]])
            return paste_frames_alpha(frame, ref[None], a8[None], track)

        return paste, idx
