"""LPIPS with AlexNet in channels_last (metrics.lpips_metric.build_lpips' default) against the contiguous network
lpips builds, on real face-crop pairs. Random AlexNet weights saved as the official torchvision file and loaded by
build_lpips. Tolerance derived from the computation: both are fp32 evaluations of the same function; the
channels_last error against the float64 evaluation must stay within 2x the contiguous path's own rounding error
(a wrong layout would be off by the size of the distances themselves)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from _metric_media import styletalk_crops


def test_channels_last_lpips_equals_contiguous_within_fp32_rounding(tmp_path, data_root):
    import torchvision

    from metrics.lpips_metric import build_lpips, lpips_frames

    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    fast, plain = build_lpips(str(path)), build_lpips(str(path), channels_last=False)
    assert fast.net.slice1[0].weight.is_contiguous(memory_format=torch.channels_last)
    frames = styletalk_crops(data_root, "andrew_clip_1", n=6)
    gen, gt = frames[::-1].copy(), frames
    got = lpips_frames(fast, gen, gt)
    ref = lpips_frames(plain, gen, gt)
    with torch.inference_mode():
        t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).double() / 127.5 - 1.0  # noqa: E731
        exact = copy.deepcopy(plain).double()(t(gen), t(gt)).reshape(-1).numpy()
    err_plain, err_fast = np.abs(ref - exact).max(), np.abs(got - exact).max()
    print(f"max |contiguous - f64| {err_plain:.3g}, |channels_last - f64| {err_fast:.3g}, LPIPS up to {exact.max():.3g}")
    assert 0 < err_plain < 1e-4 * exact.max()
    assert err_fast <= 2 * err_plain


def test_compile_is_opt_in_and_named_in_the_protocol():
    """LPIPS(compile=...) (a --metric-arg string or a bool): off by default with the config and protocol of
    before; on, both name it, so runs with and without it are told apart."""
    from metrics.lpips_metric import LPIPS

    plain, comp = LPIPS(), LPIPS(compile="true")
    assert (plain.compile, comp.compile, LPIPS(compile="false").compile) == (False, True, False)
    assert plain.config() == {} and comp.config() == {"compile": True}
    assert "impl" not in plain.protocol().settings
    assert "torch.compile" in comp.protocol().settings["impl"]
    assert plain.protocol().fingerprint() != comp.protocol().fingerprint()


@pytest.mark.slow
def test_compiled_lpips_equals_eager_within_fp32_rounding(tmp_path, data_root):
    """torch.compile'd LPIPS (inductor fuses the scaling, ReLUs, normalisation and heads; same maths): within
    2x the eager network's own fp32 rounding error against float64. Compiles for about a minute on 2 cores."""
    import torchvision

    from metrics.lpips_metric import build_lpips, lpips_frames

    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    plain, comp = build_lpips(str(path)), build_lpips(str(path), compile=True)
    frames = styletalk_crops(data_root, "andrew_clip_1", n=4)
    gen, gt = frames[::-1].copy(), frames
    ref, got = lpips_frames(plain, gen, gt), lpips_frames(comp, gen, gt)
    with torch.inference_mode():
        t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).double() / 127.5 - 1.0  # noqa: E731
        exact = copy.deepcopy(build_lpips(str(path), channels_last=False)).double()(t(gen), t(gt)).reshape(-1).numpy()
    err_plain, err_comp = np.abs(ref - exact).max(), np.abs(got - exact).max()
    print(f"max |eager - f64| {err_plain:.3g}, |compiled - f64| {err_comp:.3g}")
    assert 0 < err_plain < 1e-4 * exact.max()
    assert err_comp <= 2 * err_plain
