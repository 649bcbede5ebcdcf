"""Optimised RealTalk inference: the same two networks, run the fast way.

What it changes (never the maths):
- bf16/fp16 autocast (AdaIN statistics stay fp32 inside the renderer); fp32 keeps exact eager numerics;
- channels_last weights and inputs for the renderer's convolutions (the NHWC kernels on GPU and oneDNN);
- the reference's encoder features computed once per clip (`set_reference`), not per frame;
- many frames per renderer call (`max_batch`): the renderer's norms are per-sample (GroupNorm/AdaIN), so a
  batch gives the same frames as one-at-a-time;
- optional torch.compile (mode "max-autotune-no-cudagraphs" by default; "reduce-overhead" adds CUDA graphs),
  and plain CUDA-graph capture for fixed shapes (`CudaGraphRunner`).

Attention is already fused: the renderer's reference cross-attention calls F.scaled_dot_product_attention,
and the A2E's nn.Transformer layers in inference (eval + no grad) dispatch to the fused kernels
(aten._transformer_encoder_layer_fwd / _native_multi_head_attention / scaled_dot_product_attention; no
separate softmax/bmm): tests/test_realtalk_fast.py records the dispatched ops to show it. So no
re-implementation of nn.MultiheadAttention is needed, and none is made.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from harness.core.errors import BenchError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
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
    """Capture fn(*static_inputs) once as a CUDA graph; each call copies new inputs into the static
    buffers and replays. Shapes are fixed at capture (the latency stages and fixed-batch inference)."""

    def __init__(self, fn: Callable[..., Any], example: tuple[Tensor, ...], warmup: int = 3):
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
        for dst, src in zip(_tensors(self.static), _tensors(inputs)):
            if dst.data_ptr() != src.data_ptr():
                dst.copy_(src)
        self.graph.replay()
        return self.out


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


def to_channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class FastRealTalk:
    """Inference wrapper around a trained (or randomly initialised) A2E + renderer pair.

    The networks are put in eval mode and, with channels_last=True, the renderer's weights are converted
    to channels_last IN PLACE (same values; the eager module keeps working on any layout)."""

    def __init__(self, a2e: nn.Module | None, renderer: nn.Module | None, *, dtype: str = "fp32",
                 channels_last: bool = True, compile: bool = False, compile_mode: str | None = None,
                 device: str | torch.device | None = None, max_batch: int = 64):
        if dtype not in DTYPES:
            raise BenchError(f"dtype {dtype!r}: use one of {sorted(DTYPES)}")
        ref_mod = renderer if renderer is not None else a2e
        if ref_mod is None:
            raise ValueError("FastRealTalk needs at least one network")
        self.device = torch.device(device) if device is not None else next(ref_mod.parameters()).device
        self.dtype = dtype
        self.channels_last = channels_last
        self.max_batch = int(max_batch)
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
        self.ref_feats: dict[int, Tensor] | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype)

    # ------------------------------------------------------------------------------------------ A2E
    @torch.inference_mode()
    def predict_expressions(self, audio: Tensor, alpha: Tensor, history: Tensor) -> Tensor:
        """One window per batch item: audio [B,2T,A], alpha [B,n_id], history [B,N,n_exp] -> beta [B,T,n_exp]
        fp32. Windows of one clip are sequential (history = previous window); batch across clips/items."""
        if self._a2e_fn is None:
            raise ValueError("no A2E network")
        dev = self.device
        with self.autocast():
            out = self._a2e_fn(audio.to(dev), alpha.to(dev), history.to(dev))
        return out.float()

    @torch.inference_mode()
    def predict_clip(self, tokens: Tensor, alpha: Tensor, history: Tensor, n_windows: int) -> Tensor:
        """n_windows sequential windows (history fed back) for B clips: tokens [B, 2T*n_windows, A] ->
        [B, T*n_windows, n_exp]. Same recurrence as realtalk.inference (history = last N predictions)."""
        c = self.a2e.cfg  # type: ignore[union-attr]
        n_tok, n_hist = c.n_audio_tokens, history.shape[1]
        out = []
        for k in range(n_windows):
            pred = self.predict_expressions(tokens[:, k * n_tok:(k + 1) * n_tok], alpha, history)
            out.append(pred)
            history = torch.cat([history.to(pred), pred], dim=1)[:, -n_hist:]
        return torch.cat(out, dim=1)

    # ------------------------------------------------------------------------------------------ renderer
    @torch.inference_mode()
    def set_reference(self, reference: Tensor) -> dict[int, Tensor]:
        """Encode the clip's reference frame [1,3,H,W] once; later `render` calls reuse the features."""
        if self.renderer is None:
            raise ValueError("no renderer network")
        ref = reference.to(self.device)
        if self.channels_last:
            ref = to_channels_last(ref)
        with self.autocast():
            self.ref_feats = self.renderer.encode_reference(ref)
        return self.ref_feats

    @torch.inference_mode()
    def render(self, source: Tensor, mask: Tensor, alpha: Tensor, beta: Tensor, rho: Tensor,
               reference: Tensor | None = None) -> Tensor:
        """Blended frames I_hat = M*I_s + (1-M)*F_d, float32 [B,3,H,W] in [0,1], rendered max_batch at a time.

        source: the UNMASKED source crops (the renderer masks them itself and needs them for the blend);
        mask [B,1,H,W] (1 = keep source); alpha [B or 1,n_id]; beta [B,n_exp]; rho [B,n_pose];
        reference [1,3,H,W] (or set_reference beforehand)."""
        if self._ren_fn is None:
            raise ValueError("no renderer network")
        if reference is not None:
            self.set_reference(reference)
        if self.ref_feats is None:
            raise ValueError("call set_reference(reference) first, or pass reference=")
        b = source.shape[0]
        if alpha.shape[0] == 1 and b > 1:
            alpha = alpha.expand(b, -1)
        outs = []
        for lo in range(0, b, self.max_batch):
            sl = slice(lo, min(b, lo + self.max_batch))
            outs.append(self.render_batch(source[sl], mask[sl], alpha[sl], beta[sl], rho[sl]))
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def render_batch(self, source: Tensor, mask: Tensor, alpha: Tensor, beta: Tensor, rho: Tensor) -> Tensor:
        """One renderer call (no chunking); inputs already on the device are not copied."""
        dev = self.device
        src, m = source.to(dev), mask.to(dev)
        if self.channels_last:
            src, m = to_channels_last(src), to_channels_last(m)
        with self.autocast():
            i_hat, _ = self._ren_fn(src, None, m, alpha.to(dev), beta.to(dev), rho.to(dev),  # type: ignore[misc]
                                    ref_feats=self.ref_feats)
        return i_hat.float()
