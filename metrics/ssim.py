"""SSIM on the 256x256 face crops (Wang et al. 2004 settings), per frame then mean.

Reference: skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1): per channel, gaussian-filtered local
means/variances (scipy gaussian_filter, truncate=3.5 -> 11-tap window, mode 'reflect'), SSIM map, mean
over the map with the (win_size-1)//2 = 5 px border cropped, then the mean over channels.

The torch backend computes the same thing as a separable 'valid' convolution: every output pixel that
survives skimage's border crop has a window lying entirely inside the image, so skimage's reflect
padding never reaches the mean; a valid convolution yields exactly the cropped map. float64 throughout
(variances are differences of ~65025-sized terms; float32 would cost ~1e-4 of accuracy).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from metrics.base import FRAMES_TOTAL, FRAMES_USED, ChunkState, ClipInput, ClipResult, Metric, Protocol, register

SIGMA = 1.5
TRUNCATE = 3.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0
BACKENDS = ("torch", "skimage")


def gaussian_taps(sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:
    """The 1-D kernel scipy.ndimage.gaussian_filter uses: radius int(truncate*sigma+0.5), sum 1."""
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim_skimage(gen: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame SSIM [T] with the reference implementation."""
    from skimage.metrics import structural_similarity

    return np.array([
        structural_similarity(a, b, gaussian_weights=True, sigma=SIGMA, use_sample_covariance=False,
                              data_range=DATA_RANGE, channel_axis=-1)
        for a, b in zip(gen, gt)
    ], dtype=np.float64)


def ssim_torch(gen: np.ndarray, gt: np.ndarray, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """Per-frame SSIM [T], same definition as ssim_skimage (see module docstring)."""
    import torch

    taps = torch.from_numpy(gaussian_taps()).to(device)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    out = []
    if device == "cpu":  # float64 maps of 4 frames stay in cache; per-frame values do not depend on it
        batch_size = min(batch_size, 4)
    with torch.inference_mode():
        for i in range(0, len(gen), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(gen[i:i + batch_size])).to(device, torch.float64)
            y = torch.from_numpy(np.ascontiguousarray(gt[i:i + batch_size])).to(device, torch.float64)
            x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)  # [B,C,H,W]
            c, h, w = x.shape[1:]
            # the 5 maps (x, y, xx, yy, xy) per channel, filtered at once by the separable 'valid'
            # gaussian as 11 shifted multiply-adds per axis (CPU float64 convolutions are much slower)
            stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
            f = _valid_1d(_valid_1d(stack, taps, dim=2), taps, dim=3)  # [B,5C,H-10,W-10]
            ux, uy, uxx, uyy, uxy = f.split(c, dim=1)
            vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
            s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
            out.append(s.mean(dim=(2, 3)).mean(dim=1).cpu().numpy())  # per channel, then channels
    return np.concatenate(out) if out else np.zeros(0)


def _valid_1d(x, taps, dim: int):
    """'valid' 1-D correlation of x along dim with taps (out[j] = sum_t taps[t] * x[j+t])."""
    k = taps.numel()
    n = x.shape[dim] - k + 1
    acc = x.narrow(dim, 0, n) * taps[0]
    for t in range(1, k):
        acc.add_(x.narrow(dim, t, n), alpha=float(taps[t]))
    return acc


class PerFramePair:
    """compute_clip and the chunked start / update / finish of a metric that is a mean of per-frame values of
    (generated, ground-truth) crop pairs (SSIM, PSNR): one per_frame(gen, gt) and one _result(per) serve both
    paths, so the chunked value is the whole clip's bit for bit."""

    def per_frame(self, gen: np.ndarray, gt: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _result(self, per: np.ndarray) -> ClipResult:
        raise NotImplementedError

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        return self._result(self.per_frame(*_pair(clip)))

    def start(self, clip: ClipInput) -> ChunkState:
        return ChunkState(clip)

    def update(self, state: ChunkState, generated: np.ndarray, ground_truth: np.ndarray | None) -> None:
        gen, gt = check_pair(state.clip.clip_id, generated, ground_truth)
        state.add(self.per_frame(gen, gt), len(gen))

    def finish(self, state: ChunkState) -> ClipResult:
        state.check_complete()
        return self._result(state.joined())


@register
class SSIM(PerFramePair, Metric):
    """Structural similarity of generated vs ground-truth crops (higher is better, 1 = identical)."""

    name: ClassVar[str] = "ssim"
    outputs: ClassVar[tuple[str, ...]] = ("SSIM",)
    higher_is_better: ClassVar[dict[str, bool]] = {"SSIM": True}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def __init__(self, batch_size: int = 32, device: str = "cpu", backend: str = "auto") -> None:
        super().__init__(batch_size, device)
        if backend == "auto":  # equal to 1e-15 (tested); torch wins on GPU, skimage on a small CPU
            backend = "torch" if str(device).startswith("cuda") else "skimage"
        if backend not in BACKENDS:
            raise ValueError(f"ssim backend {backend!r} not in {BACKENDS}")
        self.backend = backend

    def config(self) -> dict[str, str]:
        return {"backend": self.backend}  # 'auto' resolved: workers on other devices keep this backend

    def protocol(self) -> Protocol:
        return Protocol(
            metric="SSIM", backend=self.backend, weights_sha256=None, crop="gt crop track, 256x256 RGB uint8",
            resolution=256, fps=25.0,
            settings={"gaussian_weights": True, "sigma": SIGMA, "truncate": TRUNCATE, "win_size": 11,
                      "use_sample_covariance": False, "data_range": DATA_RANGE, "K1": K1, "K2": K2,
                      "border_cropped": 5, "channels": "per RGB channel, then mean", "reduce": "per frame, then mean",
                      "reference": "skimage.metrics.structural_similarity"},
        )

    chunked: ClassVar[bool] = True  # per-frame values: a chunk's are those of the whole clip's same frames

    def per_frame(self, gen: np.ndarray, gt: np.ndarray) -> np.ndarray:
        if self.backend == "torch":
            return ssim_torch(gen, gt, self.batch_size, self.device)
        return ssim_skimage(gen, gt)

    @staticmethod
    def _result(per: np.ndarray) -> ClipResult:
        return ClipResult(values={"SSIM": float(per.mean())}, per_frame={"SSIM": per},
                          extra={FRAMES_USED: len(per), FRAMES_TOTAL: len(per)})


def _pair(clip: ClipInput) -> tuple[np.ndarray, np.ndarray]:
    """The generated / ground-truth crops, checked to be aligned uint8 [T,H,W,3] of equal shape."""
    return check_pair(clip.clip_id, clip.generated, clip.ground_truth)


def check_pair(clip_id: str, gen: np.ndarray, gt: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """_pair on arrays (a whole clip's, or one chunk's on the chunked path)."""
    from harness.core.errors import MediaError

    if gt is None:
        raise MediaError(f"clip {clip_id}: no ground-truth frames for a full-reference metric")
    if gen.shape != gt.shape or gen.ndim != 4 or gen.shape[-1] != 3 or len(gen) == 0:
        raise MediaError(f"clip {clip_id}: generated {gen.shape} and ground truth {gt.shape} "
                         "must be equal non-empty [T,H,W,3]")
    if gen.dtype != np.uint8 or gt.dtype != np.uint8:
        raise MediaError(f"clip {clip_id}: crops must be uint8, got {gen.dtype} / {gt.dtype}")
    return gen, gt
