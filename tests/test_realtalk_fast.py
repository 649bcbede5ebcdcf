"""realtalk.fast: the optimised path gives the eager networks' outputs (fp32 within fp32 rounding, bf16 within a
measured looser tolerance), attention is fused, torch.compile works (slow), errors are clear.

Small config on 64x64 inputs (the renderer is fully convolutional; 256 is only the production size) so
the file runs in seconds on 2 cores. Zero-initialised output layers (A2E head, FIA MLP heads) are
re-randomised so every path really carries signal.
"""
from __future__ import annotations

import collections
import copy
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from _numerics import rounding_bound
from harness.core.errors import BenchError
from realtalk.a2e import AudioToExpression
from realtalk.config import get_config
from realtalk.fast import ClipExpressions, FastRealTalk, copy_into, window_starts, window_weights
from realtalk.renderer import Renderer

S = 64


def _randomise_zero_inits(module: torch.nn.Module, std: float = 0.05) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture(scope="module")
def nets():
    cfg = get_config("small")
    torch.manual_seed(0)
    a2e, ren = AudioToExpression(cfg.a2e).eval(), Renderer(cfg.renderer).eval()
    _randomise_zero_inits(a2e)
    _randomise_zero_inits(ren)
    return cfg, a2e, ren


def _render_inputs(cfg, b=5):
    g = torch.Generator().manual_seed(2)
    c = cfg.renderer
    src = torch.rand(b, 3, S, S, generator=g)
    ref = torch.rand(1, 3, S, S, generator=g)
    mask = torch.ones(b, 1, S, S)
    mask[:, :, S // 2:] = 0
    return (src, mask, torch.randn(1, c.n_id, generator=g).expand(b, -1), torch.randn(b, c.n_exp, generator=g),
            torch.randn(b, c.n_pose, generator=g), ref)


def _eager_render(ren, src, mask, alpha, beta, rho, ref):
    """The reference path: one frame per call, contiguous layout, fp32, reference features recomputed."""
    outs = []
    with torch.no_grad():
        feats = ren.encode_reference(ref)
        for i in range(src.shape[0]):
            outs.append(ren(src[i:i + 1], None, mask[i:i + 1], alpha[i:i + 1], beta[i:i + 1], rho[i:i + 1],
                            ref_feats=feats)[0])
    return torch.cat(outs)


# fp32 tolerances. Contiguous: batching + cached reference + SDPA only reorder sums (measured 1.3e-6).
# channels_last on CPU: the NHWC GroupNorm kernel is itself less exact in fp32 (measured against an fp64 run
# of the same net: eager NCHW 1.2e-6, channels_last batched 2.6e-5; GroupNorm alone on N(5,3) input:
# NCHW 5e-7, NHWC 1.9e-5). Both are held to the network's fp32 rounding bound (2.8e-4): kernels differ per CPU.
@pytest.mark.parametrize("channels_last", [False, True])
def test_fp32_fast_render_matches_eager(nets, channels_last):
    cfg, _, ren = nets
    tol = rounding_bound(ren, torch.float32)
    src, mask, alpha, beta, rho, ref = _render_inputs(cfg)
    want = _eager_render(ren, src, mask, alpha, beta, rho, ref)
    fast = FastRealTalk(None, copy.deepcopy(ren), dtype="fp32", channels_last=channels_last, max_batch=2)  # 2+2+1
    got = fast.render(src, mask, alpha, beta, rho, reference=ref)
    err = (got - want).abs().max().item()
    print(f"fp32 fast (channels_last={channels_last}, batches of 2, cached ref) vs eager: max abs error {err:.2e}")
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert err < tol
    assert torch.equal(got[:, :, : S // 2], src[:, :, : S // 2])  # the kept region is the source, exactly


def test_fp32_fast_render_takes_the_warped_reference(nets):
    """warp_residual renderers edit the reference warped per frame: render(..., warped=) passes it through
    (chunked with the frames) and gives the eager renderer's frames on it, not on the unwarped reference."""
    cfg, _, ren = nets
    assert cfg.renderer.output == "warp_residual"
    src, mask, alpha, beta, rho, ref = _render_inputs(cfg)
    warped = torch.rand(src.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        feats = ren.encode_reference(ref)
        want = torch.cat([ren(src[i:i + 1], None, mask[i:i + 1], alpha[i:i + 1], beta[i:i + 1], rho[i:i + 1],
                              ref_feats=feats, warped=warped[i:i + 1])[0] for i in range(src.shape[0])])
    unwarped = _eager_render(ren, src, mask, alpha, beta, rho, ref)
    fast = FastRealTalk(None, copy.deepcopy(ren), dtype="fp32", channels_last=True, max_batch=2)
    got = fast.render(src, mask, alpha, beta, rho, reference=ref, warped=warped)
    tol = rounding_bound(ren, torch.float32)
    assert (got - want).abs().max() < tol < (got - unwarped).abs().max()


def test_bf16_fast_render_within_tolerance(nets):
    cfg, _, ren = nets
    src, mask, alpha, beta, rho, ref = _render_inputs(cfg)
    want = _eager_render(ren, src, mask, alpha, beta, rho, ref)
    fast = FastRealTalk(None, copy.deepcopy(ren), dtype="bf16", channels_last=True, max_batch=8)
    got = fast.render(src, mask, alpha, beta, rho, reference=ref)
    diff = (got - want).abs()
    gen = diff[:, :, S // 2:]  # the generated region (the rest is the source, copied)
    print(f"bf16 autocast vs fp32 eager on [0,1] frames: max abs {gen.max():.4f}, mean abs {gen.mean():.5f}")
    assert gen.max() < 0.05 and gen.mean() < 0.01


def _eager_clip(a2e, tokens, alpha, hist, n_frames):
    """The reference: one window per eager call, crossfaded by hand in float64 (weights from window_weights)."""
    c = a2e.cfg
    starts = window_starts(n_frames, c.T, c.overlap)
    out = []
    with torch.no_grad():
        for i in range(tokens.shape[0]):
            acc = torch.zeros(n_frames, c.n_exp, dtype=torch.float64, device=tokens.device)
            wsum = torch.zeros(n_frames, 1, dtype=torch.float64, device=tokens.device)
            for k, s0 in enumerate(starts):
                lo = c.tokens_per_frame * s0
                p = a2e(tokens[i:i + 1, lo:lo + c.n_audio_tokens], alpha[i:i + 1], hist[i:i + 1, k])[0].double()
                w = torch.as_tensor(window_weights(c.T, c.overlap, k == 0, k == len(starts) - 1),
                                    device=tokens.device)[:, None]
                n = min(c.T, n_frames - s0)
                acc[s0:s0 + n] += (w * p)[:n]
                wsum[s0:s0 + n] += w[:n]
            out.append(acc / wsum)
    return torch.stack(out).float()


def _a2e_inputs(cfg, b, n_frames, seed=3):
    c = cfg.a2e
    g = torch.Generator().manual_seed(seed)
    starts = window_starts(n_frames, c.T, c.overlap)
    n_pad = starts[-1] + c.T
    return (torch.randn(b, c.tokens_per_frame * n_pad, c.audio_dim, generator=g), torch.randn(b, c.n_id, generator=g),
            torch.randn(b, len(starts), c.n_history, c.n_exp, generator=g))


def test_fp32_fast_a2e_matches_eager_windows(nets):
    """predict_clip (all windows of all clips in one call, random history given per window, crossfade) equals
    eager window-by-window calls; the lazy single-frame ClipExpressions gives the same frames."""
    cfg, a2e, _ = nets
    n = 30  # 3 windows (starts 0, 12, 24), two crossfades
    tokens, alpha, hist = _a2e_inputs(cfg, 3, n)
    want = _eager_clip(a2e, tokens, alpha, hist, n)
    fast = FastRealTalk(copy.deepcopy(a2e), None, dtype="fp32", a2e_batch=4)  # 9 windows: calls of 4, 4, 1
    got = fast.predict_clip(tokens, alpha, hist, n)
    tol = rounding_bound(a2e, torch.float32) * max(1.0, want.abs().max().item())
    err = (got - want).abs().max().item()
    print(f"fp32 fast A2E (3 clips x 3 windows batched) vs eager: max abs error {err:.2e} (tol {tol:.2e})")
    assert got.shape == (3, n, cfg.a2e.n_exp) and want.abs().max() > 1e-3 and err < tol
    lazy = ClipExpressions(fast, tokens[1], alpha[1:2], hist[1], n)
    one_by_one = torch.stack([lazy.frames([i])[0] for i in range(n)])
    assert (one_by_one - want[1]).abs().max().item() < tol
    bf = FastRealTalk(copy.deepcopy(a2e), None, dtype="bf16").predict_clip(tokens, alpha, hist, n)
    rel = ((bf - want).abs().max() / want.abs().max()).item()
    print(f"bf16 A2E vs fp32: max abs error relative to the output range {rel:.4f}")
    assert rel < 0.05


def test_a2e_history_is_given_not_fed_back(nets):
    """A window's prediction depends on its own (sampled) history only: changing window 0's history moves
    frames 0..15 and leaves the frames only later windows cover (16..) where they were."""
    cfg, a2e, _ = nets
    n = 30
    tokens, alpha, hist = _a2e_inputs(cfg, 1, n)
    fast = FastRealTalk(copy.deepcopy(a2e), None, dtype="fp32")
    a = fast.predict_clip(tokens, alpha, hist, n)[0]
    hist2 = hist.clone()
    hist2[0, 0] = torch.randn(hist.shape[2:], generator=torch.Generator().manual_seed(9))
    b = fast.predict_clip(tokens, alpha, hist2, n)[0]
    tol = rounding_bound(a2e, torch.float32) * max(1.0, a.abs().max().item())
    assert (a[:12] - b[:12]).abs().max() > 100 * tol
    assert (a[16:] - b[16:]).abs().max() < tol
    with pytest.raises(ValueError, match="histories"):
        fast.predict_clip(tokens, alpha, hist[:, :1], n)


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def test_a2e_attention_dispatches_to_fused_kernels(nets):
    """In eval + inference mode the A2E's transformer runs as realtalk.a2e.encoder_layer_inference /
    decoder_layer_inference: every attention (encoder self-attention, decoder self- and cross-attention) is one
    fused scaled_dot_product_attention; no unfused softmax or attention bmm; the biases ride in the GEMMs."""
    cfg, a2e, _ = nets
    c = cfg.a2e
    x = (torch.randn(1, c.n_audio_tokens, c.audio_dim), torch.randn(1, c.n_id), torch.randn(1, c.n_history, c.n_exp))
    with torch.inference_mode(), _Ops() as rec:
        a2e(*x)
    ops = rec.ops
    print("A2E attention ops:", {k: v for k, v in ops.items() if "att" in k or "transformer" in k or "softmax" in k})
    assert ops["aten.scaled_dot_product_attention"] == c.n1 + 2 * c.n2
    assert not any("softmax" in k or k.endswith(".bmm") or "_transform_bias_rescale" in k for k in ops)


def test_renderer_attention_uses_sdpa(nets):
    cfg, _, ren = nets
    src, mask, alpha, beta, rho, ref = _render_inputs(cfg, b=1)
    with torch.inference_mode():
        feats = ren.encode_reference(ref)
        with _Ops() as rec:
            ren(src, None, mask, alpha, beta, rho, ref_feats=feats)
    assert rec.ops["aten.scaled_dot_product_attention"] == len(cfg.renderer.attn_levels)
    assert not any("softmax" in k for k in rec.ops)


def test_errors_are_clear(nets):
    cfg, a2e, ren = nets
    with pytest.raises(BenchError, match="dtype"):
        FastRealTalk(a2e, None, dtype="int8")
    with pytest.raises(BenchError, match="cuda"):
        FastRealTalk(copy.deepcopy(a2e), None, compile=True, compile_mode="reduce-overhead", device="cpu")
    fast = FastRealTalk(None, copy.deepcopy(ren))
    src, mask, alpha, beta, rho, _ = _render_inputs(cfg, b=1)
    with pytest.raises(ValueError, match="set_reference"):
        fast.render(src, mask, alpha, beta, rho)


@pytest.mark.slow  # inductor C++ codegen on 2 shared cores: measured ~57 s (A2E) + ~181 s (renderer)
def test_compiled_cpu_matches_eager(nets):
    cfg, a2e, ren = nets
    src, mask, alpha, beta, rho, ref = _render_inputs(cfg, b=2)
    want = _eager_render(ren, src, mask, alpha, beta, rho, ref)
    fast = FastRealTalk(copy.deepcopy(a2e), copy.deepcopy(ren), dtype="fp32", compile=True, compile_mode="default")
    got = fast.render(src, mask, alpha, beta, rho, reference=ref)
    assert (got - want).abs().max() < 1e-4
    c = cfg.a2e
    x = (torch.randn(2, c.n_audio_tokens, c.audio_dim), torch.randn(2, c.n_id), torch.randn(2, c.n_history, c.n_exp))
    with torch.no_grad():
        assert (fast.predict_expressions(*x) - a2e(*x)).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------------- CUDA graphs
class _ReplayRunner:
    """CPU stand-in for CudaGraphRunner with the same static-buffer semantics: inputs cloned at capture and
    copied in on each call (realtalk.fast.copy_into), fn replayed on the static buffers. At capture it records
    every tensor storage an op reads that is neither an input, a parameter/buffer of the networks, nor made
    during the call: a real graph would replay such a tensor's capture-time memory (the stale-reference bug)."""

    allowed: set[int] = set()
    captures: list["_ReplayRunner"] = []

    def __init__(self, fn, example):
        self.fn, self.static = fn, _clone_nested(example)
        known = {t.untyped_storage().data_ptr() for t in _flat(self.static)} | self.allowed
        rec = _StorageReads(known)
        with rec:
            fn(*self.static)
        self.hidden = rec.hidden
        _ReplayRunner.captures.append(self)

    def __call__(self, *inputs):
        copy_into(self.static, inputs)
        return self.fn(*self.static)


class _StorageReads(TorchDispatchMode):
    def __init__(self, known: set[int]):
        super().__init__()
        self.known, self.hidden = set(known), set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for t in _flat((args, kwargs or {})):
            p = t.untyped_storage().data_ptr()
            if p not in self.known and t.numel() > 1:
                self.hidden.add((str(func.overloadpacket), tuple(t.shape)))
        out = func(*args, **(kwargs or {}))
        for t in _flat(out):
            self.known.add(t.untyped_storage().data_ptr())
        return out


def _flat(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _flat(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _flat(v)


def _clone_nested(x):
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, dict):
        return {k: _clone_nested(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_clone_nested(v) for v in x)
    return x


def test_set_reference_copies_into_persistent_buffers(nets):
    """A second set_reference writes the new features into the SAME storage (what a captured graph reads)."""
    cfg, _, ren = nets
    *_, ref = _render_inputs(cfg)
    ref2 = torch.rand(ref.shape, generator=torch.Generator().manual_seed(7))
    fast = FastRealTalk(None, copy.deepcopy(ren), dtype="fp32")
    first = fast.set_reference(ref)
    ptrs = {k: v.data_ptr() for k, v in first.items()}
    second = fast.set_reference(ref2)
    assert second is first and {k: v.data_ptr() for k, v in fast.ref_feats.items()} == ptrs
    with torch.no_grad():
        want = ren.encode_reference(ref2)
    assert all(torch.allclose(fast.ref_feats[k], want[k], atol=1e-5) for k in want)
    assert any((fast.ref_feats[k] - ren.encode_reference(ref)[k]).abs().max() > 1e-2 for k in want)


def test_graph_runner_sees_later_reference(nets):
    """Graphed renderer (CPU stand-in runner): one capture serves both references and a padded partial
    batch; the captured call reads no hidden tensor; outputs equal eager after each set_reference."""
    cfg, _, ren = nets
    src, mask, alpha, beta, rho, ref = _render_inputs(cfg, b=3)
    ref2 = torch.rand(ref.shape, generator=torch.Generator().manual_seed(7))
    net = copy.deepcopy(ren)
    _ReplayRunner.allowed = {t.untyped_storage().data_ptr() for t in list(net.parameters()) + list(net.buffers())}
    _ReplayRunner.captures = []
    fast = FastRealTalk(None, net, dtype="fp32", channels_last=False, max_batch=4, cuda_graphs=True,
                        graph_runner=_ReplayRunner)
    tol = rounding_bound(ren, torch.float32)
    outs = []
    for r in (ref, ref2):
        fast.set_reference(r)
        got = fast.render(src, mask, alpha, beta, rho)  # 3 frames, padded to 4 for the graph
        want = _eager_render(ren, src, mask, alpha, beta, rho, r)
        assert got.shape == want.shape and (got - want).abs().max() < tol
        outs.append(got)
    assert (outs[0] - outs[1])[:, :, S // 2:].abs().max() > 100 * tol  # the second reference really took effect
    assert len(_ReplayRunner.captures) == 1 and _ReplayRunner.captures[0].hidden == set()
    with pytest.raises(ValueError, match="shape"):
        copy_into(_ReplayRunner.captures[0].static, (src[:1],) + _ReplayRunner.captures[0].static[1:])


def test_graphs_refused_without_cuda(nets):
    _, a2e, _ = nets
    with pytest.raises(BenchError, match="cuda"):
        FastRealTalk(copy.deepcopy(a2e), None, cuda_graphs=True, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CUDA-graph capture)")
def test_cuda_graph_matches_eager_after_two_references(nets):
    """Real CudaGraphRunner on the GPU: after two different set_reference calls the replayed graph gives the
    eager renderer's frames for the CURRENT reference (same kernels: the fp32 rounding bound, with TF32's
    eps where cuDNN may use TF32 convolutions), and the A2E graph gives the eager windows."""
    cfg, a2e, ren = nets
    dev = torch.device("cuda")
    eps = 2.0 ** -10 if torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32 else \
        torch.finfo(torch.float32).eps
    tol = rounding_bound(ren, torch.float32) / torch.finfo(torch.float32).eps * eps
    src, mask, alpha, beta, rho, ref = (t.to(dev) for t in _render_inputs(cfg, b=4))
    ref2 = torch.rand(ref.shape, generator=torch.Generator().manual_seed(7)).to(dev)
    eager = copy.deepcopy(ren).to(dev)
    fast = FastRealTalk(copy.deepcopy(a2e), copy.deepcopy(ren), dtype="fp32", channels_last=True, device=dev,
                        max_batch=4, cuda_graphs=True)
    outs = []
    for r in (ref, ref2):
        fast.set_reference(r)
        got = fast.render(src, mask, alpha, beta, rho)
        want = _eager_render(eager, src, mask, alpha, beta, rho, r)
        err = (got - want).abs().max().item()
        print(f"CUDA graph vs eager renderer: max abs error {err:.2e} (tol {tol:.2e})")
        assert err < tol
        outs.append(got)
    assert (outs[0] - outs[1])[:, :, S // 2:].abs().max() > 100 * tol
    assert sum(k[0] == "renderer" for k in fast.graphs) == 1  # captured once, replayed for both references
    tokens, alpha_a, hist = (t.to(dev) for t in _a2e_inputs(cfg, 2, 30))
    want = _eager_clip(copy.deepcopy(a2e).to(dev), tokens, alpha_a, hist, 30)
    got = fast.predict_clip(tokens, alpha_a, hist, 30)
    atol = rounding_bound(a2e, torch.float32) / torch.finfo(torch.float32).eps * eps * max(1.0, want.abs().max().item())
    assert (got - want).abs().max().item() < atol


def test_vectorised_crossfade_equals_frame_by_frame(nets):
    """ClipExpressions.frames (one weighted add per window) gives frame()'s values bit for bit: the same fp32
    products, summed in the same window order, divided by the same fp32 weight sums; on any subset of frames."""
    cfg, a2e, _ = nets
    n = 40  # windows at 0, 12, 24: crossfades over frames 12-15 and 24-27, the last window past the end
    tokens, alpha, hist = _a2e_inputs(cfg, 1, n)
    fast = FastRealTalk(copy.deepcopy(a2e), None, dtype="fp32")
    clip = ClipExpressions(fast, tokens[0], alpha, hist[0], n).all()
    one_by_one = torch.stack([clip.frame(i) for i in range(n)])
    assert torch.equal(clip.frames(range(n)), one_by_one)
    assert torch.equal(clip.frames([27, 3, 14]), one_by_one[[27, 3, 14]])
    assert clip.frames([]).shape == (0, cfg.a2e.n_exp)


# ------------------------------------------------------------------ issue 16 item 4: the no-autograd CPU paths
# Inference (no autograd) runs the renderer's AdaIN as two-pass statistics + one fused modulation with an
# in-place leaky ReLU, its upsample + skip concatenation as one write, and the A2E's transformer layers as
# realtalk.a2e.encoder_layer_inference / decoder_layer_inference. With autograd on, the modules run the
# composite code (instance_norm, interpolate + cat, nn.Transformer*Layer): the reference these are held to.


def _reference_and_fp64(module, fn):
    """(fp32 output with autograd on: the composite eager path, fp64 output of the same composite path)."""
    with torch.enable_grad():
        want = fn(module, torch.float32).detach()
        want64 = fn(copy.deepcopy(module).double(), torch.float64).detach()
    return want, want64


@pytest.fixture(params=["kernels", "torch"])
def cpu_kernels_on(request, monkeypatch):
    """Each renderer inference helper twice: through realtalk/cpu_kernels.c (fp32 channels_last CPU) and through
    its torch path (as where no C compiler is found)."""
    from realtalk import cpu_kernels

    if request.param == "torch":
        monkeypatch.setattr(cpu_kernels, "available", lambda: False)
    elif not cpu_kernels.available():
        pytest.fail(f"the C kernels did not build here: {cpu_kernels.status()}")
    return request.param == "kernels"


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 16, 32, 32), (3, 24, 8, 8)])
def test_adain_leaky_relu_equals_the_composite(shape, channels_last, cpu_kernels_on):
    """adain_leaky_relu without autograd = F.leaky_relu(adain(...)) (instance_norm, modulation, leaky ReLU),
    in the input's layout. Both are fp32 evaluations of the same formula: each output carries the rounding
    of two reductions over n = H*W values (mean, mean square deviation) and a few elementwise ops, so both
    sit within eps * sqrt(n) (random-walk accumulation, as tests/_numerics.rounding_bound) of the fp64
    result, times the output scale; held to that against fp64 and to twice it against each other."""
    from realtalk.renderer import adain, adain_leaky_relu

    g = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=g) * 3 + 5  # a mean far from 0: the statistics must not cancel
    s, b = torch.randn(shape[:2], generator=g) * 0.3, torch.randn(shape[:2], generator=g) * 0.3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = adain_leaky_relu(x, s, b, 0.2)
        comp = torch.nn.functional.leaky_relu(adain(x, s, b), 0.2)
        want64 = torch.nn.functional.leaky_relu(adain(x.double(), s.double(), b.double()), 0.2)
    tol = torch.finfo(torch.float32).eps * math.sqrt(shape[2] * shape[3]) * max(1.0, want64.abs().max().item())
    assert got.shape == x.shape and got.dtype == x.dtype
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert (got.double() - want64).abs().max().item() < tol
    assert (got - comp).abs().max().item() < 2 * tol
    with torch.enable_grad():  # autograd takes the composite, bit for bit
        xg = x.clone().requires_grad_(True)
        assert torch.equal(adain_leaky_relu(xg, s, b, 0.2), torch.nn.functional.leaky_relu(adain(xg, s, b), 0.2))


@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample2x_cat_is_interpolate_then_cat_exactly(channels_last):
    """upsample2x_cat only copies: equal to interpolate(nearest, 2x) + cat bit for bit, same memory format."""
    from realtalk.renderer import upsample2x_cat

    g = torch.Generator().manual_seed(5)
    x, skip = torch.randn(2, 5, 7, 9, generator=g), torch.randn(2, 3, 14, 18, generator=g)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x, skip = x.contiguous(memory_format=fmt), skip.contiguous(memory_format=fmt)
    want = torch.cat([torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1)
    got = upsample2x_cat(x, skip)
    assert torch.equal(got, want) and got.shape == (2, 8, 14, 18) and got.stride() == want.stride()


@pytest.mark.parametrize("channels_last", [False, True])
def test_no_grad_renderer_equals_the_composite_renderer(nets, channels_last):
    """The whole renderer without autograd (fused AdaIN, one-write upsample + cat, in-place activations) gives
    the composite eager renderer's frames within the network's fp32 rounding bound, and both are that close
    to the fp64 evaluation; the FLOPs counted on it are the composite's minus exactly those the channels_last
    CPU path's low-resolution skip merge does not do (_merge_flops_saved)."""
    from harness.core.flops import count_flops

    cfg, _, ren = nets
    src, mask, alpha, beta, rho, ref = _render_inputs(cfg, b=2)
    warped = torch.rand(src.shape, generator=torch.Generator().manual_seed(6))
    net = copy.deepcopy(ren)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        net = net.to(memory_format=fmt)

    def run(m, dt):
        args = [t.to(dt) for t in (src, mask, alpha, beta, rho, warped)]
        args = [t.contiguous(memory_format=fmt) if t.dim() == 4 else t for t in args]
        r = ref.to(dt).contiguous(memory_format=fmt)
        return m(args[0], None, args[1], args[2], args[3], args[4], ref_feats=m.encode_reference(r),
                 warped=args[5])[0]

    want, want64 = _reference_and_fp64(net, run)
    with torch.inference_mode():
        got = run(net, torch.float32)
        flops_fast = count_flops(lambda: run(net, torch.float32))
    with torch.enable_grad():
        flops_eager = count_flops(lambda: run(net, torch.float32))
    tol = rounding_bound(ren, torch.float32)
    err, err64, ref64 = [(a.double() - b.double()).abs().max().item() for a, b in
                         ((got, want), (got, want64), (want, want64))]
    print(f"renderer no-grad vs composite fp32 {err:.2e}, vs fp64 {err64:.2e} (composite vs fp64 {ref64:.2e}; "
          f"tol {tol:.2e})")
    assert got.shape == want.shape == (2, 3, S, S) and err < tol and err64 < tol and ref64 < tol
    assert (got - src)[:, :, S // 2:].abs().max() > 100 * tol  # the generated region carries signal
    assert flops_fast == flops_eager - _merge_flops_saved(ren, 2, S, channels_last) > 0


def _merge_flops_saved(ren, b: int, size: int, channels_last: bool) -> int:
    """FLOPs the fp32 channels_last CPU path does not do (realtalk.cpu_kernels.upsample2x_merge): each
    upsampling FIA module's 1x1 merge runs on the low-resolution x (h*w pixels) instead of its 4x upsample:
    2 * b * cout * c_x * 3*h*w fewer. 0 when the kernels cannot run (NCHW, or no C compiler here)."""
    from realtalk import cpu_kernels

    if not (channels_last and cpu_kernels.available()):
        return 0
    saved = 0
    for prev_lvl, mod in zip(ren.levels, ren.fia[1:]):
        hw = (size // prev_lvl) ** 2
        c_x = ren.fia[ren.levels.index(prev_lvl)].merge.out_channels
        saved += 2 * b * mod.merge.out_channels * c_x * 3 * hw
    return saved


def test_a2e_inference_layers_equal_the_nn_layers(nets):
    """AudioToExpression without autograd runs encoder_layer_inference / decoder_layer_inference: the
    composite nn.Transformer*Layer outputs (autograd on) within the A2E's fp32 rounding bound, as close to
    fp64, the same shape and the same counted FLOPs; with autograd on, the nn layers themselves run."""
    from harness.core.flops import count_flops

    cfg, a2e, _ = nets
    c = cfg.a2e
    g = torch.Generator().manual_seed(8)
    x = (torch.randn(5, c.n_audio_tokens, c.audio_dim, generator=g), torch.randn(5, c.n_id, generator=g),
         torch.randn(5, c.n_history, c.n_exp, generator=g))

    def run(m, dt):
        return m(*[t.to(dt) for t in x])

    want, want64 = _reference_and_fp64(a2e, run)
    with torch.inference_mode():
        got = run(a2e, torch.float32)
        assert a2e.inference_layers_apply(torch.zeros(1, 1, c.d_model))
        flops_fast = count_flops(lambda: run(a2e, torch.float32))
    with torch.enable_grad():
        assert not a2e.inference_layers_apply(torch.zeros(1, 1, c.d_model))
        flops_eager = count_flops(lambda: run(a2e, torch.float32))
    tol = rounding_bound(a2e, torch.float32) * max(1.0, want64.abs().max().item())
    err, err64 = (got - want).abs().max().item(), (got.double() - want64).abs().max().item()
    print(f"A2E inference layers vs nn layers fp32 {err:.2e}, vs fp64 {err64:.2e} (tol {tol:.2e})")
    assert got.shape == (5, c.T, c.n_exp) and want.abs().max() > 1e-2 and err < tol and err64 < tol
    assert flops_fast == flops_eager > 0


def test_demo_checkpoint_gives_the_composite_frames():
    """The shipped demo checkpoint (file and sha256 untouched) loads into the networks and the optimised CPU
    path (FastRealTalk: fp32, channels_last, CPU_CHUNK renderer calls, fused no-grad paths) gives the composite
    eager networks' frames and expressions within their fp32 rounding bounds, at the production 256 px."""
    from realtalk.demo_checkpoint import SHIPPED, SHIPPED_SHA256, check_shipped

    check_shipped(SHIPPED, SHIPPED_SHA256)
    ck = torch.load(SHIPPED, map_location="cpu", weights_only=False)
    from realtalk.config import RealTalkConfig

    cfg = RealTalkConfig.from_dict(ck["config"])
    from realtalk.a2e_ensemble import a2e_from_state

    a2e, ren = a2e_from_state(cfg.a2e, ck["a2e"]).eval(), Renderer(cfg.renderer).eval()
    ren.load_state_dict(ck["renderer"])
    s, b, c = cfg.renderer.size, 3, cfg.renderer
    g = torch.Generator().manual_seed(11)
    src, ref, warped = torch.rand(b, 3, s, s, generator=g), torch.rand(1, 3, s, s, generator=g), \
        torch.rand(b, 3, s, s, generator=g)
    mask = torch.ones(b, 1, s, s)
    mask[:, :, s // 2:] = 0
    alpha, beta, rho = torch.randn(1, c.n_id, generator=g), torch.randn(b, c.n_exp, generator=g), \
        torch.randn(b, c.n_pose, generator=g)
    with torch.enable_grad():
        feats = ren.encode_reference(ref)
        want = torch.cat([ren(src[i:i + 1], None, mask[i:i + 1], alpha, beta[i:i + 1], rho[i:i + 1],
                              ref_feats=feats, warped=warped[i:i + 1])[0].detach() for i in range(b)])
    fast = FastRealTalk(copy.deepcopy(a2e), copy.deepcopy(ren), dtype="fp32", channels_last=True, max_batch=b)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # CPU_CHUNK splits at one thread
        got = fast.render(src, mask, alpha.expand(b, -1), beta, rho, reference=ref, warped=warped)
    finally:
        torch.set_num_threads(n)
    tol = rounding_bound(ren, torch.float32)
    err = (got - want).abs().max().item()
    print(f"demo checkpoint: optimised vs composite renderer max abs {err:.2e} (tol {tol:.2e})")
    assert got.shape == want.shape == (b, 3, s, s) and err < tol
    assert (got - src)[:, :, s // 2:].abs().max() > 100 * tol
    tokens, alpha_a, hist = _a2e_inputs(cfg, 1, 30)
    ca = cfg.a2e
    wins = torch.cat([tokens[:, ca.tokens_per_frame * s0:][:, :ca.n_audio_tokens]
                      for s0 in window_starts(30, ca.T, ca.overlap)])
    k = wins.shape[0]
    with torch.enable_grad():
        want_a = a2e(wins, alpha_a.expand(k, -1), hist[0]).detach()
    got_a = fast.predict_expressions(wins, alpha_a.expand(k, -1), hist[0])
    tol_a = rounding_bound(a2e, torch.float32) * max(1.0, want_a.abs().max().item())
    assert got_a.shape == want_a.shape == (k, ca.T, ca.n_exp) and (got_a - want_a).abs().max().item() < tol_a
