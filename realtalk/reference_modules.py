"""The face-texture reference structure of a FIA module and the two alternatives of the paper's Table 7.

RealTalk's FIA module takes the reference texture by cross-attention from the decoder features to the
reference encoder features (ReferenceCrossAttention below, "attention"). Table 7 compares it
with the two usual feature-alignment modules it is meant to replace, which the paper names but does not
specify; both below are ours, with widths chosen so the paper-size renderer lands near the paper's
parameter counts (82.94M flow, 98.79M deformation; tests/test_realtalk_renderer.py prints both):

- "flow" (FlowWarpReference): a 3-layer conv net predicts a 2-channel flow field (normalised coordinates)
  from [decoder features; reference features]; the reference features are bilinearly resampled along it
  (F.grid_sample) and fused into the decoder features by a residual 1x1 conv. The last flow conv starts at
  zero, so an untrained module samples the reference in place (identity warp).
- "deform" (DeformableReference): a 2-layer conv net predicts DCNv2 offsets and modulation masks from the
  same concatenation; `layers` modulated deformable 3x3 convolutions (torchvision.ops.deform_conv2d) read
  the reference features at those positions (the first maps c_ref -> c_q, the others c_q -> c_q, each with
  its own offsets), fused residually as above. Offsets start at zero (a plain 3x3 conv of the reference).

Every module has forward(x [B,c_q,h,w], ref [B,c_ref,h,w]) -> [B,c_q,h,w] and is built by
`build_reference_module(kind, c_q, c_ref, cfg)`; the renderer places it where the cross-attention would be
(cfg.attn_levels).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from realtalk.config import RendererConfig

REFERENCE_MODULES = ("attention", "flow", "deform")


def sincos_2d(h: int, w: int, dim: int, device, dtype) -> Tensor:
    """Fixed 2-D sinusoidal position code [h*w, dim] so attention can use location as well as content."""
    q = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(q, device=device, dtype=torch.float32) / max(q, 1)))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32) / h * 64,
                            torch.arange(w, device=device, dtype=torch.float32) / w * 64, indexing="ij")
    y = ys.reshape(-1, 1) * omega
    x = xs.reshape(-1, 1) * omega
    pe = torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1)
    if pe.shape[1] < dim:
        pe = F.pad(pe, (0, dim - pe.shape[1]))
    return pe.to(dtype)


class ReferenceCrossAttention(nn.Module):
    """Decoder features (queries) attend to the reference encoder features (keys/values), residual."""

    def __init__(self, c_q: int, c_kv: int, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.dim = dim
        self.norm_q = nn.LayerNorm(c_q)
        self.norm_kv = nn.LayerNorm(c_kv)
        self.to_q = nn.Linear(c_q, dim)
        self.to_k = nn.Linear(c_kv, dim)
        self.to_v = nn.Linear(c_kv, dim)
        self.out = nn.Linear(dim, c_q)

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        b, c, h, w = x.shape
        pe = sincos_2d(h, w, self.dim, x.device, x.dtype)
        xq = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        kv = ref.flatten(2).transpose(1, 2)
        q = self.to_q(self.norm_q(xq)) + pe
        kvn = self.norm_kv(kv)
        k = self.to_k(kvn) + sincos_2d(ref.shape[2], ref.shape[3], self.dim, x.device, x.dtype)
        v = self.to_v(kvn)
        sh = lambda t: t.view(b, -1, self.heads, self.dim // self.heads).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(sh(q), sh(k), sh(v))
        o = o.transpose(1, 2).reshape(b, h * w, self.dim)
        return x + self.out(o).transpose(1, 2).reshape(b, c, h, w)


def _width(mult: float, c: int) -> int:
    """Hidden width = mult * c rounded to a multiple of 8 (at least 8)."""
    return max(8, int(round(mult * c / 8.0)) * 8)


class FlowWarpReference(nn.Module):
    """Predicted flow + grid_sample of the reference features, fused residually (Table 7 "flow-based")."""

    def __init__(self, c_q: int, c_ref: int, hidden: int):
        super().__init__()
        self.flow = nn.Sequential(
            nn.Conv2d(c_q + c_ref, hidden, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 2, 3, 1, 1),
        )
        nn.init.zeros_(self.flow[-1].weight)  # identity warp at the start
        nn.init.zeros_(self.flow[-1].bias)
        self.fuse = nn.Conv2d(c_q + c_ref, c_q, 1)

    @staticmethod
    def base_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """[1,h,w,2] pixel-centre sampling grid in grid_sample's normalised (x, y) order."""
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([gx, gy], dim=-1)[None].to(dtype)

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        ref = ref.to(x.dtype)
        flow = self.flow(torch.cat([x, ref], dim=1))  # [B,2,h,w], normalised units
        grid = self.base_grid(x.shape[2], x.shape[3], x.device, flow.dtype) + flow.permute(0, 2, 3, 1)
        warped = F.grid_sample(ref, grid.to(ref.dtype), mode="bilinear", padding_mode="border", align_corners=False)
        return x + self.fuse(torch.cat([x, warped], dim=1))


