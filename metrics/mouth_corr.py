"""Mouth-opening correlation (mouth_r; higher is better, in [-1, 1]): does the generated mouth open and close when
the ground truth's does?

Ours (issue 14's figure; no published evaluation code defines it, so the protocol says "ours"). Per frame, the
inner-lip gap = the mean distance of the iBUG inner-lip pairs (61,67), (62,66), (63,65) in px at 256x256, on
the LMD metric's landmarks (metrics.lmd.LMD.landmark_pair: same backend, same ground-truth landmark cache);
per clip, the Pearson correlation (as numpy.corrcoef / scipy.stats.pearsonr) of the generated and the
ground-truth series over the frames where both sides have landmarks. A series without variation (a still
frame, a frozen mouth) has no correlation: the clip's value is NaN, counted by the run as a missing clip
(n_missing), never dropped silently; so is a clip with fewer than `min_frames` frames with landmarks on both
sides. M-LMD measures how far the mouth is from the ground truth's shape; mouth_r, whether it moves in time
with it (a mouth that moves the right way with a smaller amplitude still scores high).
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

from metrics.base import FRAMES_TOTAL, FRAMES_USED, ChunkState, ClipInput, ClipResult, Metric, Protocol, register
from metrics.lmd import LMD, RESOLUTION

INNER_PAIRS = ((61, 67), (62, 66), (63, 65))  # iBUG 68: upper / lower inner-lip points facing each other
MIN_FRAMES = 10  # a correlation over fewer frames (with landmarks on both sides) is not reported


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """[T,68,2] -> [T] inner-lip gap in the landmarks' px (nan where a frame has no landmarks)."""
    lm = np.asarray(lm, np.float64)
    return np.mean([np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in INNER_PAIRS], axis=0)


def pearson(x: np.ndarray, y: np.ndarray, min_frames: int = MIN_FRAMES) -> float:
    """Pearson r over the frames where both series are finite; NaN for fewer than min_frames such frames or a
    series without variation (r is undefined there, not 0)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < min_frames:
        return float("nan")
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def mouth_r_result(gen_lm: np.ndarray, gt_lm: np.ndarray, min_frames: int = MIN_FRAMES) -> ClipResult:
    """The clip's mouth_r from landmark pairs [T,68,2] (px at 256x256), with the per-frame gaps and the counts
    (frames_used = frames with landmarks on both sides; why a value is NaN in extra["nan_reason"])."""
    g, r = mouth_opening(gen_lm), mouth_opening(gt_lm)
    ok = np.isfinite(g) & np.isfinite(r)
    value = pearson(g, r, min_frames)
    extra: dict[str, Any] = {FRAMES_USED: int(ok.sum()), FRAMES_TOTAL: int(len(ok)),
                             "frames_excluded": int((~ok).sum())}
    if np.isnan(value):
        if ok.sum() < min_frames:
            extra["nan_reason"] = f"{int(ok.sum())} frames with landmarks on both sides (< {min_frames})"
        else:
            still = [side for side, s in (("generated", g), ("ground truth", r)) if np.ptp(s[ok]) == 0]
            extra["nan_reason"] = f"no variation in the {' and '.join(still)} mouth opening"
    return ClipResult(values={"mouth_r": value}, per_frame={"gap_gen": g, "gap_gt": r}, extra=extra)


@register
class MouthCorr(Metric):
    """mouth_r: Pearson r of the generated vs ground-truth per-frame inner-lip gap (ours; LMD's landmarks)."""

    name: ClassVar[str] = "mouth_r"
    outputs: ClassVar[tuple[str, ...]] = ("mouth_r",)
    higher_is_better: ClassVar[dict[str, bool | None]] = {"mouth_r": True}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def __init__(self, batch_size: int = 32, device: str = "cpu", backend: str = "dlib", min_frames: int = MIN_FRAMES,
                 landmarks_fn: Callable[[np.ndarray], np.ndarray] | None = None, cache: Any = None) -> None:
        """backend: the landmark backend ("dlib" | "fan"), as LMD's; landmarks_fn / cache: as LMD's."""
        super().__init__(batch_size, device)
        self.min_frames = int(min_frames)
        self._lmd = LMD(batch_size, device, backend=backend, landmarks_fn=landmarks_fn, cache=cache)

    @property
    def backend(self) -> str:
        return self._lmd.backend

    def config(self) -> dict[str, Any]:
        return {"backend": self.backend, "min_frames": self.min_frames}

    def availability(self) -> tuple[bool, str]:
        return self._lmd.availability()

    def protocol(self) -> Protocol:
        lmd = self._lmd.protocol()
        return Protocol(metric="mouth_r", backend=self.backend, weights_sha256=lmd.weights_sha256,
                        crop=lmd.crop, resolution=RESOLUTION, fps=25.0,
                        settings={"reference": "ours (issue 14): no published evaluation code defines it",
                                  "landmark_backend": self.backend, "landmarks": "metrics.lmd.LMD.landmark_pair",
                                  "landmarks_on_crops": lmd.settings["landmarks_on_crops"],
                                  "opening": "mean L2 of iBUG inner-lip pairs "
                                             + ", ".join(f"({a},{b})" for a, b in INNER_PAIRS) + ", px at 256x256",
                                  "correlation": "Pearson r over frames with landmarks on both sides, per clip",
                                  "min_frames": self.min_frames,
                                  "nan": "no variation on either side, or fewer than min_frames frames: NaN, "
                                         "counted as a missing clip",
                                  "weights_state": lmd.settings["weights_state"]})

    chunked: ClassVar[bool] = True  # LMD's landmark pair fed in chunks (LMD.pair_start / pair_update)

    def start(self, clip: ClipInput) -> ChunkState:
        return self._lmd.pair_start(clip)

    def update(self, state: ChunkState, generated: np.ndarray, ground_truth: np.ndarray | None) -> None:
        self._lmd.pair_update(state, generated, ground_truth)

    def finish(self, state: ChunkState) -> ClipResult:
        return self.result(state.clip.clip_id, *self._lmd.pair_finish(state))

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        from metrics.ssim import _pair

        gen, gt = _pair(clip)
        return self.result(clip.clip_id, *self._lmd.landmark_pair(gen, gt))

    def result(self, clip_id: str, gen_lm: np.ndarray, gt_lm: np.ndarray) -> ClipResult:
        """mouth_r from the landmark pair, or NoFaceError when the ground truth has no landmarks at all."""
        from harness.core.errors import NoFaceError

        if not np.isfinite(gt_lm).all(axis=(1, 2)).any():
            raise NoFaceError(f"clip {clip_id}: no ground-truth frame has landmarks; mouth_r undefined")
        return mouth_r_result(gen_lm, gt_lm, self.min_frames)
