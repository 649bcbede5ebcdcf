"""realtalk.fast.FastRealTalk.render_batch on CPU splits a batch into CPU_CHUNK-frame network calls (memory-bound
renderer: small calls stay in the caches and the heap). The renderer's norms are per sample, so the split batch
must give the whole batch's frames up to fp32 rounding: held to the network's fp32 rounding bound
(tests/_numerics.rounding_bound, as tests/test_realtalk_fast.py holds the batched path), and the chunked call
must really run several network calls (counted), or the test would compare a path with itself. The split
applies at one intra-op thread only (at more, whole batches were faster): with 2 threads one call is made."""
from __future__ import annotations

import copy

import torch

from _numerics import rounding_bound
from realtalk.config import get_config
from realtalk.fast import CPU_CHUNK, FastRealTalk
from realtalk.renderer import Renderer

S = 64


def test_cpu_chunked_render_equals_one_call():
    cfg = get_config("small")
    torch.manual_seed(0)
    ren = Renderer(cfg.renderer).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ren.parameters():
            if p.abs().sum() == 0:  # zero-initialised heads carry no signal: randomise them
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    b, c = 5, cfg.renderer
    src, ref = torch.rand(b, 3, S, S, generator=g), torch.rand(1, 3, S, S, generator=g)
    mask = torch.ones(b, 1, S, S)
    mask[:, :, S // 2:] = 0
    alpha, beta = torch.randn(b, c.n_id, generator=g), torch.randn(b, c.n_exp, generator=g)
    rho, warped = torch.randn(b, c.n_pose, generator=g), torch.rand(b, 3, S, S, generator=g)
    whole = FastRealTalk(None, copy.deepcopy(ren), max_batch=8, cpu_chunk=8)
    split = FastRealTalk(None, copy.deepcopy(ren), max_batch=8)
    assert split.cpu_chunk == CPU_CHUNK < b
    calls = []
    inner = split._ren_fn
    split._ren_fn = lambda *a, **k: calls.append(a[0].shape[0]) or inner(*a, **k)  # type: ignore[misc]
    for f in (whole, split):
        f.set_reference(ref)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        split.render_batch(src, mask, alpha, beta, rho, warped)
        assert calls == [b]  # more than one thread: not split
        calls.clear()
        torch.set_num_threads(1)
        want = whole.render_batch(src, mask, alpha, beta, rho, warped)
        got = split.render_batch(src, mask, alpha, beta, rho, warped)
    finally:
        torch.set_num_threads(n)
    assert calls == [CPU_CHUNK] * (b // CPU_CHUNK) + ([b % CPU_CHUNK] if b % CPU_CHUNK else [])
    err = (got - want).abs().max().item()
    print(f"chunks {calls}: max |split - whole| {err:.2g}")
    assert got.shape == want.shape and err < rounding_bound(ren, torch.float32)
