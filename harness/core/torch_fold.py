"""Inference-time rewrites of torch networks that keep their maths: BatchNorm folded into the conv (or linear)
layer it directly follows. An eval-mode BN is y = (x - mean) / sqrt(var + eps) * gamma + beta per channel, so
conv -> BN equals one conv with weight w * s and bias (b - mean) * s + beta, s = gamma / sqrt(var + eps): one
pass over the activations fewer per layer (issue 16: networks near their FLOP floor on CPU).
The folded weights are computed in float64 and rounded once to the layer's dtype; the tests of each network
bound the effect of that rounding next to the fp32 rounding of the run itself."""
from __future__ import annotations

from typing import Any


def fold_batchnorm(layer: Any, bn: Any) -> None:
    """Fold the eval-mode BatchNorm `bn` (1d/2d/3d) that directly follows `layer` (Conv*d or Linear, output
    channels first in its weight) into the layer's weight and bias, in place; the caller replaces `bn` by an
    identity. Raises ValueError when the channel counts do not match."""
    import torch

    if layer.weight.shape[0] != bn.num_features:
        raise ValueError(f"cannot fold BN({bn.num_features}) into a layer with {layer.weight.shape[0]} outputs")
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = layer.weight.double() * scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
        b0 = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
        b = (b0 - bn.running_mean.double()) * scale + bn.bias.double()
        dtype = layer.weight.dtype
        layer.weight.copy_(w.to(dtype))
        if layer.bias is None:
            layer.bias = torch.nn.Parameter(b.to(dtype), requires_grad=False)
        else:
            layer.bias.copy_(b.to(dtype))


def fold_sequential(seq: Any) -> int:
    """Fold every (conv/linear, BatchNorm) adjacent pair of an nn.Sequential in place (the BN becomes
    nn.Identity, so indices and state-dict names of the other layers stay); returns how many were folded."""
    import torch
    from torch import nn

    layers = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    names = list(seq._modules)
    n = 0
    for a, b in zip(names, names[1:]):
        first, second = seq._modules[a], seq._modules[b]
        if isinstance(first, layers) and isinstance(second, nn.modules.batchnorm._BatchNorm):
            fold_batchnorm(first, second)
            seq._modules[b] = torch.nn.Identity()
            n += 1
    return n
