"""Landmark-driven warp prior (ours, not in the paper): move the reference frame's pixels so that its face
model landmarks land on the target expression's landmarks.

The small CPU config's renderer edits this warped reference (RendererConfig.output = "warp_residual")
instead of the reference itself: with minutes of CPU training a renderer that starts at the reference
keeps the reference's mouth (measured: the demo model's mouth opening did not follow the ground truth),
while the warp opens and closes the lips as the predicted expression says before any training, and the
learned residual only has to fix texture (teeth, mouth interior, shading).

Backward warp: output pixel p samples the reference at p + d(p), with d a normalised Gaussian-kernel
(Nadaraya-Watson) interpolation of the landmark displacements (reference point - target point) around the
TARGET points: d(p) = sum_k g_k(p) (r_k - t_k) / (sum_k g_k(p) + eps), g_k = exp(-|p - t_k|^2 / 2 sigma^2).
eps lets d fall to 0 far from every landmark. Differentiable in the image (grid_sample, bilinear, border).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SIGMA_FRAC = 0.016  # kernel width as a fraction of the crop side: 4 px at 256 (measured: 4 px lets dlib see the warped opening, 15 vs 16 px; 12 px only 8)
EPS = 1e-3


CUT = 40.0  # kernel factors exp(-z) with z > CUT (e^-40 = 4e-18) are set to 0 (see landmark_flow)


def _gauss(dist: Tensor, sigma: float) -> Tensor:
    """exp(-dist^2 / 2 sigma^2), 0 where the exponent is below -CUT (no subnormal products downstream)."""
    z = dist ** 2 / (2 * sigma * sigma)
    return torch.exp(-z).masked_fill(z > CUT, 0.0)


def landmark_flow(ref_pts: Tensor, tgt_pts: Tensor, size: int, sigma: float | None = None) -> Tensor:
    """Sampling grid [B,H,W,2] (grid_sample's normalised x,y, align_corners=False) from points [B,K,2] px."""
    sigma = float(sigma if sigma is not None else SIGMA_FRAC * size)
    c = torch.arange(size, dtype=torch.float32, device=ref_pts.device) + 0.5  # pixel centres along x and y
    t = tgt_pts.float()
    # g_k(x,y) = exp(-(x-tx_k)^2/2s^2) exp(-(y-ty_k)^2/2s^2) is separable: the sums over k are [B,H,K] @ [B,K,W]
    # products, so the [B,HW,K] kernel (65536 x 68 exps per frame at 256 px, most of the renderer stage's CPU
    # time) is never formed; same maths, fp32 rounding differs (tests/test_realtalk_warp.py)
    # factors below exp(-CUT) are set to 0: their products would be subnormal floats, which make the x86 GEMM
    # ~20x slower (measured: 1.5 ms vs 0.07 ms per [256,68] x [68,256] bmm); d moves by < 68 e^-CUT |disp| / EPS
    gx = _gauss(c[None, :, None] - t[:, None, :, 0], sigma).transpose(1, 2)  # [B,K,W]
    gy = _gauss(c[None, :, None] - t[:, None, :, 1], sigma)  # [B,H,K]
    disp = (ref_pts.float() - t)  # [B,K,2]
    den = torch.bmm(gy, gx)[..., None] + EPS  # [B,H,W,1]
    d = torch.stack([torch.bmm(gy * disp[:, None, :, i], gx) for i in range(2)], -1) / den
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    q = torch.stack([xs, ys], -1)[None] + d  # where each output pixel samples the reference, px
    return q / size * 2 - 1


def warp_image(image: Tensor, grid: Tensor) -> Tensor:
    """image [B,C,H,W] sampled at grid [B,H,W,2] (bilinear, border padding)."""
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def warp_reference(face_model, reference: Tensor, alpha: Tensor, ref_beta: Tensor, ref_rho: Tensor,
                   beta: Tensor, rho: Tensor) -> Tensor:
    """The reference [B|1,3,H,W] warped from its own expression/pose to (beta, rho) [B,...] (same identity)."""
    size = reference.shape[-1]
    b = beta.shape[0]
    with torch.no_grad():
        a = alpha.expand(b, -1) if alpha.shape[0] == 1 else alpha
        rb = ref_beta.expand(b, -1) if ref_beta.shape[0] == 1 else ref_beta
        rr = ref_rho.expand(b, -1) if ref_rho.shape[0] == 1 else ref_rho
        src = face_model.landmarks2d(a, rb, rr, size)
        dst = face_model.landmarks2d(a, beta, rho, size)
        grid = landmark_flow(src, dst, size)
    ref = reference.expand(b, -1, -1, -1) if reference.shape[0] == 1 and b > 1 else reference
    return warp_image(ref, grid)
