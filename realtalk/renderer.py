"""Expression-to-face renderer (RealTalk Sec. 3.2) at 256x256.

Shared encoder: stem + d = 4 stages of 2 residual blocks (each stage halves the resolution and widens).
The masked source M*I_s and the reference I_r go through it stacked along the batch.
Decoder: one FIA module per level 1/16, 1/8, 1/4, 1/2, 1/1. A FIA module
    upsamples (not at 1/16) -> merges the source skip feature (concat + 1x1, ours) ->
    n residual blocks whose norms are AdaIN, scale/bias from a 3-layer MLP of [alpha, beta, rho] (lip-shape control)
    -> cross-attention from the decoder features to the reference encoder features of the same
       resolution, at 1/8 and 1/16 only (face-texture reference). Table 7 ablation: cfg.reference_module
       "flow" / "deform" puts flow-based warping / deformable convolution there (realtalk.reference_modules).
Mask: cfg.mask = "learnable" uses the caller's 3D-prior mask; "naive" (Table 6) the fixed lower half.
Head: conv -> sigmoid gives F_d in [0,1]; I_hat = M * I_s + (1 - M) * F_d.
With output="ref_residual" (ours; the small CPU config) the head instead edits the reference frame:
F_d = sigmoid(logit(I_r) + head), so an untrained renderer starts from the reference's lower face (the same
person, same crop track) and training only has to learn the expression change -- minutes of CPU training then
give a face rather than a blur. The paper config keeps the plain sigmoid head.
With output="warp_residual" (ours; the small CPU config) the edited image is the reference WARPED to the
target expression by its face-model landmarks (realtalk.warp, a landmark-driven warp prior): forward(...,
warped=) takes it per sample; without it the unwarped reference is used (as ref_residual).

Autocast/channels_last friendly: convs, GroupNorm, linear, SDPA only; AdaIN statistics in fp32.
Per-sample normalisation only (GroupNorm/AdaIN), so the batched and the single-frame paths agree.
Without autograd (inference) the same maths runs with fewer passes over the activations (issue 16 item 4):
AdaIN + leaky ReLU as `adain_leaky_relu` (no NCHW copy of channels_last input), upsample + skip concat as
`upsample2x_cat` (one write), activations and residual adds in place on fresh tensors. With autograd on, the
composite code above runs unchanged (training). Same parameters, same state_dict keys.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from realtalk import cpu_kernels
from realtalk.config import RendererConfig
from realtalk.mask import MASK_KINDS, naive_lower_half_mask
from realtalk.reference_modules import build_reference_module


def _gn(c: int, groups: int) -> nn.GroupNorm:
    g = math.gcd(groups, c)
    return nn.GroupNorm(g, c)


def _gn_leaky_relu(norm: nn.GroupNorm, x: Tensor, act, inplace: bool = False) -> Tensor:
    """act(norm(x), 0.2); fp32 channels_last CPU inference: one fused stats + apply (realtalk/cpu_kernels.c),
    into x itself when `inplace` (x is a fresh conv output nothing else reads)."""
    fused = cpu_kernels.norm_leaky_relu(x, norm.num_groups, norm.weight, norm.bias, eps=norm.eps, slope=0.2,
                                        inplace=inplace)
    return fused if fused is not None else act(norm(x), 0.2)


class ResBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, LeakyReLU, 3x3 convs); stride 2 on the first conv downsamples."""

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 8):
        super().__init__()
        self.n1 = _gn(cin, groups)
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.n2 = _gn(cout, groups)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, stride) if (cin != cout or stride != 1) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        act = F.leaky_relu if torch.is_grad_enabled() else F.leaky_relu_  # in place on the fresh norm output
        h = self.c1(_gn_leaky_relu(self.n1, x, act))
        h = self.c2(_gn_leaky_relu(self.n2, h, act, inplace=not torch.is_grad_enabled()))
        return self.skip(x) + h if torch.is_grad_enabled() else h.add_(self.skip(x))


