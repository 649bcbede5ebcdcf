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


def test_identical_is_one_and_psnr_capped(pair):
    _, gt = pair
    clip = ClipInput("c", generated=gt, ground_truth=gt)
    assert SSIM(backend="torch").compute_clip(clip).values["SSIM"] == pytest.approx(1.0, abs=1e-12)
    assert SSIM(backend="skimage").compute_clip(clip).values["SSIM"] == pytest.approx(1.0, abs=1e-12)
    r = PSNR().compute_clip(clip)
    assert r.values["PSNR"] == 100.0 and (r.per_frame["PSNR"] == 100.0).all()
    assert r.extra == {"frames_used": len(gt), "frames_total": len(gt), "identical_frames": len(gt)}


def test_psnr_cap_only_touches_identical_frames(pair):
    gen, gt = pair
    mixed = gen.copy()
    mixed[0] = gt[0]
    per = PSNR().compute_clip(ClipInput("c", generated=mixed, ground_truth=gt)).per_frame["PSNR"]
    assert per[0] == 100.0 and (per[1:] < 100.0).all()
    np.testing.assert_array_equal(per[1:], psnr_frames(gen[1:], gt[1:]))


def test_config_resolves_backend_and_frames_counted(pair):
    gen, gt = pair
    m = SSIM(device="cpu")
    assert m.config() == {"backend": "skimage"}
    assert SSIM(device="cuda").config() == {"backend": "torch"}
    r = SSIM(**m.config()).compute_clip(ClipInput("c", generated=gen[:3], ground_truth=gt[:3]))
    assert r.extra == {"frames_used": 3, "frames_total": 3}


def test_psnr_value():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a.copy()
    b[0] = 255  # MSE 255^2 -> 0 dB
    b[1, 0, 0, 0] = 16  # MSE 256/192
    p = psnr_frames(b, a)
    assert p[0] == pytest.approx(0.0)
    assert p[1] == pytest.approx(10 * np.log10(255 ** 2 / (256 / 192)))


def test_mismatched_shapes_raise(pair):
    from harness.core.errors import MediaError

    gen, gt = pair
    with pytest.raises(MediaError):
        PSNR().compute_clip(ClipInput("c", generated=gen[:3], ground_truth=gt[:4]))
