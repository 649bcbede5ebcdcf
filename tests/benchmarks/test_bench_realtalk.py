"""RealTalk network throughput (pytest-benchmark): renderer frames and A2E windows through realtalk.fast.

CPU: the small config, fp32. With a visible GPU: the paper config in bf16 (and batch 64 for the renderer).
With the default --benchmark-disable (pyproject addopts) each benchmark runs once as a smoke test; for
timings: `pytest tests/benchmarks/test_bench_realtalk.py --benchmark-enable --benchmark-json=out.json`.
Random-init weights: latency does not depend on weight values. Frames per call are in extra_info.
"""
from __future__ import annotations

import pytest
import torch

from realtalk.fast import FastRealTalk
from realtalk.latency_stages import build_networks

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
CONFIG = "paper" if CUDA else "small"
DTYPE = "bf16" if CUDA else "fp32"


@pytest.fixture(scope="module")
def fast():
    a2e, ren, _, cfg = build_networks(CONFIG)
    return FastRealTalk(a2e, ren, dtype=DTYPE, channels_last=True, device=DEVICE), cfg


def _sync(x):
    if CUDA:
        torch.cuda.synchronize()
    return x


@pytest.mark.parametrize("batch", [1, 64] if CUDA else [1])
def test_bench_renderer(benchmark, fast, batch):
    f, cfg = fast
    c, s = cfg.renderer, cfg.renderer.size
    g = torch.Generator().manual_seed(0)
    f.set_reference(torch.rand(1, 3, s, s, generator=g).to(DEVICE))
    mask = torch.ones(batch, 1, s, s)
    mask[:, :, s // 2:] = 0
    args = [t.to(DEVICE) for t in (torch.rand(batch, 3, s, s, generator=g), mask, torch.randn(batch, c.n_id),
                                   torch.randn(batch, c.n_exp), torch.randn(batch, c.n_pose))]
    args[0], args[1] = (t.contiguous(memory_format=torch.channels_last) for t in args[:2])
    benchmark.extra_info.update(config=CONFIG, dtype=DTYPE, device=DEVICE, frames_per_call=batch)
    with torch.inference_mode():
        out = benchmark(lambda: _sync(f.render_batch(*args)))
    assert out.shape == (batch, 3, s, s)


def test_bench_a2e_window(benchmark, fast):
    f, cfg = fast
    c = cfg.a2e
    x = (torch.randn(1, c.n_audio_tokens, c.audio_dim), torch.randn(1, c.n_id), torch.randn(1, c.n_history, c.n_exp))
    x = tuple(t.to(DEVICE) for t in x)
    benchmark.extra_info.update(config=CONFIG, dtype=DTYPE, device=DEVICE, frames_per_call=c.T)
    out = benchmark(lambda: _sync(f.predict_expressions(*x)))
    assert out.shape == (1, c.T, c.n_exp)
