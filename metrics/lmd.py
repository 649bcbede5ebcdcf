"""Landmark distance (LMD, M-LMD, F-LMD; lower is better) between generated and ground-truth crops.

68-point iBUG landmarks on both 256x256 crops (same crop track, so pixel-aligned); each frame's set is
centred on its own mean over all 68 points (removes a global shift: the measure is shape/motion, not
position); per-point L2 distance in 256x256 px, averaged over the points of a group and over frames.
Groups: LMD all 68, M-LMD mouth 48-67, F-LMD face 0-47. Frames where either side has no landmarks are
excluded and counted in extra. Ground-truth landmarks are cached (key: crop bytes + backend + weights).
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, ClassVar

import numpy as np

from metrics.base import ClipInput, ClipResult, Metric, Protocol, register

GROUPS = {"LMD": slice(0, 68), "M-LMD": slice(48, 68), "F-LMD": slice(0, 48)}
BACKENDS = ("dlib", "fan")
CACHE_VERSION = "1"
RESOLUTION = 256


def lmd_frames(gen_lm: np.ndarray, gt_lm: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-frame distances {group: [T]} (nan on excluded frames) and the bool mask of used frames."""
    g = np.asarray(gen_lm, np.float64)
    r = np.asarray(gt_lm, np.float64)
    ok = np.isfinite(g).all(axis=(1, 2)) & np.isfinite(r).all(axis=(1, 2))
    g = g - g.mean(axis=1, keepdims=True)
    r = r - r.mean(axis=1, keepdims=True)
    d = np.linalg.norm(g - r, axis=2)  # [T,68]
    per = {k: np.where(ok, d[:, s].mean(axis=1), np.nan) for k, s in GROUPS.items()}
    return per, ok


@register
class LMD(Metric):
    name: ClassVar[str] = "lmd"
    outputs: ClassVar[tuple[str, ...]] = ("LMD", "M-LMD", "F-LMD")
    higher_is_better: ClassVar[dict[str, bool]] = {"LMD": False, "M-LMD": False, "F-LMD": False}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def __init__(self, batch_size: int = 32, device: str = "cpu", backend: str = "dlib",
                 landmarks_fn: Callable[[np.ndarray], np.ndarray] | None = None, cache: Any = None) -> None:
        """landmarks_fn: crops [T,H,W,3] -> [T,68,2] (nan rows where none); default harness.faces."""
        super().__init__(batch_size, device)
        if backend not in BACKENDS:
            raise ValueError(f"lmd backend {backend!r} not in {BACKENDS}")
        self.backend = backend
        self._landmarks_fn = landmarks_fn
        self._landmarker: Any = None
        self._cache = cache

    def _weights_key(self) -> str:
        return {"dlib": "dlib_landmarks68", "fan": "fan_2d"}[self.backend]

    def availability(self) -> tuple[bool, str]:
        from harness import weights

        state, path, _ = weights.check(self._weights_key())
        if state in ("found", "unverified"):
            return True, ""
        return False, f"{weights.REGISTRY[self._weights_key()].filename} {state} at {path}"

    def protocol(self) -> Protocol:
        from harness import weights

        state, _, digest = weights.check(self._weights_key())
        return Protocol(metric="LMD", backend=self.backend, weights_sha256=digest,
                        crop="gt crop track, 256x256 RGB uint8", resolution=RESOLUTION, fps=25.0,
                        settings={"points": "iBUG 68", "groups": {"LMD": "0-67", "M-LMD": "48-67", "F-LMD": "0-47"},
                                  "centering": "each frame's 68 points minus their mean", "units": "px at 256x256",
                                  "reduce": "mean over points, then frames; frames without landmarks on either side excluded",
                                  "landmarks_on_crops": "harness.faces.landmarks_on_crops (prior box confirmed by detector)",
                                  "weights_state": state})

    def landmarks(self, crops: np.ndarray) -> np.ndarray:
        if self._landmarks_fn is not None:
            return self._landmarks_fn(crops)
        from harness.faces import clip as faces_clip
        from harness.faces.landmarks import get_landmarker

        if self._landmarker is None:
            self._landmarker = get_landmarker(self.backend)
        return faces_clip.landmarks_on_crops(crops, self._landmarker)

    def _gt_landmarks(self, gt: np.ndarray) -> np.ndarray:
        from harness.cache import default_cache, make_key

        if self._landmarks_fn is not None:  # custom landmarker: no cache identity to key on
            return self.landmarks(gt)
        cache = self._cache if self._cache is not None else default_cache()
        digest = hashlib.sha256(np.ascontiguousarray(gt).tobytes()).hexdigest()
        key = make_key("lmdgt", CACHE_VERSION, backend=self.backend, weights=self.protocol().weights_sha256,
                       crops=digest, shape=list(gt.shape))
        return cache.arrays(key, lambda: {"landmarks": self.landmarks(gt)})["landmarks"]

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        from harness.errors import NoFaceError
        from metrics.ssim import _pair

        gen, gt = _pair(clip)
        scale = RESOLUTION / gt.shape[1]
        per, ok = lmd_frames(self.landmarks(gen) * scale, self._gt_landmarks(gt) * scale)
        if not ok.any():
            raise NoFaceError(f"clip {clip.clip_id}: no frame has landmarks on both generated and ground truth")
        values = {k: float(np.nanmean(v)) for k, v in per.items()}
        return ClipResult(values=values, per_frame=per,
                          extra={"frames_used": int(ok.sum()), "frames_excluded": int((~ok).sum()),
                                 "excluded_frames": np.flatnonzero(~ok).tolist()})
