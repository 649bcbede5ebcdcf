"""Known answers on real clips: LMD grows with a temporal shift of the ground truth, SSIM / PSNR equal
scikit-image's functions, FID separates speakers, identical clips give PSNR 100."""
from __future__ import annotations

import numpy as np
import pytest

from _metric_media import styletalk_crops
from metrics.base import ClipInput, get_metric


def test_lmd_grows_with_temporal_shift(data_root):
    """Obama_clip1 (talking): the ground truth against itself shifted by 0, 1, 3, 6 frames (3 s)."""
    n = 75
    frames = styletalk_crops(data_root, "Obama_clip1", n=n + 6)
    metric = get_metric("lmd")
    gt = frames[:n]
    res = {s: metric.compute_clip(ClipInput(f"shift{s}", generated=frames[s:s + n], ground_truth=gt)) for s in (0, 1, 3, 6)}
    for s, r in res.items():
        print(f"shift {s}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.values.items()))
    assert res[0].values == {"LMD": 0.0, "M-LMD": 0.0, "F-LMD": 0.0, "FaceCov": 1.0}
    for k in ("LMD", "M-LMD"):
        seq = [res[s].values[k] for s in (0, 1, 3, 6)]
        assert all(a < b for a, b in zip(seq, seq[1:])), (k, seq)
    assert all(r.extra["frames_used"] == n for r in res.values())


@pytest.fixture(scope="module")
def pair(data_root):
    frames = styletalk_crops(data_root, "andrew_clip_1", n=24)
    return frames[4:].copy(), frames[:-4].copy()  # 4 frames apart: similar, not equal


@pytest.mark.parametrize("backend", ["skimage", "torch"])
def test_ssim_equals_scikit_image(pair, backend):
    from skimage.metrics import structural_similarity

    gen, gt = pair
    r = get_metric("ssim", backend=backend).compute_clip(ClipInput("c", generated=gen, ground_truth=gt))
    ref = np.array([structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=255, channel_axis=-1) for a, b in zip(gen, gt)])
    assert 0.3 < ref.min() and ref.max() < 0.999  # a real, non-trivial pair
    np.testing.assert_allclose(r.per_frame["SSIM"], ref, rtol=0, atol=1e-6)
    assert r.values["SSIM"] == pytest.approx(ref.mean(), abs=1e-6)


def test_psnr_equals_scikit_image(pair):
    from skimage.metrics import peak_signal_noise_ratio

    gen, gt = pair
    r = get_metric("psnr").compute_clip(ClipInput("c", generated=gen, ground_truth=gt))
    ref = np.array([peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(gen, gt)])
    np.testing.assert_allclose(r.per_frame["PSNR"], ref, rtol=0, atol=1e-6)
    assert r.values["PSNR"] == pytest.approx(ref.mean(), abs=1e-6)


def test_psnr_of_identical_clips_is_100(pair):
    _, gt = pair
    assert get_metric("psnr").compute_clip(ClipInput("c", generated=gt, ground_truth=gt)).values["PSNR"] == 100.0


def test_fid_same_speaker_below_other_speaker(data_root):
    """40 frames per set (every 6th frame, 8 s each): Obama_clip1's first vs second 8 s, and vs andrew."""
    from metrics.fid import FID

    obama = styletalk_crops(data_root, "Obama_clip1", n=480)
    a, b = obama[0:240:6], obama[240:480:6]
    other = styletalk_crops(data_root, "andrew_clip_1", n=240)[::6]
    assert len(a) == len(b) == len(other) == 40
    metric = FID(backend="fid-helper", batch_size=20)
    same = metric.aggregate([metric.clip_state(ClipInput("o", generated=b, ground_truth=a))])["FID"]
    diff = metric.aggregate([metric.clip_state(ClipInput("x", generated=other, ground_truth=a))])["FID"]
    print(f"FID Obama halves {same:.2f}, Obama vs andrew {diff:.2f}")
    assert 0 < same < diff
