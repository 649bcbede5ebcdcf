"""RealTalk inference: source video + driving audio -> lip-synced frames at the source resolution.

Steps: face crops (harness.faces.clip_faces) -> 3D coefficients (realtalk.coefficients) -> audio tokens ->
expressions predicted window by window (T = 16 frames) -> mask -> renderer with the source's FIRST crop as
the reference -> paste the generated region back into the full frames.

Choices the paper leaves open (ours):
- History: the first window's N historical expressions are N evenly spaced frames of the source clip's
  fitted expressions (the paper samples them from the source; evenly spaced, not the first N frames, so
  a reconstruction run does not hand the first window its own ground truth); every later window uses
  the previous window's predictions.
- Audio longer than the source: source frames are reused ping-pong (0..n-1, n-2..0, ...).
- Mask: min of the lower-face masks of the source frame's expression and of the predicted expression
  (both with the source pose), so the region generated covers both mouths.
- Paste-back: only the generated region (1 - M, Gaussian-feathered) replaces source pixels; the rest
  of the frame keeps its full-resolution source pixels.
Two paths with identical output (tested): `generate(..., streaming=False)` renders batches of frames;
`stream_crops` yields one rendered frame at a time (A2E runs when a new window starts).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from realtalk.a2e import AudioToExpression
from realtalk.config import RealTalkConfig
from realtalk.data import fit_tokens, to_image
from realtalk.renderer import Renderer


@dataclass
class Source:
    """Everything derived from the source clip once."""

    frames: np.ndarray  # uint8 [S,H,W,3]
    faces: Any  # ClipFaces
    crops: Tensor  # float [S,3,256,256]
    alpha: Tensor  # [1,n_id]
    beta: Tensor  # [S,n_exp]
    rho: Tensor  # [S,n_pose]
    ref_feats: dict[int, Tensor]

    def __len__(self) -> int:
        return len(self.frames)


def pingpong_index(i: int, n: int) -> int:
    """Frame of an n-frame source shown at output frame i (0..n-1, n-2..1, 0.. repeating)."""
    if n <= 1:
        return 0
    period = 2 * n - 2
    k = i % period
    return k if k < n else period - k


def history_from_source(beta: np.ndarray | Tensor, n: int) -> Tensor:
    """N evenly spaced source expressions, in time order ([N, n_exp])."""
    beta = torch.as_tensor(beta)
    idx = np.linspace(0, len(beta) - 1, n).round().astype(int)
    return beta[idx]


class RealTalkPipeline:
    """Both networks + the face model + the audio featurizer, on one device, in eval mode.

    channels_last (default off): the renderer's weights in NHWC, which the CPU convolution kernels run about
    30% faster (small config, batch 8: 101 vs 143 ms/frame measured here), but NHWC kernels round
    differently at batch 1 and batch 8, so the streaming and batched paths then differ by up to 2 grey
    levels instead of agreeing to 1e-5; off keeps them the same frames."""

    def __init__(self, a2e: AudioToExpression, renderer: Renderer, cfg: RealTalkConfig, face_model: Any,
                 featurizer: Any, device: str = "cpu", feather_sigma: float = 2.0, channels_last: bool = False):
        self.a2e = a2e.to(device).eval()
        self.renderer = renderer.to(device).eval()
        if channels_last:
            self.renderer = self.renderer.to(memory_format=torch.channels_last)
        self.cfg = cfg
        self.fm = face_model.to(device) if hasattr(face_model, "to") else face_model
        self.featurizer = featurizer
        self.device = torch.device(device)
        self.feather_sigma = feather_sigma

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", channels_last: bool = False) -> "RealTalkPipeline":
        from realtalk.audio_features import get_featurizer
        from realtalk.face_model import get_face_model

        ck = torch.load(Path(path), map_location="cpu", weights_only=False)
        cfg = RealTalkConfig.from_dict(ck["config"])
        a2e, ren = AudioToExpression(cfg.a2e), Renderer(cfg.renderer)
        a2e.load_state_dict(ck["a2e"])
        ren.load_state_dict(ck["renderer"])
        fm_name, _, fm_fp = str(ck.get("face_model", "landmark68:")).partition(":")
        fm = get_face_model(fm_name)
        if fm_fp and fm.fingerprint() != fm_fp:
            import warnings

            warnings.warn(f"{path}: trained with face model {fm_name}:{fm_fp}, found {fm.fingerprint()}", stacklevel=2)
        return cls(a2e, ren, cfg, fm, get_featurizer(ck.get("featurizer", "logmel")), device,
                   channels_last=channels_last)

    # ------------------------------------------------------------------------------------------ source
    @torch.no_grad()
    def prepare(self, frames: np.ndarray, fps: float = 25.0, source_path: str | Path | None = None,
                faces: Any = None, source_timestamps: np.ndarray | None = None) -> Source:
        """Crops, coefficients and reference features of the source (cached by harness.faces/coefficients).

        The face-track cache key names the source file and which of its frames these are: pass the frames'
        presentation timestamps (harness.media.Video.source_timestamps) when known; otherwise the frames'
        own bytes identify them, so a frame range that does not start at 0 never reuses another's track."""
        from realtalk.coefficients import clip_coefficients

        if faces is None:
            from harness.faces.clip import clip_faces

            if source_path is None:
                raise ValueError("source_path is needed to cache the face track (or pass faces=)")
            if source_timestamps is None or len(source_timestamps) != len(frames):
                source_timestamps = frames_identity(frames)
            video = SimpleNamespace(frames=frames, fps=fps, path=Path(source_path),
                                    source_timestamps=np.asarray(source_timestamps, np.float64))
            faces = clip_faces(video)
        coeffs = clip_coefficients(faces, self.fm)
        dev = self.device
        crops = to_image(faces.crops).to(dev)
        ref_feats = self.renderer.encode_reference(crops[:1])
        return Source(frames=frames, faces=faces, crops=crops,
                      alpha=torch.as_tensor(coeffs.alpha, dtype=torch.float32, device=dev)[None],
                      beta=torch.as_tensor(coeffs.beta, dtype=torch.float32, device=dev),
                      rho=torch.as_tensor(coeffs.rho, dtype=torch.float32, device=dev), ref_feats=ref_feats)

    def audio_tokens(self, audio: np.ndarray, n_frames: int) -> Tensor:
        """[2 * T * n_windows, A] tokens covering n_frames rounded up to whole windows (edge padded)."""
        T = self.cfg.a2e.T
        n_pad = math.ceil(n_frames / T) * T
        feats = np.asarray(self.featurizer.features(np.asarray(audio, np.float32)), np.float32)
        tokens = fit_tokens(fit_tokens(feats, n_frames, self.cfg.a2e.tokens_per_frame), n_pad,
                            self.cfg.a2e.tokens_per_frame)
        return torch.from_numpy(tokens).to(self.device)

    # ------------------------------------------------------------------------------------------ A2E
    @torch.no_grad()
    def predict_window(self, tokens: Tensor, k: int, alpha: Tensor, history: Tensor) -> Tensor:
        """Expressions [T, n_exp] of window k from its 2T audio tokens and the N-frame history."""
        c = self.cfg.a2e
        lo = 2 * c.T * k
        return self.a2e(tokens[lo:lo + c.n_audio_tokens][None], alpha, history[None])[0]

    @torch.no_grad()
    def expressions(self, src: Source, tokens: Tensor, n_frames: int) -> Tensor:
        """[n_frames, n_exp]: window by window, history = source samples first, then previous predictions."""
        c = self.cfg.a2e
        hist = history_from_source(src.beta, c.n_history).to(self.device)
        out = []
        for k in range(math.ceil(n_frames / c.T)):
            pred = self.predict_window(tokens, k, src.alpha, hist)
            out.append(pred)
            hist = _next_history(hist, pred, c.n_history)
        return torch.cat(out)[:n_frames]

    # ------------------------------------------------------------------------------------------ renderer
    @torch.no_grad()
    def masks(self, src: Source, idx: list[int], beta_pred: Tensor) -> Tensor:
        """Frame by frame: the face model's GEMM rounds differently at batch 1 and batch 8 (CPU-dependent),
        and a 1e-5 px vertex shift can flip a rasterised pixel, so batching would change the mask."""
        from realtalk.mask import lower_face_mask

        size = self.cfg.renderer.size
        out = []
        for j, s in enumerate(idx):
            rho = src.rho[s:s + 1]
            m_src = lower_face_mask(self.fm, src.alpha, src.beta[s:s + 1], rho, size=size)
            m_pred = lower_face_mask(self.fm, src.alpha, beta_pred[j:j + 1], rho, size=size)
            out.append(torch.minimum(m_src, m_pred))
        return torch.cat(out).to(self.device).float()

    @torch.no_grad()
    def render(self, src: Source, idx: list[int], beta_pred: Tensor) -> tuple[Tensor, Tensor]:
        """(I_hat [b,3,H,W] in [0,1], mask [b,1,H,W]) for output frames whose source frames are idx."""
        mask = self.masks(src, idx, beta_pred)
        alpha = src.alpha.expand(len(idx), -1)
        i_hat, _ = self.renderer(src.crops[idx], None, mask, alpha, beta_pred, src.rho[idx], ref_feats=src.ref_feats)
        return i_hat, mask

    def stream_crops(self, src: Source, tokens: Tensor, n_frames: int) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Single-frame path: yields (source index, I_hat [3,H,W], mask [1,H,W]) frame by frame."""
        c = self.cfg.a2e
        hist = history_from_source(src.beta, c.n_history).to(self.device)
        pred = None
        for i in range(n_frames):
            k, j = divmod(i, c.T)
            if j == 0:
                if pred is not None:
                    hist = _next_history(hist, pred, c.n_history)
                pred = self.predict_window(tokens, k, src.alpha, hist)
            s = pingpong_index(i, len(src))
            i_hat, mask = self.render(src, [s], pred[j:j + 1])
            yield s, i_hat[0], mask[0]

    def batched_crops(self, src: Source, tokens: Tensor, n_frames: int, batch_size: int = 8
                      ) -> Iterator[tuple[list[int], Tensor, Tensor]]:
        """Batched path: all expressions first, then renderer batches of batch_size frames."""
        betas = self.expressions(src, tokens, n_frames)
        for lo in range(0, n_frames, batch_size):
            ids = list(range(lo, min(n_frames, lo + batch_size)))
            idx = [pingpong_index(i, len(src)) for i in ids]
            i_hat, mask = self.render(src, idx, betas[ids])
            yield idx, i_hat, mask

    # ------------------------------------------------------------------------------------------ frames
    def paste(self, src: Source, idx: list[int], i_hat: Tensor, mask: Tensor) -> np.ndarray:
        """Full-resolution frames: generated region (feathered 1 - M) over the source frames."""
        import cv2

        from harness.faces.crop import paste_frames_alpha

        ct = src.faces.crop_track
        track = dataclasses.replace(ct, boxes=np.asarray(ct.boxes)[idx])
        gen = (1.0 - mask[:, 0]).clamp(0, 1).cpu().numpy().astype(np.float32)
        if self.feather_sigma > 0:
            gen = np.stack([cv2.GaussianBlur(g, (0, 0), self.feather_sigma) for g in gen])
        a8 = np.clip(np.rint(gen * 255), 0, 255).astype(np.uint8)
        return paste_frames_alpha(src.frames[idx], to_uint8(i_hat), a8, track)

    def generate(self, frames: np.ndarray, audio: np.ndarray, n_frames: int, fps: float = 25.0,
                 source_path: str | Path | None = None, streaming: bool = False, batch_size: int = 8,
                 out_path: str | Path | None = None, sample_rate: int = 16000, faces: Any = None,
                 source_timestamps: np.ndarray | None = None) -> np.ndarray:
        """uint8 [n_frames,H,W,3] at the source resolution; also written (with the audio) to out_path."""
        src = self.prepare(frames, fps, source_path, faces=faces, source_timestamps=source_timestamps)
        tokens = self.audio_tokens(audio, n_frames)
        out = np.empty((n_frames,) + frames.shape[1:], np.uint8)
        if streaming:
            for i, (s, i_hat, mask) in enumerate(self.stream_crops(src, tokens, n_frames)):
                out[i] = self.paste(src, [s], i_hat[None], mask[None])[0]
        else:
            i = 0
            for idx, i_hat, mask in self.batched_crops(src, tokens, n_frames, batch_size):
                out[i:i + len(idx)] = self.paste(src, idx, i_hat, mask)
                i += len(idx)
        if out_path is not None:
            from harness.media import write_video

            write_video(out_path, out, fps=fps, audio=audio, sample_rate=sample_rate)
        return out


def frames_identity(frames: np.ndarray) -> np.ndarray:
    """Stand-in for unknown source timestamps in a cache key: one float per frame from its content digest."""
    import hashlib

    return np.array([int.from_bytes(hashlib.blake2b(np.ascontiguousarray(f).tobytes(), digest_size=6).digest(), "big")
                     for f in frames], np.float64)


def _next_history(hist: Tensor, pred: Tensor, n: int) -> Tensor:
    return torch.cat([hist, pred])[-n:]


def to_uint8(x: Tensor) -> np.ndarray:
    """float [B,3,H,W] in [0,1] -> uint8 [B,H,W,3]."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
