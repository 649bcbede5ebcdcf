"""Optimised RealTalk inference: the ONE path that produces the evaluated frames (realtalk.inference) and the
frames `realtalk-bench latency` times (realtalk.latency_stages). Same two networks, run the fast way.

What it changes (never the maths):
- bf16/fp16 autocast (AdaIN statistics stay fp32 inside the renderer); fp32 keeps eager numerics;
- channels_last weights and inputs for the renderer's convolutions (the NHWC kernels on GPU and oneDNN);
- the reference's encoder features computed once per clip, held in persistent buffers (`load_reference`
  copies into them, never rebinds, so a captured CUDA graph reads the current clip's reference);
- many frames per renderer call and all of a clip's A2E windows in one call: the renderer's norms are
  per-sample (GroupNorm/AdaIN) and the A2E's LayerNorm per token, so a batch gives the same outputs as
  one-at-a-time up to rounding;
- optional torch.compile, and (cuda_graphs) CUDA-graph replay of the network calls (`CudaGraphRunner`; the
  reference features are explicit graph inputs, copied into the graph's static buffers each call).

A clip's expressions (`ClipExpressions`): overlapping T-frame windows (stride T - overlap), each predicted
from its audio tokens, alpha and N historical expressions that the CALLER samples (the paper's "randomly
selected during training and inference": realtalk.inference samples them from the source clip's fitted
expressions with realtalk.data.sample_history, as training does). No prediction is fed back, so the windows
are independent and a clip's windows run as one batch. Shared frames are crossfaded linearly.

Attention is fused: the renderer's reference cross-attention calls F.scaled_dot_product_attention, and the
A2E's transformer layers in inference (eval + no grad) run as realtalk.a2e.encoder_layer_inference /
decoder_layer_inference: one bias-fused projection GEMM per input, scaled_dot_product_attention on per-head
views, residual adds in place (in the profile of a 21-window call the nn fast path's separate
_transform_bias_rescale_qkv pass and its layout copies were ~19% of self CPU time): tests/test_realtalk_fast.py
records the dispatched ops to show it. In inference the
renderer runs its fused no-grad paths too (realtalk.renderer.adain_leaky_relu, upsample2x_cat): the
composite modules (autograd on) are the reference they are tested against.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from harness.core.errors import BenchError
from harness.core.heap import network_allocations_on_heap

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Frames per renderer network call on CPU at ONE intra-op thread (render_batch splits larger batches). At 256 px
# the renderer is memory-bound (full-resolution 16-channel activations, GroupNorm/AdaIN/LeakyReLU passes): a
# 16-frame call's activations (67 MB each) are mmapped and page-faulted afresh by every op (glibc returns blocks
# > 32 MB to the OS) and miss every cache; 2 frames stay in the heap. Measured (renderer stage incl. warp prior,
# small config, 16 frames, interleaved in one process, process CPU per frame): 1 thread 150 ms at 2-frame calls,
# 155 at 4, 207 at 16 (wall 449 / 476 / 623 ms under load 5-7). At 2 threads the opposite: 754 / 585 / 370 ms
# (each op's parallel region needs the whole batch's work to pay its thread synchronisation), so with more than
# one thread batches are not split. Re-measured with the fused no-grad renderer paths (issue 16 item 4; 1 thread,
# interleaved, best process CPU per frame): 105.8 / 101.1 / 103.7 ms at 1- / 2- / 4-frame calls: 2 stays.
CPU_CHUNK = 2
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")


def autocast(device: torch.device | str, dtype: str) -> contextlib.AbstractContextManager:
    """Autocast to bf16/fp16 on the device (weight cache off: safe under CUDA-graph capture); no-op for fp32."""
    if dtype not in DTYPES:
        raise BenchError(f"dtype {dtype!r}: use one of {sorted(DTYPES)}")
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[dtype], cache_enabled=False)


def compile_module(fn: Callable[..., Any], mode: str | None, device: torch.device | str) -> Callable[..., Any]:
    """torch.compile with a clear BenchError if it cannot even be set up (compilation itself is lazy:
    `guard_compiled` turns a failure on the first call into a BenchError too)."""
    mode = mode or "max-autotune-no-cudagraphs"
    if mode not in COMPILE_MODES:
        raise BenchError(f"compile mode {mode!r}: use one of {COMPILE_MODES}")
    if mode in ("reduce-overhead", "max-autotune") and torch.device(device).type != "cuda":
        raise BenchError(f"compile mode {mode!r} captures CUDA graphs: it needs a cuda device, not {device}")
    try:
        return torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - any failure here is "compile unavailable"
        raise BenchError(f"torch.compile is unavailable on {device}: {exc}") from exc


def guard_compiled(fn: Callable[..., Any], device: torch.device | str) -> Callable[..., Any]:
    """Wrap a compiled callable: an error while compiling (first calls) becomes a one-line BenchError."""
    state = {"ok": False}

    def run(*args: Any, **kwargs: Any) -> Any:
        if state["ok"]:
            return fn(*args, **kwargs)
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            hint = " (inductor on CPU needs a working C++ compiler; run without --compile)" \
                if torch.device(device).type == "cpu" else ""
            raise BenchError(f"torch.compile failed on {device}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}{hint}") from exc
        state["ok"] = True
        return out

    return run


class CudaGraphRunner:
    """Capture fn(*static_inputs) once as a CUDA graph; each call copies its inputs into the static buffers
    (every tensor, nested in tuples/dicts, is an input: fn must read no tensor it was not given, or the
    graph would replay that tensor's capture-time memory) and replays. Shapes are fixed at capture."""

    def __init__(self, fn: Callable[..., Any], example: tuple[Any, ...], warmup: int = 3):
        if not torch.cuda.is_available() or not all(t.is_cuda for t in _tensors(example)):
            raise BenchError("CUDA graphs need a cuda device and cuda inputs")
        self.fn = fn
        self.static = tuple(_clone(x) for x in example)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                fn(*self.static)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(*self.static)

    def __call__(self, *inputs: Any) -> Any:
        copy_into(self.static, inputs)
        self.graph.replay()
        return self.out


def copy_into(static: Any, inputs: Any) -> None:
    """Copy every tensor of `inputs` into the matching tensor of `static` (same nesting); a tensor that IS the
    static buffer is not copied. Shape mismatches raise: a graph cannot take another shape."""
    dst, src = list(_tensors(static)), list(_tensors(inputs))
    if len(dst) != len(src):
        raise ValueError(f"graph captured {len(dst)} input tensors, got {len(src)}")
    for d, s in zip(dst, src):
        if d.shape != s.shape:
            raise ValueError(f"graph captured an input of shape {tuple(d.shape)}, got {tuple(s.shape)}")
        if d.data_ptr() != s.data_ptr():
            d.copy_(s)


def _tensors(x: Any) -> Iterator[Tensor]:
    if isinstance(x, Tensor):
        yield x
    elif isinstance(x, dict):
        for k in sorted(x):
            yield from _tensors(x[k])
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)


