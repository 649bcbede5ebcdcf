"""PSNR on the 256x256 uint8 face crops: per frame 10*log10(255^2 / MSE over all pixels and channels),
capped at 100 dB, then the mean over frames.

The cap: an identical frame has MSE 0 and PSNR +inf; it counts as 100 dB (the convention of ATVGnet's
`psnr_f`, lelechen63/ATVGnet evaluation_matrix.py, which returns 100 when mse == 0), so a clip is never
dropped for being +inf and identical output gets a finite, top value. 100 dB is far above any real pair
(one grey level of error on every pixel is 48 dB)."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from metrics.base import FRAMES_TOTAL, FRAMES_USED, ClipResult, Metric, Protocol, register
from metrics.ssim import PerFramePair

DATA_RANGE = 255.0
MAX_DB = 100.0


def psnr_frames(gen: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame PSNR [T] in dB (float64), capped at MAX_DB (identical frames give exactly MAX_DB)."""
    d = gen.astype(np.float64) - gt.astype(np.float64)
    mse = (d * d).reshape(len(d), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.minimum(10.0 * np.log10(DATA_RANGE ** 2 / mse), MAX_DB)


@register
class PSNR(PerFramePair, Metric):
    """Peak signal-to-noise ratio of generated vs ground-truth crops (higher is better)."""

    name: ClassVar[str] = "psnr"
    outputs: ClassVar[tuple[str, ...]] = ("PSNR",)
    higher_is_better: ClassVar[dict[str, bool | None]] = {"PSNR": True}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def protocol(self) -> Protocol:
        return Protocol(metric="PSNR", backend="numpy", weights_sha256=None, crop="gt crop track, 256x256 RGB uint8",
                        resolution=256, fps=25.0,
                        settings={"data_range": DATA_RANGE, "mse": "over H,W,RGB per frame, float64",
                                  "cap_db": MAX_DB,
                                  "reduce": f"per-frame PSNR capped at {MAX_DB:g} dB (identical frame -> {MAX_DB:g}), "
                                            "then mean over frames"})

    chunked: ClassVar[bool] = True  # per-frame values: a chunk's are those of the whole clip's same frames

    def per_frame(self, gen: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """psnr_frames in batches of batch_size (a frame's MSE is a reduction over its own row only, so the
        batching, like the chunking, cannot change it)."""
        step = max(1, self.batch_size)
        return np.concatenate([psnr_frames(gen[i:i + step], gt[i:i + step]) for i in range(0, len(gen), step)])

    @staticmethod
    def _result(per: np.ndarray) -> ClipResult:
        return ClipResult(values={"PSNR": float(per.mean())}, per_frame={"PSNR": per},
                          extra={FRAMES_USED: len(per), FRAMES_TOTAL: len(per),
                                 "identical_frames": int((per >= MAX_DB).sum())})
