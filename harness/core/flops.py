"""FLOPs of one call, counted by torch.utils.flop_counter, with the two blind spots it has on CPU filled in.

1. torch's counter has formulas for the CUDA attention kernels only: on CPU, F.scaled_dot_product_attention runs
   aten._scaled_dot_product_flash_attention_for_cpu, which it does not know, so every attention matmul (Q K^T and
   P V) counted as zero. It is registered here with torch's own SDPA formula (sdpa_flop_count: 2 per MAC).
2. In inference (eval + no grad), nn.TransformerEncoderLayer / nn.MultiheadAttention dispatch to fused native
   kernels (aten._transformer_encoder_layer_fwd, aten._native_multi_head_attention) whose projections, FFN and
   attention are invisible to a dispatch-level counter. The count runs with the MHA fast path off
   (torch.backends.mha.set_fastpath_enabled(False)): the same layers then take their composite path
   (linear + SDPA), the same maths, so one count serves grad mode, no_grad and inference_mode alike.
Elementwise ops (norms, activations, softmax) are not counted: the FLOP floor is a GEMM floor.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator


def _sdpa_cpu_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                   **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_mapping() -> dict:
    import torch

    ops = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        ops[cpu_sdpa] = _sdpa_cpu_flop  # FlopCounterMode turns tensor arguments into shapes for it
    return ops


@contextlib.contextmanager
def mha_fastpath_off() -> Iterator[None]:
    """nn.MultiheadAttention / TransformerEncoderLayer on their composite (countable) path, restored on exit."""
    import torch

    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    old = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(old)


def count_flops(fn: Callable[[], Any]) -> int | None:
    """FLOPs of one call of fn (matmul/conv/attention, 2 per MAC; elementwise ops not counted); None when the
    counter fails on an op (an uncountable op must not kill a timing)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with mha_fastpath_off(), FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as counter:
            fn()
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001
        return None


_METADATA_OPS = {"_unsafe_view", "lift_fresh", "detach", "alias"}  # views whose schema does not say so
_ALLOC_OPS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}  # allocate, move nothing


def _nbytes(t: Any) -> int:
    """Bytes a kernel touches for a tensor: its elements, but never more than its storage (an expanded
    broadcast reads its storage once)."""
    n = t.numel() * t.element_size()
    try:
        return min(n, t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return n


def count_bytes(fn: Callable[[], Any]) -> int | None:
    """Memory traffic of one call, estimated as eager torch executes it: every aten kernel reads each tensor
    argument once and writes each output once (views, metadata ops and allocations move nothing). Composite
    ops (instance_norm, matmul, ...) are counted through their decomposition, the kernels eager runs (inference
    mode would otherwise hand them over whole: F.instance_norm's layout copies and two passes would count as
    one read and one write). A lower bound for an
    op whose working set spills the caches (a conv re-reads its input tile by tile), an upper bound where
    consecutive ops hit the cache; it is what a fused elementwise chain would save. None on failure."""
    try:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        class _Bytes(TorchDispatchMode):
            def __init__(self) -> None:
                super().__init__()
                self.total = 0

            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                with self:  # in inference mode composite ops reach here whole: count the kernels they run
                    out = func.decompose(*args, **(kwargs or {}))
                if out is not NotImplemented:
                    return out
                out = func(*args, **(kwargs or {}))
                if func.overloadpacket.__name__ in _ALLOC_OPS:
                    return out  # allocation only: no data moved
                rets = func._schema.returns
                if func.overloadpacket.__name__ in _METADATA_OPS or (
                        rets and all(r.alias_info is not None and not r.alias_info.is_write for r in rets)):
                    return out  # a view: no data moved
                ins = [a for a in tree_flatten((args, kwargs or {}))[0] if isinstance(a, torch.Tensor)]
                outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
                self.total += sum(_nbytes(t) for t in ins) + sum(_nbytes(t) for t in outs)
                return out

        with mha_fastpath_off(), _Bytes() as mode:
            fn()
        return int(mode.total)
    except Exception:  # noqa: BLE001
        return None