def _clone(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.clone(memory_format=torch.preserve_format)
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_clone(v) for v in x)
    return x


def _pad_rows(xs: list[Tensor | None], rows: Callable[[int], int]) -> list[Tensor | None]:
    """Pad each tensor's batch dimension to rows(b) by repeating its last row (None stays None)."""
    b = next(t for t in xs if t is not None).shape[0]
    pad = rows(b) - b
    if pad <= 0:
        return xs
    return [None if t is None else torch.cat([t, t[-1:].expand(pad, *t.shape[1:])]) for t in xs]


def _to_float(x: Tensor) -> Tensor:
    """Autocast outputs (bf16/fp16) back to fp32; fp32 and fp64 networks keep their dtype (the fp64 reference)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def to_channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


# ---------------------------------------------------------------------------------------------- windows
def window_starts(n_frames: int, T: int, overlap: int) -> list[int]:
    """First frame of each window: stride T - overlap, the last window reaching past n_frames - 1."""
    stride = T - overlap
    if stride <= 0:
        raise ValueError(f"overlap {overlap} must be smaller than the window T={T}")
    k = 1 if n_frames <= T else math.ceil((n_frames - T) / stride) + 1
    return [i * stride for i in range(k)]


def window_weights(T: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """[T] crossfade weights of one window: linear ramps over the overlapped frames (none at the clip ends)."""
    j = np.arange(T, dtype=np.float64)
    w = np.ones(T)
    if overlap > 0:
        if not first:
            w = np.minimum(w, (j + 1) / (overlap + 1))
        if not last:
            w = np.minimum(w, (T - j) / (overlap + 1))
    return w


class ClipExpressions:
    """Per-frame expressions [n_exp] of one clip's n_frames output from its overlapping A2E windows: the one
    implementation used by the batched path (`all()`: every window in one A2E call), the single-frame path
    (`frames([i])`: a window is predicted when a frame first needs it) and the latency stage.

    tokens [tpf * n_pad, A] (n_pad = last window start + T, realtalk.inference.RealTalkPipeline.audio_tokens);
    alpha [1, n_id]; histories [K, N, n_exp], one per window (sampled by the caller)."""

    def __init__(self, fast: "FastRealTalk", tokens: Tensor, alpha: Tensor, histories: Tensor, n_frames: int):
        c = fast.a2e.cfg  # type: ignore[union-attr]
        self.fast, self.tokens, self.alpha, self.histories, self.n = fast, tokens, alpha, histories, n_frames
        self.T, self.l, self.tpf = c.T, c.n_audio_tokens, c.tokens_per_frame
        self.starts = window_starts(n_frames, c.T, c.overlap)
        K = len(self.starts)
        if histories.shape[0] != K:
            raise ValueError(f"{K} windows need {K} histories, got {histories.shape[0]}")
        need = self.tpf * (self.starts[-1] + c.T)
        if tokens.shape[0] < need:
            raise ValueError(f"{n_frames} frames need {need} audio tokens, got {tokens.shape[0]}")
        self.weights = [torch.as_tensor(window_weights(c.T, c.overlap, k == 0, k == K - 1), dtype=torch.float32)
                        for k in range(K)]
        self.pred: dict[int, Tensor] = {}

    def window_tokens(self, ks: Sequence[int]) -> Tensor:
        return torch.stack([self.tokens[self.tpf * self.starts[k]:self.tpf * self.starts[k] + self.l] for k in ks])

    def predict(self, ks: Sequence[int]) -> None:
        """Predict the windows ks (those not yet predicted) in one batched A2E call."""
        ks = [k for k in ks if k not in self.pred]
        if not ks:
            return
        out = self.fast.predict_expressions(self.window_tokens(ks), self.alpha.expand(len(ks), -1),
                                            self.histories[ks])
        for k, p in zip(ks, out):
            self.pred[k] = p

    def all(self) -> "ClipExpressions":
        self.predict(range(len(self.starts)))
        return self

    def frame(self, i: int) -> Tensor:
        """[n_exp] at output frame i: weighted mean over the (one or two) windows covering it."""
        ks = [k for k, s0 in enumerate(self.starts) if s0 <= i < s0 + self.T]
        self.predict(ks)
        acc, wsum = None, 0.0
        for k in ks:
            w = float(self.weights[k][i - self.starts[k]])
            term = w * self.pred[k][i - self.starts[k]]
            acc = term if acc is None else acc + term
            wsum = wsum + w
        return acc / wsum

    def frames(self, ids: Sequence[int]) -> Tensor:
        """[len(ids), n_exp]: frame()'s crossfade for many frames at once, one weighted add per covering window
        instead of a few tensor ops per frame (a 10-s clip: 21 window adds, not 250 x 4 small ops). The same
        float32 products, summed in the same window order and divided by the same float32 weight sums (at most
        two windows overlap: stride T - overlap > overlap), so equal to frame() bit for bit."""
        ids = list(ids)
        if not ids:
            return torch.zeros(0, self.histories.shape[-1])
        lo, hi = min(ids), max(ids) + 1
        ks = [k for k, s0 in enumerate(self.starts) if s0 < hi and s0 + self.T > lo]
        self.predict(ks)
        n_exp = self.pred[ks[0]].shape[-1]
        ref = self.pred[ks[0]]
        acc = torch.zeros(hi - lo, n_exp, dtype=ref.dtype, device=ref.device)
        wsum = torch.zeros(hi - lo, 1, dtype=torch.float32, device=ref.device)
        for k in ks:
            a, b = max(lo, self.starts[k]), min(hi, self.starts[k] + self.T)
            w = self.weights[k][a - self.starts[k]:b - self.starts[k]].to(ref.device)[:, None]
            acc[a - lo:b - lo] += w * self.pred[k][a - self.starts[k]:b - self.starts[k]]
            wsum[a - lo:b - lo] += w
        return (acc / wsum)[torch.as_tensor(ids, device=ref.device) - lo]


class FastRealTalk:
    """Inference wrapper around a trained (or randomly initialised) A2E + renderer pair.

    The networks are put in eval mode and, with channels_last=True, the renderer's weights are converted
    to channels_last IN PLACE (same values; the eager module keeps working on any layout).
    cuda_graphs: replay a captured CUDA graph per input shape for both networks (cuda only; batches are
    padded to a power of two so a few graphs serve every batch size). graph_runner: the capture class
    (CudaGraphRunner; tests substitute an eager stand-in with the same static-buffer semantics)."""

    def __init__(self, a2e: nn.Module | None, renderer: nn.Module | None, *, dtype: str = "fp32",
                 channels_last: bool = True, compile: bool = False, compile_mode: str | None = None,
                 device: str | torch.device | None = None, max_batch: int = 64, cuda_graphs: bool = False,
                 graph_runner: Callable[..., Any] | None = None, a2e_batch: int = 64, cpu_chunk: int = CPU_CHUNK):
        if dtype not in DTYPES:
            raise BenchError(f"dtype {dtype!r}: use one of {sorted(DTYPES)}")
        ref_mod = renderer if renderer is not None else a2e
        if ref_mod is None:
            raise ValueError("FastRealTalk needs at least one network")
        self.device = torch.device(device) if device is not None else next(ref_mod.parameters()).device
        if cuda_graphs and graph_runner is None and self.device.type != "cuda":
            raise BenchError(f"CUDA graphs need a cuda device, not {self.device}")
        self.dtype = dtype
        self.channels_last = channels_last
        self.max_batch = int(max_batch)  # frames per renderer call
        self.a2e_batch = int(a2e_batch)  # windows per A2E call (a clip's windows are independent)
        self.cpu_chunk = max(1, int(cpu_chunk))  # frames per renderer network call on CPU (CPU_CHUNK)
        self.a2e = a2e.to(self.device).eval() if a2e is not None else None
        self.renderer = renderer.to(self.device).eval() if renderer is not None else None
        if self.renderer is not None and channels_last:
            self.renderer.to(memory_format=torch.channels_last)
        self._a2e_fn: Callable[..., Tensor] | None = self.a2e
        self._ren_fn: Callable[..., tuple[Tensor, Tensor]] | None = self.renderer
        if compile:
            if self.a2e is not None:
                self._a2e_fn = guard_compiled(compile_module(self.a2e, compile_mode, self.device), self.device)
            if self.renderer is not None:
                self._ren_fn = guard_compiled(compile_module(self.renderer, compile_mode, self.device), self.device)
        self.cuda_graphs = bool(cuda_graphs)
        self.graph_runner = graph_runner or CudaGraphRunner
        self.graphs: dict[tuple, Any] = {}
        self.ref_feats: dict[int, Tensor] | None = None  # persistent buffers (load_reference copies into them)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype)

    def _graphed(self, key: tuple, fn: Callable[..., Any], inputs: tuple[Any, ...]) -> Any:
        """fn(*inputs), through a graph captured for these input shapes on first use (cuda_graphs)."""
        if not self.cuda_graphs:
            return fn(*inputs)
        key = key + tuple(tuple(t.shape) for t in _tensors(inputs))
        if key not in self.graphs:
            self.graphs[key] = self.graph_runner(fn, inputs)
        return _clone(self.graphs[key](*inputs))  # the graph's output buffers are rewritten by the next replay

    def _graph_batch(self, b: int, cap: int) -> int:
        """Rows a network call of b rows runs with: b eagerly; with graphs the next power of two (at most
        cap), so a few captured graphs serve every batch size (padding rows are dropped after)."""
        if not self.cuda_graphs or b >= cap:
            return b
        return min(cap, 1 << max(0, b - 1).bit_length())

    # ------------------------------------------------------------------------------------------ A2E
    def _a2e_call(self, audio: Tensor, alpha: Tensor, history: Tensor) -> Tensor:
        with self.autocast():
            return _to_float(self._a2e_fn(audio, alpha, history))  # type: ignore[misc]

    @torch.inference_mode()
    def predict_expressions(self, audio: Tensor, alpha: Tensor, history: Tensor) -> Tensor:
        """Independent windows, a2e_batch per network call: audio [B,l,A], alpha [B,n_id], history
        [B,N,n_exp] -> beta [B,T,n_exp] fp32."""
        if self._a2e_fn is None:
            raise ValueError("no A2E network")
        dev = self.device
        audio, alpha, history = audio.to(dev), alpha.to(dev), history.to(dev)
        outs = []
        cap = self.a2e_batch
        for lo in range(0, audio.shape[0], cap):
            x = _pad_rows([audio[lo:lo + cap], alpha[lo:lo + cap], history[lo:lo + cap]],
                          lambda b: self._graph_batch(b, cap))
            n = min(cap, audio.shape[0] - lo)
            outs.append(self._graphed(("a2e",), self._a2e_call, tuple(x))[:n])
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    @torch.inference_mode()
    def predict_clip(self, tokens: Tensor, alpha: Tensor, histories: Tensor, n_frames: int) -> Tensor:
        """B clips' expressions: tokens [B, tpf*n_pad, A], alpha [B,n_id], histories [B,K,N,n_exp] (one per
        window) -> [B, n_frames, n_exp], crossfaded (ClipExpressions); all B*K windows in one batched call."""
        b = tokens.shape[0]
        clips = [ClipExpressions(self, tokens[i], alpha[i:i + 1], histories[i], n_frames) for i in range(b)]
        K = len(clips[0].starts)
        out = self.predict_expressions(torch.cat([c.window_tokens(range(K)) for c in clips]),
                                       alpha.repeat_interleave(K, 0), histories.flatten(0, 1))
        for i, c in enumerate(clips):
            c.pred = {k: out[i * K + k] for k in range(K)}
        return torch.stack([c.frames(range(n_frames)) for c in clips])

    # ------------------------------------------------------------------------------------------ renderer
    @torch.inference_mode()
    def encode_reference(self, reference: Tensor) -> dict[int, Tensor]:
        """The reference frame's [1,3,H,W] features (fresh tensors; load_reference makes them current)."""
        if self.renderer is None:
            raise ValueError("no renderer network")
        ref = reference.to(self.device)
        if self.channels_last:
            ref = to_channels_last(ref)
        with self.autocast():
            return self.renderer.encode_reference(ref)

    @torch.inference_mode()
    def load_reference(self, feats: dict[int, Tensor]) -> dict[int, Tensor]:
        """Make feats the current reference by COPYING them into the persistent buffers (allocated on the
        first call, or again when keys/shapes/dtypes change, which also drops graphs captured on the old ones)."""
        cur = self.ref_feats
        same = cur is not None and cur.keys() == feats.keys() and all(
            cur[k].shape == feats[k].shape and cur[k].dtype == feats[k].dtype and cur[k].device == feats[k].device
            for k in feats)
        if same:
            for k, v in feats.items():
                cur[k].copy_(v)  # type: ignore[index]
        else:
            self.ref_feats = {k: v.clone(memory_format=torch.preserve_format) for k, v in feats.items()}
            self.graphs = {k: g for k, g in self.graphs.items() if k[0] != "renderer"}
        return self.ref_feats  # type: ignore[return-value]

    def set_reference(self, reference: Tensor) -> dict[int, Tensor]:
        """Encode the clip's reference frame [1,3,H,W] once; later `render` calls reuse the features."""
        return self.load_reference(self.encode_reference(reference))

    @torch.inference_mode()
    def render(self, source: Tensor, mask: Tensor, alpha: Tensor, beta: Tensor, rho: Tensor,
               reference: Tensor | None = None, warped: Tensor | None = None) -> Tensor:
        """Blended frames I_hat = M*I_s + (1-M)*F_d, float32 [B,3,H,W] in [0,1], rendered max_batch at a time.

        source: the UNMASKED source crops (the renderer masks them itself and needs them for the blend);
        mask [B,1,H,W] (1 = keep source); alpha [B or 1,n_id]; beta [B,n_exp]; rho [B,n_pose];
        reference [1,3,H,W] (or set_reference beforehand); warped [B,3,H,W]: the reference warped to each
        frame's expression (output="warp_residual" renderers)."""
        if reference is not None:
            self.set_reference(reference)
        b = source.shape[0]
        if alpha.shape[0] == 1 and b > 1:
            alpha = alpha.expand(b, -1)
        outs = []
        for lo in range(0, b, self.max_batch):
            sl = slice(lo, min(b, lo + self.max_batch))
            outs.append(self.render_batch(source[sl], mask[sl], alpha[sl], beta[sl], rho[sl],
                                          None if warped is None else warped[sl]))
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _ren_call(self, src: Tensor, m: Tensor, alpha: Tensor, beta: Tensor, rho: Tensor,
                  warped: Tensor | None, ref_feats: dict[int, Tensor]) -> Tensor:
        with self.autocast():
            i_hat, _ = self._ren_fn(src, None, m, alpha, beta, rho, ref_feats=ref_feats,  # type: ignore[misc]
                                    warped=warped)
        return _to_float(i_hat)

    @torch.inference_mode()
    def render_batch(self, source: Tensor, mask: Tensor, alpha: Tensor, beta: Tensor, rho: Tensor,
                     warped: Tensor | None = None) -> Tensor:
        """One renderer call (no chunking) on the current reference; inputs already on the device are not
        copied. With cuda_graphs the batch is padded to `_graph_batch` rows (per-sample
        norms: the padding rows change nothing) and the reference features are a graph input."""
        if self._ren_fn is None:
            raise ValueError("no renderer network")
        if self.ref_feats is None:
            raise ValueError("call set_reference(reference) first, or pass reference=")
        dev, b = self.device, source.shape[0]
        x = [source.to(dev), mask.to(dev), alpha.to(dev), beta.to(dev), rho.to(dev),
             None if warped is None else warped.to(dev)]
        x = _pad_rows(x, lambda n: self._graph_batch(n, self.max_batch))
        if self.channels_last:
            x = [to_channels_last(t) if t is not None else None for t in x]
        # CPU: memory-bound, so the activations reuse the last call's heap pages (harness.core.heap)
        with network_allocations_on_heap() if dev.type == "cpu" else contextlib.nullcontext():
            if dev.type == "cpu" and not self.cuda_graphs and b > self.cpu_chunk and torch.get_num_threads() == 1:
                c = self.cpu_chunk  # CPU_CHUNK; per-sample norms, so a split batch gives the whole one's frames
                return torch.cat([self._ren_call(*[t if t is None else t[lo:lo + c] for t in x], self.ref_feats)
                                  for lo in range(0, b, c)])
            return self._graphed(("renderer", warped is None), self._ren_call, (*x, self.ref_feats))[:b]