class Encoder(nn.Module):
    """Returns features at 1/1 (stem), 1/2, 1/4, 1/8, 1/16 keyed by downsampling factor."""

    def __init__(self, cfg: RendererConfig):
        super().__init__()
        self.stem = nn.Conv2d(3, cfg.stem, 7, 1, 3)
        stages = []
        cin = cfg.stem
        for cout in cfg.enc_channels:
            blocks = [ResBlock(cin, cout, 2, cfg.groups)]
            blocks += [ResBlock(cout, cout, 1, cfg.groups) for _ in range(cfg.enc_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        h = self.stem(x)
        feats = {1: h}
        f = 1
        for st in self.stages:
            h = st(h)
            f *= 2
            feats[f] = h
        return feats


def adain(x: Tensor, scale: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Instance-normalise x (stats in fp32, or fp64 for fp64 x) then x * (1 + scale) + bias; scale/bias [B,C].
    F.instance_norm is the fused kernel: 1.8x faster on CPU than mean/var by hand, equal to 1e-6."""
    xn = F.instance_norm(x.to(torch.promote_types(x.dtype, torch.float32)), eps=eps).to(x.dtype)
    return xn * (1 + scale[:, :, None, None].to(x.dtype)) + bias[:, :, None, None].to(x.dtype)


def adain_leaky_relu(x: Tensor, scale: Tensor, bias: Tensor, slope: float = 0.2, eps: float = 1e-5,
                     inplace: bool = False) -> Tensor:
    """F.leaky_relu(adain(x, scale, bias, eps), slope), the same maths. Without autograd on fp32/fp64 x it runs
    as two-pass statistics (mean, then the mean of the squared deviations, as instance_norm does) over a
    layout-preserving view, and one fused (x - mean) * ((1 + scale) * rstd) + bias with an in-place leaky ReLU:
    no NCHW copy of a channels_last x (F.instance_norm copies it to NCHW for its batch-norm kernel and the
    result stays NCHW): at [2,16,256,256] 4.2 ms against 14.3 ms, the same error against float64 (at 256 px the
    AdaIN chain was about a quarter of the CPU renderer's time). fp32 channels_last x on the CPU goes to the fused
    C kernel (realtalk.cpu_kernels.norm_leaky_relu: double statistics, one apply pass; 1.6 ms there), which
    writes into x when `inplace` (pass it only for an x nothing reads afterwards). Autograd and half-precision
    x take the composite `adain`."""
    if torch.is_grad_enabled() or x.dtype not in (torch.float32, torch.float64) or x.dim() != 4:
        return F.leaky_relu(adain(x, scale, bias, eps), slope)
    fused = cpu_kernels.norm_leaky_relu(x, x.shape[1], scale, bias, gamma_add=1.0, eps=eps, slope=slope,
                                        inplace=inplace)
    if fused is not None:  # fp32 channels_last on CPU: realtalk/cpu_kernels.c, one stats + one apply pass
        return fused
    b, c, h, w = x.shape
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()

    def per_channel_mean(t: Tensor) -> Tensor:  # [B,C]: over H, W, reduced along memory order
        return t.permute(0, 2, 3, 1).reshape(b, h * w, c).mean(1) if cl else t.reshape(b, c, h * w).mean(2)

    mean = per_channel_mean(x)
    d = x - mean[:, :, None, None]
    var = per_channel_mean(d * d)
    a = (1 + scale.to(x.dtype)) * torch.rsqrt(var + eps)
    y = torch.addcmul(bias.to(x.dtype)[:, :, None, None], d, a[:, :, None, None])
    return F.leaky_relu_(y, slope)


class AdaINResBlock(nn.Module):
    """Residual block with two AdaIN norms; its 4*C modulation numbers come from the FIA's MLP."""

    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.c1 = nn.Conv2d(c, c, 3, 1, 1)
        self.c2 = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        s1, b1, s2, b2 = style.split(self.c, dim=1)
        h = self.c1(adain_leaky_relu(x, s1, b1, 0.2))
        h = self.c2(adain_leaky_relu(h, s2, b2, 0.2, inplace=True))  # h: c1's fresh output
        return h.add_(x) if not torch.is_grad_enabled() else x + h


def upsample2x_cat(x: Tensor, skip: Tensor) -> Tensor:
    """torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip], 1), bit for bit, written once: each
    input is copied straight into its channels of the output (in x's memory format), with no upsampled
    intermediate (at 256 px the upsample + cat were ~5% of the CPU renderer)."""
    b, c, h, w = x.shape
    if skip.shape[0] != b or skip.shape[2:] != (2 * h, 2 * w) or skip.dtype != x.dtype:
        return torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1)
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if cl else torch.contiguous_format
    out = torch.empty((b, c + skip.shape[1], 2 * h, 2 * w), dtype=x.dtype, device=x.device, memory_format=fmt)
    if cl:
        o = out.permute(0, 2, 3, 1)  # [B,2H,2W,C'] contiguous view
        o.view(b, h, 2, w, 2, -1)[..., :c].copy_(x.permute(0, 2, 3, 1)[:, :, None, :, None, :])
        o[..., c:].copy_(skip.permute(0, 2, 3, 1))
    else:
        out[:, :c].view(b, c, h, 2, w, 2).copy_(x[:, :, :, None, :, None])
        out[:, c:].copy_(skip)
    return out


class FIAModule(nn.Module):
    """Facial Identity Alignment module: upsample, AdaIN res-blocks driven by [alpha,beta,rho], ref attention."""

    def __init__(self, cin: int, cout: int, c_skip: int, c_ref: int | None, code_dim: int, cfg: RendererConfig,
                 upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.merge = nn.Conv2d(cin + c_skip, cout, 1)
        self.blocks = nn.ModuleList([AdaINResBlock(cout) for _ in range(cfg.fia_blocks)])
        self.mlp = nn.Sequential(  # 3-layer MLP -> all AdaIN scales/biases of this module
            nn.Linear(code_dim, cfg.mlp_hidden), nn.LeakyReLU(0.2),
            nn.Linear(cfg.mlp_hidden, cfg.mlp_hidden), nn.LeakyReLU(0.2),
            nn.Linear(cfg.mlp_hidden, 4 * cout * cfg.fia_blocks),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        # face-texture reference structure (Table 7: cross-attention, or flow / deformable alternatives)
        self.attn = build_reference_module(cfg.reference_module, cout, c_ref, cfg) if c_ref else None

    def forward(self, x: Tensor, skip: Tensor, code: Tensor, ref: Tensor | None) -> Tensor:
        merged = cpu_kernels.upsample2x_merge(x, skip, self.merge.weight, self.merge.bias) if self.upsample else None
        if merged is not None:  # fp32 channels_last CPU inference: the 1x1 merge commutes with the upsample
            x = merged
        elif self.upsample and not torch.is_grad_enabled():
            x = self.merge(upsample2x_cat(x, skip))
        else:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.merge(torch.cat([x, skip], dim=1))
        styles = self.mlp(code).chunk(len(self.blocks), dim=1)
        for blk, st in zip(self.blocks, styles):
            x = blk(x, st)
        if self.attn is not None:
            x = self.attn(x, ref)
        return x


class Renderer(nn.Module):
    """forward(source, reference, mask, alpha, beta, rho) -> (I_hat, F_d); images [B,3,H,W] in [0,1]."""

    def __init__(self, cfg: RendererConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.mask not in MASK_KINDS:
            raise ValueError(f"unknown mask {cfg.mask!r}; known: {', '.join(MASK_KINDS)}")
        self.encoder = Encoder(cfg)
        code_dim = cfg.n_id + cfg.n_exp + cfg.n_pose
        enc_c = {1: cfg.stem, **{2 ** (i + 1): c for i, c in enumerate(cfg.enc_channels)}}
        levels = [16, 8, 4, 2, 1]
        if len(cfg.dec_channels) != len(levels):
            raise ValueError("dec_channels needs one width per level 1/16..1/1")
        mods = []
        cin = enc_c[16]
        for i, (lvl, cout) in enumerate(zip(levels, cfg.dec_channels)):
            c_ref = enc_c[lvl] if lvl in cfg.attn_levels else None
            mods.append(FIAModule(cin, cout, enc_c[lvl], c_ref, code_dim, cfg, upsample=i > 0))
            cin = cout
        self.levels = levels
        self.fia = nn.ModuleList(mods)
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(cin, 3, 3, 1, 1))
        if cfg.output in ("ref_residual", "warp_residual"):  # start exactly at the (warped) reference image
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
        # [alpha, beta, rho] standardisation (rho holds pixel translations ~100): set from the training data
        self.register_buffer("code_mean", torch.zeros(code_dim))
        self.register_buffer("code_std", torch.ones(code_dim))

    @torch.no_grad()
    def set_code_stats(self, codes: Tensor) -> None:
        """Standardise the AdaIN MLP input with the mean/std of training codes [K, code_dim]."""
        self.code_mean.copy_(codes.mean(0))
        self.code_std.copy_(codes.std(0).clamp_min(1e-3))

    def region_mask(self, mask: Tensor) -> Tensor:
        """The mask this renderer generates under: the caller's 3D-prior mask (cfg.mask = "learnable", it needs
        the face model), or, for the Table 6 ablation (cfg.mask = "naive"), the fixed lower half made here, so
        every training and inference path (RAM clips, shards, the pipeline) gets it without knowing."""
        if self.cfg.mask == "learnable":
            return mask
        if self.cfg.mask == "naive":
            return naive_lower_half_mask(mask.shape[0], mask.shape[-1], mask.device).to(mask.dtype)
        raise ValueError(f"unknown mask {self.cfg.mask!r}; known: {', '.join(MASK_KINDS)}")

    REF_IMAGE = 0  # ref_feats key of the reference image itself (output="ref_residual")

    def _ref_entries(self, feats: dict[int, Tensor], reference: Tensor) -> dict[int, Tensor]:
        out = {k: v for k, v in feats.items() if k in self.cfg.attn_levels}
        if self.cfg.output in ("ref_residual", "warp_residual"):
            out[self.REF_IMAGE] = reference
        return out

    def encode_reference(self, reference: Tensor) -> dict[int, Tensor]:
        """Reference features used by the FIA attention (computed once per clip when streaming)."""
        return self._ref_entries(self.encoder(reference), reference)

    def decode(self, src_feats: dict[int, Tensor], ref_feats: dict[int, Tensor], code: Tensor,
               warped: Tensor | None = None) -> Tensor:
        x = src_feats[16]
        for lvl, mod in zip(self.levels, self.fia):
            x = mod(x, src_feats[lvl], code, ref_feats.get(lvl))
        out = self.head(x)
        if self.cfg.output == "sigmoid":
            return torch.sigmoid(out)
        if self.cfg.output in ("ref_residual", "warp_residual"):
            base = warped if (warped is not None and self.cfg.output == "warp_residual") else ref_feats[self.REF_IMAGE]
            ref = base.to(out.dtype).clamp(1e-3, 1 - 1e-3)
            return torch.sigmoid(torch.logit(ref) + out)
        return (torch.tanh(out) + 1) / 2

    def forward(self, source: Tensor, reference: Tensor | None, mask: Tensor, alpha: Tensor, beta: Tensor,
                rho: Tensor, ref_feats: dict[int, Tensor] | None = None, warped: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        mask = self.region_mask(mask)
        masked = mask * source
        b = source.shape[0]
        if ref_feats is None:  # training path: one shared-encoder pass over [masked source; reference]
            feats = self.encoder(torch.cat([masked, reference], dim=0))
            src_feats = {k: v[:b] for k, v in feats.items()}
            ref_feats = self._ref_entries({k: v[b:] for k, v in feats.items()}, reference)
        else:
            src_feats = self.encoder(masked)
            ref_feats = {k: (v.expand(b, -1, -1, -1) if v.shape[0] == 1 and b > 1 else v) for k, v in ref_feats.items()}
        code = ((torch.cat([alpha, beta, rho], dim=1) - self.code_mean) / self.code_std).to(masked.dtype)
        f_d = self.decode(src_feats, ref_feats, code, warped)
        i_hat = mask * source + (1 - mask) * f_d
        return i_hat, f_d