class DeformableReference(nn.Module):
    """Modulated deformable convolutions over the reference features (Table 7 "deformation-based")."""

    K = 3  # kernel size of the deformable convolutions

    def __init__(self, c_q: int, c_ref: int, hidden: int, layers: int = 2, offset_groups: int = 8):
        super().__init__()
        if layers < 1:
            raise ValueError("DeformableReference needs at least one layer")
        k2 = self.K * self.K
        self.offset_groups = math.gcd(offset_groups, math.gcd(c_ref, c_q))
        self.offsets = nn.ModuleList()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        cin = c_ref
        for _ in range(layers):
            net = nn.Sequential(nn.Conv2d(c_q + c_ref, hidden, 3, 1, 1), nn.LeakyReLU(0.2),
                                nn.Conv2d(hidden, 3 * k2 * self.offset_groups, 3, 1, 1))
            nn.init.zeros_(net[-1].weight)  # zero offsets, mask logits 0 -> modulation 0.5
            nn.init.zeros_(net[-1].bias)
            self.offsets.append(net)
            w = torch.empty(c_q, cin, self.K, self.K)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(c_q)))
            cin = c_q
        self.fuse = nn.Conv2d(c_q + c_q, c_q, 1)

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        from torchvision.ops import deform_conv2d

        ref = ref.to(x.dtype)
        cond = torch.cat([x, ref], dim=1)
        h = ref
        n = 2 * self.K * self.K * self.offset_groups
        for i, (net, w, b) in enumerate(zip(self.offsets, self.weights, self.biases)):
            o = net(cond)
            offset, mask = o[:, :n], torch.sigmoid(o[:, n:])
            # deform_conv2d has no reduced-precision kernel on every device: run it in fp32
            h = deform_conv2d(h.float(), offset.float(), w.float(), b.float(), padding=self.K // 2,
                              mask=mask.float()).to(x.dtype)
            if i < len(self.offsets) - 1:
                h = F.leaky_relu(h, 0.2)
        return x + self.fuse(torch.cat([x, h], dim=1))


def build_reference_module(kind: str, c_q: int, c_ref: int, cfg: RendererConfig) -> nn.Module:
    """The FIA face-texture reference structure of one decoder level."""
    if kind == "attention":
        return ReferenceCrossAttention(c_q, c_ref, cfg.attn_dim, cfg.attn_heads)
    if kind == "flow":
        return FlowWarpReference(c_q, c_ref, _width(cfg.flow_hidden_mult, c_ref))
    if kind == "deform":
        return DeformableReference(c_q, c_ref, _width(cfg.deform_hidden_mult, c_ref), cfg.deform_layers,
                                   cfg.deform_offset_groups)
    raise ValueError(f"unknown reference module {kind!r}; known: {', '.join(REFERENCE_MODULES)}")
