"""Training losses of both RealTalk stages.

A2E:      MSE(beta) + 0.1 * MSE(mouth vertices), mouth vertices from the face model with the predicted vs the
          true beta and the same alpha (canonical frame, no pose).
Renderer: 1 * L1 + 1 * perceptual (VGG19) + 0.1 * adversarial + 1 * teeth-region L1.
          Adversarial: PatchGAN (pix2pix 70x70 NLayer layout) with the LSGAN objective (least squares:
          D pushes real -> 1, fake -> 0; G pushes fake -> 1) -- ours, the paper does not name the GAN loss.
          Perceptual: L1 between VGG19 relu1_2/2_2/3_4/4_4/5_4 features of ImageNet-normalised images; only when
          the torchvision file (harness.core.weights key "vgg19") is present, else off with one warning.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from harness.core import weights
from realtalk.ddp import World, sum_over_ranks


def _f(t: Tensor) -> float:
    return float(t.detach())


# ---------------------------------------------------------------------------------------------- A2E
def mouth_vertex_loss(face_model, alpha: Tensor, beta_pred: Tensor, beta_true: Tensor) -> Tensor:
    """MSE between mouth vertices of (alpha, beta_pred) and (alpha, beta_true); beta [B,T,n_exp] or [B,n_exp]."""
    if beta_pred.dim() == 3:
        b, t, e = beta_pred.shape
        alpha = alpha[:, None, :].expand(b, t, alpha.shape[-1]).reshape(b * t, -1)
        beta_pred = beta_pred.reshape(b * t, e)
        beta_true = beta_true.reshape(b * t, e)
    idx = face_model.mouth_idx
    vp = face_model.vertices(alpha, beta_pred)[:, idx]
    vt = face_model.vertices(alpha, beta_true)[:, idx]
    return F.mse_loss(vp, vt)


def a2e_loss(face_model, alpha: Tensor, beta_pred: Tensor, beta_true: Tensor, mouth_weight: float = 0.1
             ) -> tuple[Tensor, dict[str, float]]:
    exp = F.mse_loss(beta_pred, beta_true)
    if face_model is not None and mouth_weight > 0:
        mouth = mouth_vertex_loss(face_model, alpha, beta_pred, beta_true)
    else:
        mouth = beta_pred.new_zeros(())
    total = exp + mouth_weight * mouth
    return total, {"loss": _f(total), "exp_mse": _f(exp), "mouth": _f(mouth)}


# ---------------------------------------------------------------------------------------------- renderer
class VGGPerceptual(nn.Module):
    """Frozen torchvision VGG19 feature L1; `enabled` is False when the weight file is absent."""

    LAYERS = (3, 8, 17, 26, 35)  # relu1_2, relu2_2, relu3_4, relu4_4, relu5_4

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False
        self.features: nn.Module | None = None
        w = weights.REGISTRY["vgg19"]
        path = w.path()
        if not weights.available("vgg19"):
            warnings.warn(f"perceptual loss off: VGG19 weights {w.filename} not found at {path} "
                          f"(`realtalk-bench weights` / {w.fetch_command()})", stacklevel=2)
            return
        import torchvision

        net = torchvision.models.vgg19(weights=None)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.features = net.features[: self.LAYERS[-1] + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.enabled = True

    def train(self, mode: bool = True):  # VGG always stays in eval mode
        super().train(mode)
        if self.features is not None:
            self.features.eval()
        return self

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if not self.enabled:
            return x.new_zeros(())
        h = torch.cat([x, y], 0)
        h = (h - self.mean) / self.std
        loss = x.new_zeros(())
        n = x.shape[0]
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.LAYERS:
                loss = loss + F.l1_loss(h[:n], h[n:].detach())
        return loss


class PatchDiscriminator(nn.Module):
    """pix2pix NLayerDiscriminator: 4x4 convs, stride 2, InstanceNorm, a map of real/fake logits."""

    def __init__(self, channels: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, n_layers + 1):
            c_next = channels * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(c, c_next, 4, stride, 1), nn.InstanceNorm2d(c_next), nn.LeakyReLU(0.2)]
            c = c_next
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2 - 1)


def lsgan_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    return 0.5 * (((d_real - 1) ** 2).mean() + (d_fake ** 2).mean())


def lsgan_g_loss(d_fake: Tensor) -> Tensor:
    return ((d_fake - 1) ** 2).mean()


def teeth_mask(face_model, alpha: Tensor, beta: Tensor, rho: Tensor, size: int = 256) -> Tensor:
    """[B,1,size,size] float: filled convex hull of the projected mouth-interior vertices (1 inside)."""
    import cv2

    with torch.no_grad():
        verts = face_model.transform(face_model.vertices(alpha.float(), beta.float()), rho.float())
        pts = face_model.project(verts, image_size=size)[:, face_model.mouth_interior_idx].cpu().numpy()
    out = np.zeros((pts.shape[0], 1, size, size), np.float32)
    for i, p in enumerate(pts):
        p = p[np.isfinite(p).all(axis=1)]
        if len(p) < 3:
            continue
        hull = cv2.convexHull(np.round(p).astype(np.int32))
        m = np.zeros((size, size), np.uint8)
        cv2.fillPoly(m, [hull.reshape(-1, 2)], 1)
        out[i, 0] = m
    return torch.from_numpy(out).to(alpha.device)


def masked_l1(x: Tensor, y: Tensor, mask: Tensor, world: World | None = None) -> Tensor:
    """Mean |x - y| over the masked pixels of the whole batch: a ratio of sums over the batch.

    Under DDP (`world` with size W > 1) the denominator is the global batch's (all-reduced) and the local
    numerator is scaled by W: DDP averages the W ranks' gradients, so the gradient is that of
    sum(numerators) / sum(denominators) -- the single-process loss -- and the mean over ranks of the
    returned value is the single-process value (not the mean of W per-rank ratios)."""
    den = mask.sum() * x.shape[1]
    scale = 1
    if world is not None and world.distributed:
        den, scale = sum_over_ranks(world, den), world.size
    if float(den) == 0:
        return x.new_zeros(())
    num = ((x - y).abs() * mask).sum()
    return num / den if scale == 1 else num * scale / den


class RendererLoss(nn.Module):
    """Generator-side renderer loss and the discriminator update; weights 1, 1, 0.1, 1 (L1, VGG, adv, teeth)."""

    def __init__(self, w_l1: float = 1.0, w_perceptual: float = 1.0, w_adv: float = 0.1, w_teeth: float = 1.0,
                 disc_channels: int = 64, disc_layers: int = 3, perceptual: bool = True, world: World | None = None):
        super().__init__()
        self.w = dict(l1=w_l1, perceptual=w_perceptual, adv=w_adv, teeth=w_teeth)
        self.world = world  # DDP: the teeth term's ratio of sums over the GLOBAL batch (masked_l1)
        self.vgg = VGGPerceptual() if (perceptual and w_perceptual > 0) else None
        self.disc = PatchDiscriminator(disc_channels, disc_layers) if w_adv > 0 else None

    def generator_loss(self, i_hat: Tensor, target: Tensor, teeth: Tensor | None, use_adv: bool = True
                       ) -> tuple[Tensor, dict[str, float]]:
        l1 = F.l1_loss(i_hat, target)
        perc = self.vgg(i_hat, target) if (self.vgg is not None and self.vgg.enabled) else i_hat.new_zeros(())
        adv = i_hat.new_zeros(())
        if self.disc is not None and use_adv:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            adv = lsgan_g_loss(self.disc(i_hat))
            for p in self.disc.parameters():
                p.requires_grad_(True)
        tl = masked_l1(i_hat, target, teeth, self.world) if teeth is not None else i_hat.new_zeros(())
        total = self.w["l1"] * l1 + self.w["perceptual"] * perc + self.w["adv"] * adv + self.w["teeth"] * tl
        return total, {"loss": _f(total), "l1": _f(l1), "perceptual": _f(perc), "adv_g": _f(adv),
                       "teeth": _f(tl)}

    def discriminator_loss(self, i_hat: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        assert self.disc is not None
        d = lsgan_d_loss(self.disc(target), self.disc(i_hat.detach()))
        return d, {"adv_d": _f(d)}
