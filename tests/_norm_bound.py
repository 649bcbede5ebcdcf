"""fp32 rounding bound of a renderer forward that counts its normalisation reductions as well as its
conv/linear dot products (tests/_numerics.rounding_bound counts only the latter: enough at 64 px, not at 256,
where a GroupNorm at full resolution sums ~10^5 elements and the CPU's NHWC kernel rounds each partial sum).
Random-walk accumulation: eps * sqrt(n) per reduction of n terms, summed over every reduction of the forward."""
from __future__ import annotations

import math

import torch

from _numerics import rounding_bound


def norm_reductions(renderer: torch.nn.Module, *inputs, **kwargs) -> list[int]:
    """Terms per mean/variance reduction of one forward: GroupNorm (C/G * H * W) and the AdaIN instance norms
    (H * W, two per AdaIN residual block), recorded with forward hooks on a batch of 1."""
    from realtalk.renderer import AdaINResBlock

    sizes: list[int] = []

    def gn(mod, args, out):
        x = args[0]
        sizes.append(x[0].numel() // mod.num_groups)

    def ada(mod, args, out):
        x = args[0]
        sizes.extend([x.shape[2] * x.shape[3]] * 2)

    hooks = [m.register_forward_hook(gn) for m in renderer.modules() if isinstance(m, torch.nn.GroupNorm)]
    hooks += [m.register_forward_hook(ada) for m in renderer.modules() if isinstance(m, AdaINResBlock)]
    try:
        with torch.no_grad():
            renderer(*inputs, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def renderer_bound(renderer: torch.nn.Module, size: int) -> float:
    """rounding_bound(renderer) + eps * sum(sqrt(n)) over the norm reductions of a size x size forward
    (reference encoding included: the same encoder runs on the reference)."""
    c = renderer.cfg
    x = torch.rand(1, 3, size, size)
    m = torch.ones(1, 1, size, size)
    args = (x, None, m, torch.zeros(1, c.n_id), torch.zeros(1, c.n_exp), torch.zeros(1, c.n_pose))
    with torch.no_grad():
        feats = renderer.encode_reference(x)
    n = norm_reductions(renderer, *args, ref_feats=feats)  # the source pass (encoder + decoder)
    enc_norms = sum(1 for mm in renderer.encoder.modules() if isinstance(mm, torch.nn.GroupNorm))
    ref_pass = n[:enc_norms]  # the reference pass runs the encoder's norms once more
    eps = torch.finfo(torch.float32).eps
    return rounding_bound(renderer, torch.float32) + eps * sum(math.sqrt(k) for k in n + ref_pass)
