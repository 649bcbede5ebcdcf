"""Tolerances derived from the computation, not from one machine's output: CPUs (Intel/AMD, ISA, thread
count) pick different GEMM/convolution kernels and reduction orders, so two mathematically equal paths
agree only to their dtype's rounding level."""
from __future__ import annotations

import math

import torch


def rounding_bound(model: torch.nn.Module, dtype: torch.dtype) -> float:
    """Forward rounding error of O(1) outputs: eps * sqrt(fan-in) per dot product (random-walk
    accumulation), summed over every conv/linear layer (an over-count of the depth: skips run in parallel)."""
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    fan_in = max(m.weight[0].numel() for m in layers)
    return torch.finfo(dtype).eps * len(layers) * math.sqrt(fan_in)
