"""Throughput of the per-frame metrics (pytest-benchmark). With the default --benchmark-disable each runs
once on 8 frames; run `pytest tests/benchmarks --benchmark-enable` for timings."""
from __future__ import annotations

import pytest

from metrics.base import ClipInput


@pytest.fixture(scope="module")
def clip(data_root):
    from harness.core.media import read_video

    gt = read_video(data_root / "styletalk" / "video" / "Obama_clip1.mp4", fps=25.0, max_frames=8).frames
    return ClipInput("bench", generated=gt[::-1].copy(), ground_truth=gt)


@pytest.mark.parametrize("name,kw", [("ssim", {"backend": "torch"}), ("ssim", {"backend": "skimage"}),
                                     ("psnr", {}), ("fid", {})])
def test_metric_throughput(benchmark, clip, name, kw):
    from metrics.base import get_metric

    m = get_metric(name, **kw)
    if not m.availability()[0]:
        pytest.skip(m.availability()[1])
    fn = m.clip_state if m.split_level else m.compute_clip
    benchmark(fn, clip)
