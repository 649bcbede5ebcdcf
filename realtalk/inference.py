"""RealTalk inference: source video + driving audio -> lip-synced frames at the source resolution.

Steps: face crops (harness.core.faces.clip_faces) -> 3D coefficients (realtalk.coefficients) -> audio tokens ->
expressions predicted window by window (T = 16 frames) -> mask -> renderer with the source's FIRST crop as
the reference -> paste the generated region back into the full frames.

History (paper: "randomly selected during training and inference"): each window's N historical expressions
are N of the source clip's fitted expressions drawn at random outside the source frames the window shows,
in time order -- realtalk.data.sample_history, exactly as in training; seeded per window
(default_rng([HISTORY_SEED, window])), so a rerun gives the same frames. No prediction is fed back.

Choices the paper leaves open (ours):
- Windows overlap by cfg.a2e.overlap frames (default 4 of 16: stride 12) and the expressions of the shared
  frames are crossfaded linearly (weights (m+1)/(O+1) rising, (O-m)/(O+1) falling, summing to 1), so the
  mouth does not jump at each window boundary. Both paths blend through the same per-frame function.
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
from realtalk.data import fit_tokens, sample_history, to_image
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


HISTORY_SEED = 0


def window_starts(n_frames: int, T: int, overlap: int) -> list[int]:
    """First frame of each window: stride T - overlap, the last window reaching past n_frames - 1."""
    stride = T - overlap
    if stride <= 0:
        raise ValueError(f"overlap {overlap} must be smaller than the window T={T}")
    k = 1 if n_frames <= T else math.ceil((n_frames - T) / stride) + 1
    return [i * stride for i in range(k)]


def window_weights(T: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """[T] crossfade weights of one window: linear ramps over the overlapped frames (none at the clip ends)."""
    j = np.arange(T, dtype=np.float64)
    w = np.ones(T)
    if overlap > 0:
        if not first:
            w = np.minimum(w, (j + 1) / (overlap + 1))
        if not last:
            w = np.minimum(w, (T - j) / (overlap + 1))
    return w


class WindowedExpressions:
    """Per-frame expressions of an n_frames output from overlapping A2E windows, computed lazily (the
    streaming path asks frame by frame, the batched one for all); every frame is blended the same way."""

    def __init__(self, pipe: "RealTalkPipeline", src: "Source", tokens: Tensor, n_frames: int):
        c = pipe.cfg.a2e
        self.pipe, self.src, self.tokens, self.n = pipe, src, tokens, n_frames
        self.T, self.O = c.T, c.overlap
        self.starts = window_starts(n_frames, c.T, c.overlap)
        K = len(self.starts)
        self.weights = [torch.as_tensor(window_weights(c.T, c.overlap, k == 0, k == K - 1), dtype=torch.float32,
                                        device=pipe.device) for k in range(K)]
        self._pred: dict[int, Tensor] = {}

    def history(self, k: int) -> Tensor:
        c, s0 = self.pipe.cfg.a2e, self.starts[k]
        shown = [pingpong_index(i, len(self.src)) for i in range(s0, s0 + self.T)]
        idx = sample_history(len(self.src), np.asarray(shown), c.n_history, np.random.default_rng([HISTORY_SEED, k]))
        return self.src.beta[torch.as_tensor(idx, device=self.src.beta.device)]

    def window(self, k: int) -> Tensor:
        if k not in self._pred:
            self._pred[k] = self.pipe.predict_window(self.tokens, self.starts[k], self.src.alpha, self.history(k))
        return self._pred[k]

    def frame(self, i: int) -> Tensor:
        """[n_exp] at output frame i: weighted mean over the (one or two) windows covering it."""
        acc, wsum = None, 0.0
        for k, s0 in enumerate(self.starts):
            if s0 <= i < s0 + self.T:
                w = self.weights[k][i - s0]
                term = w * self.window(k)[i - s0]
                acc = term if acc is None else acc + term
                wsum = wsum + w
        return acc / wsum

    def frames(self, ids: list[int]) -> Tensor:
        return torch.stack([self.frame(i) for i in ids])


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
        from realtalk.face_models import get_face_model

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
        """Crops, coefficients and reference features of the source (cached by harness.core.faces/coefficients).

        The face-track cache key names the source file and which of its frames these are: pass the frames'
        presentation timestamps (harness.core.media.Video.source_timestamps) when known; otherwise the frames'
        own bytes identify them, so a frame range that does not start at 0 never reuses another's track."""
        from realtalk.coefficients import clip_coefficients

        if faces is None:
            from harness.core.faces.clip import clip_faces

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
        """[tpf * n_pad, A] tokens covering n_frames up to the last window's end (edge padded)."""
        c = self.cfg.a2e
        n_pad = window_starts(n_frames, c.T, c.overlap)[-1] + c.T
        feats = np.asarray(self.featurizer.features(np.asarray(audio, np.float32)), np.float32)
        tokens = fit_tokens(fit_tokens(feats, n_frames, c.tokens_per_frame), n_pad, c.tokens_per_frame)
        return torch.from_numpy(tokens).to(self.device)

    # ------------------------------------------------------------------------------------------ A2E
    @torch.no_grad()
    def predict_window(self, tokens: Tensor, start: int, alpha: Tensor, history: Tensor) -> Tensor:
        """Expressions [T, n_exp] of the window starting at frame `start` from its audio tokens and history."""
        c = self.cfg.a2e
        lo = c.tokens_per_frame * start
        return self.a2e(tokens[lo:lo + c.n_audio_tokens][None], alpha, history[None])[0]

    @torch.no_grad()
    def expressions(self, src: Source, tokens: Tensor, n_frames: int) -> Tensor:
        """[n_frames, n_exp]: overlapping windows, crossfaded (WindowedExpressions)."""
        return WindowedExpressions(self, src, tokens, n_frames).frames(list(range(n_frames)))

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
        warped = None
        if self.cfg.renderer.output == "warp_residual":  # the reference (first crop) warped to the prediction
            from realtalk.warp import warp_reference

            # frame by frame, as the masks: batch-size-dependent GEMM rounding would make the paths differ
            warped = torch.cat([warp_reference(self.fm, src.crops[:1], src.alpha, src.beta[:1], src.rho[:1],
                                               beta_pred[j:j + 1], src.rho[s:s + 1]) for j, s in enumerate(idx)])
        i_hat, _ = self.renderer(src.crops[idx], None, mask, alpha, beta_pred, src.rho[idx], ref_feats=src.ref_feats,
                                 warped=warped)
        return i_hat, mask

    def stream_crops(self, src: Source, tokens: Tensor, n_frames: int) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Single-frame path: yields (source index, I_hat [3,H,W], mask [1,H,W]) frame by frame."""
        ex = WindowedExpressions(self, src, tokens, n_frames)
        for i in range(n_frames):
            s = pingpong_index(i, len(src))
            i_hat, mask = self.render(src, [s], ex.frames([i]))
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

        from harness.core.faces.crop import paste_frames_alpha

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
            from harness.core.media import write_video

            write_video(out_path, out, fps=fps, audio=audio, sample_rate=sample_rate)
        return out


def frames_identity(frames: np.ndarray) -> np.ndarray:
    """Stand-in for unknown source timestamps in a cache key: one float per frame from its content digest."""
    import hashlib

    return np.array([int.from_bytes(hashlib.blake2b(np.ascontiguousarray(f).tobytes(), digest_size=6).digest(), "big")
                     for f in frames], np.float64)


def to_uint8(x: Tensor) -> np.ndarray:
    """float [B,3,H,W] in [0,1] -> uint8 [B,H,W,3]."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
