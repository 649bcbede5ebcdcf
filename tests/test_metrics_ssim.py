"""SSIM (torch vs skimage reference on real frames) and PSNR."""
from __future__ import annotations

import numpy as np
import pytest

from _metric_media import styletalk_crops
from metrics.base import ClipInput
from metrics.psnr import PSNR, psnr_frames
from metrics.ssim import SSIM, ssim_skimage, ssim_torch


@pytest.fixture(scope="module")
def pair(data_root):
    frames = styletalk_crops(data_root, "feifeili_clip1", n=40)
    return frames[5:].copy(), frames[:-5].copy()  # 5 frames apart: similar but not equal


def test_torch_matches_skimage(pair):
    gen, gt = pair
    a, b = ssim_torch(gen, gt), ssim_skimage(gen, gt)
    print(f"max |torch - skimage| SSIM = {np.abs(a - b).max():.3g}")
    assert np.abs(a - b).max() < 1e-4
    assert 0.3 < a.mean() < 0.999


def test_batch_size_independent(pair):
    gen, gt = pair
    r = [SSIM(batch_size=b, backend="torch").compute_clip(ClipInput("c", generated=gen, ground_truth=gt)).per_frame["SSIM"]
         for b in (1, 7, 32)]
    assert np.abs(r[0] - r[1]).max() < 1e-12 and np.abs(r[1] - r[2]).max() < 1e-12


def test_identical_is_one_and_inf(pair):
    _, gt = pair
    clip = ClipInput("c", generated=gt, ground_truth=gt)
    assert SSIM(backend="torch").compute_clip(clip).values["SSIM"] == pytest.approx(1.0, abs=1e-12)
    assert SSIM(backend="skimage").compute_clip(clip).values["SSIM"] == pytest.approx(1.0, abs=1e-12)
    assert PSNR().compute_clip(clip).values["PSNR"] == float("inf")


def test_psnr_value():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a.copy()
    b[0] = 255  # MSE 255^2 -> 0 dB
    b[1, 0, 0, 0] = 16  # MSE 256/192
    p = psnr_frames(b, a)
    assert p[0] == pytest.approx(0.0)
    assert p[1] == pytest.approx(10 * np.log10(255 ** 2 / (256 / 192)))


def test_mismatched_shapes_raise(pair):
    from harness.errors import MediaError

    gen, gt = pair
    with pytest.raises(MediaError):
        PSNR().compute_clip(ClipInput("c", generated=gen[:3], ground_truth=gt[:4]))
