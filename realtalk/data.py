"""Training data for both stages, built from a split's TRAIN clips.

Per clip: 256 face crops (harness.core.faces, cached there), 3D coefficients alpha/beta/rho
(realtalk.coefficients, cached there), and audio tokens (realtalk.audio_features, featurizer.tokens_per_frame per frame; cached
here through harness.core.cache). `max_frames` bounds the frames per clip (CPU demo training).

A2E samples: a window of T frames at t0: audio tokens [tpf*T, A] (tpf = the featurizer's tokens_per_frame),
alpha, beta[t0:t0+T], and N historical expressions "randomly selected during training and inference"
(paper): N frames of the clip drawn at random without replacement from the frames OUTSIDE the target
window, in time order (`sample_history`, the same function inference uses, so training and inference see
the same distribution; with replacement only when the clip has fewer than N such frames).
Renderer samples: frame t (target and, masked, source), a random other frame r of the clip as reference,
alpha, beta_t, rho_t, and beta_r, rho_r (the reference's own coefficients, for the warp prior).
"""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from harness.core.cache import default_cache, make_key

DATA_VERSION = "1"


@dataclass
class ClipData:
    clip_id: str
    crops: np.ndarray  # uint8 [T,256,256,3]
    alpha: np.ndarray  # [n_id]
    beta: np.ndarray  # [T,n_exp]
    rho: np.ndarray  # [T,n_pose]
    audio: np.ndarray  # [tpf*T, A] audio tokens (tpf = featurizer.tokens_per_frame)
    mask: np.ndarray | None = None  # uint8 [T,H,W] lower-face mask of each frame's own coefficients (1 = keep)
    teeth: np.ndarray | None = None  # uint8 [T,H,W] mouth-interior mask (the teeth loss region)
    role: str = "train"

    def __len__(self) -> int:
        return len(self.beta)


def fit_tokens(feats: np.ndarray, n_frames: int, per_frame: int = 2) -> np.ndarray:
    """Trim or edge-pad audio tokens to exactly per_frame * n_frames rows."""
    want = per_frame * n_frames
    if len(feats) >= want:
        return feats[:want]
    pad = np.repeat(feats[-1:] if len(feats) else np.zeros((1, feats.shape[1]), feats.dtype), want - len(feats), 0)
    return np.concatenate([feats, pad], 0)


def audio_tokens(audio: np.ndarray, n_frames: int, featurizer: Any, key_params: dict | None = None) -> np.ndarray:
    """featurizer.features(audio) fitted to tokens_per_frame*n_frames tokens, cached by the audio bytes + featurizer."""
    import hashlib

    cache = default_cache()
    digest = hashlib.sha256(np.ascontiguousarray(audio, np.float32).tobytes()).hexdigest()
    extra = dict(key_params or {})
    if getattr(featurizer, "cache_version", None) is not None:  # featurizers whose decoding may change
        extra["featurizer_version"] = featurizer.cache_version
    key = make_key("audiotok", DATA_VERSION, featurizer=featurizer.name, dim=featurizer.dim, audio=digest,
                   n=n_frames, **extra)
    arrays = cache.arrays(key, lambda: {"x": np.asarray(featurizer.features(audio), np.float32)})
    return fit_tokens(arrays["x"], n_frames, int(featurizer.tokens_per_frame))


def load_clip_data(entry: Any, root: str | Path | None, face_model: Any, featurizer: Any,
                   max_frames: int | None = None) -> ClipData:
    """Crops + coefficients + audio tokens of one split entry (first max_frames frames at 25 fps)."""
    from harness.core.faces.clip import clip_faces
    from harness.core.media import read_audio, read_video
    from harness.core.splits import load_clip_media, resolve
    from realtalk.coefficients import clip_coefficients

    if max_frames is None:
        video, audio = load_clip_media(entry, root)
    else:
        start, end = entry.frame_range if entry.frame_range else (0, None)
        n = max_frames if end is None else min(max_frames, end - start)
        video = read_video(resolve(root, entry.video), fps=25.0, start=start, max_frames=n)
        audio = read_audio(resolve(root, entry.audio_path()), 16000, start_s=start / 25.0, duration_s=len(video) / 25.0)
        want = len(video) * 640
        audio = np.pad(audio, (0, max(0, want - len(audio))))[:want].astype(np.float32)
    faces = clip_faces(video)
    coeffs = clip_coefficients(faces, face_model)
    n = len(faces.crops)
    return ClipData(clip_id=entry.clip_id, role=entry.role, crops=faces.crops,
                    alpha=np.asarray(coeffs.alpha, np.float32),
                    beta=np.asarray(coeffs.beta, np.float32), rho=np.asarray(coeffs.rho, np.float32),
                    audio=audio_tokens(audio, n, featurizer))


def split_entries(split: str, role: str | None = "train") -> list[Any]:
    """The split's entries of `role` (None: every role), in manifest order."""
    from harness.core.splits import load_split

    return [e for e in load_split(split).clips if role is None or e.role == role]


