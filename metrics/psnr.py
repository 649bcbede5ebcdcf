"""PSNR on the 256x256 uint8 face crops: per frame 10*log10(255^2 / MSE over all pixels and channels),
then the mean over frames. An identical frame has MSE 0 and PSNR +inf, reported as inf (a clip with
any identical frame has mean inf: identical output is a degenerate, not a strong, result)."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from metrics.base import ClipInput, ClipResult, Metric, Protocol, register
from metrics.ssim import _pair

DATA_RANGE = 255.0


def psnr_frames(gen: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame PSNR [T] in dB (float64; inf where the frames are identical)."""
    d = gen.astype(np.float64) - gt.astype(np.float64)
    mse = (d * d).reshape(len(d), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(DATA_RANGE ** 2 / mse)


@register
class PSNR(Metric):
    """Peak signal-to-noise ratio of generated vs ground-truth crops (higher is better)."""

    name: ClassVar[str] = "psnr"
    outputs: ClassVar[tuple[str, ...]] = ("PSNR",)
    higher_is_better: ClassVar[dict[str, bool]] = {"PSNR": True}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def protocol(self) -> Protocol:
        return Protocol(metric="PSNR", backend="numpy", weights_sha256=None, crop="gt crop track, 256x256 RGB uint8",
                        resolution=256, fps=25.0,
                        settings={"data_range": DATA_RANGE, "mse": "over H,W,RGB per frame, float64",
                                  "reduce": "per-frame PSNR, then mean; identical frame -> inf"})

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        gen, gt = _pair(clip)
        out = []
        for i in range(0, len(gen), max(1, self.batch_size)):
            out.append(psnr_frames(gen[i:i + self.batch_size], gt[i:i + self.batch_size]))
        per = np.concatenate(out)
        return ClipResult(values={"PSNR": float(per.mean())}, per_frame={"PSNR": per},
                          extra={"frames": len(per), "identical_frames": int(np.isinf(per).sum())})