def iter_split_data(entries: list[Any], root: str | Path | None, face_model: Any, featurizer: Any,
                    max_frames: int | None = None, pool: Executor | None = None) -> Iterator[tuple[Any, ClipData]]:
    """(entry, ClipData) one clip at a time (load_clip_data: the ONE per-clip preparation, shared by
    load_split_data and `preprocess`); with `pool`, clips load in its worker processes, yielded in order."""
    if pool is not None:
        loaded = pool.map(load_clip_data, entries, repeat(root), repeat(face_model), repeat(featurizer),
                          repeat(max_frames))
    else:
        loaded = (load_clip_data(e, root, face_model, featurizer, max_frames=max_frames) for e in entries)
    yield from zip(entries, loaded)


def load_split_data(split: str, root: str | Path | None, face_model: Any, featurizer: Any, role: str = "train",
                    max_frames: int | None = None, min_frames: int = 40, log=print, pool: Executor | None = None
                    ) -> list[ClipData]:
    """ClipData for every clip of `role` in the split (clips shorter than min_frames are skipped), in split
    order; with `pool` (e.g. harness.core.pool.process_pool) clips load in its worker processes (face
    detection and landmarks are single-threaded). Holds the whole split in RAM: for real datasets use
    `realtalk-bench preprocess` (realtalk/shards.py) and train from the shards."""
    out = []
    for entry, cd in iter_split_data(split_entries(split, role), root, face_model, featurizer, max_frames, pool):
        if len(cd) < min_frames:
            log(f"skip {entry.clip_id}: {len(cd)} frames < {min_frames}")
            continue
        out.append(cd)
        log(f"loaded {entry.clip_id}: {len(cd)} frames")
    return out


def sample_history(n_frames: int, window: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """N sorted frame indices of an n_frames clip, at random, none in `window` (the frames being predicted).
    A clip no longer than the window (a 16-frame source) has no frame outside it: then all its frames are
    the pool (in reconstruction the history then holds target frames; counted nowhere else, so said here)."""
    if n_frames <= 0:
        raise ValueError("no frame to take history from (empty clip)")
    pool = np.setdiff1d(np.arange(n_frames), np.asarray(window, np.int64))
    if len(pool) == 0:
        pool = np.arange(n_frames)
    return np.sort(rng.choice(pool, size=n, replace=len(pool) < n))


class A2EWindows:
    """Random A2E windows over a list of clips (sampling with a numpy Generator: reproducible)."""

    def __init__(self, clips: list[ClipData], T: int = 16, n_history: int = 16, tokens_per_frame: int = 2):
        self.clips = [c for c in clips if len(c) >= T + 1]
        if not self.clips:
            raise ValueError(f"no clip has more than {T} frames")
        self.T, self.N, self.tpf = T, n_history, int(tokens_per_frame)
        self.weights = np.array([len(c) - T + 1 for c in self.clips], np.float64)
        self.weights /= self.weights.sum()

    def item(self, ci: int, t0: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        c, T, N, k = self.clips[ci], self.T, self.N, self.tpf
        hist = c.beta[sample_history(len(c), np.arange(t0, t0 + T), N, rng)]
        return {"audio": c.audio[k * t0:k * (t0 + T)], "alpha": c.alpha, "beta": c.beta[t0:t0 + T], "history": hist}

    def batch(self, b: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        items = []
        for _ in range(b):
            ci = int(rng.choice(len(self.clips), p=self.weights))
            t0 = int(rng.integers(0, len(self.clips[ci]) - self.T + 1))
            items.append(self.item(ci, t0, rng))
        return {k: torch.from_numpy(np.stack([it[k] for it in items])).float() for k in items[0]}


def to_image(crops: np.ndarray) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(255.0).contiguous()


class RendererFrames:
    """Random (target frame, reference frame) pairs from the same clip."""

    def __init__(self, clips: list[ClipData]):
        self.clips = [c for c in clips if len(c) >= 2]
        self.weights = np.array([len(c) for c in self.clips], np.float64)
        self.weights /= self.weights.sum()

    def batch(self, b: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        tgt, ref, alpha, beta, rho, rbeta, rrho = [], [], [], [], [], [], []
        for _ in range(b):
            c = self.clips[int(rng.choice(len(self.clips), p=self.weights))]
            t = int(rng.integers(len(c)))
            r = int(rng.integers(len(c) - 1))
            r = r + 1 if r >= t else r
            tgt.append(c.crops[t]); ref.append(c.crops[r])
            alpha.append(c.alpha); beta.append(c.beta[t]); rho.append(c.rho[t])
            rbeta.append(c.beta[r]); rrho.append(c.rho[r])
        f = lambda xs: torch.from_numpy(np.stack(xs)).float()  # noqa: E731
        return {"target": to_image(np.stack(tgt)), "reference": to_image(np.stack(ref)),
                "alpha": f(alpha), "beta": f(beta), "rho": f(rho), "ref_beta": f(rbeta), "ref_rho": f(rrho)}
