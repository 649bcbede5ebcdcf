"""The 3D-prior lower-face mask (RealTalk's "learnable" facial-region mask) and the naive lower-half ablation.

`region_mask(kind, ...)` picks one by RendererConfig.mask (Table 6), in training and inference alike.

M = 1 keeps the source pixel (upper face, background); M = 0 is the region the renderer generates.
The region is the face model's contour (cheek -> jaw -> chin -> jaw -> cheek, closed under the nose),
posed with the identity alpha, the (predicted) expression beta and the pose rho, projected into the
crop, pushed outward by `dilate` (so an opening jaw still lies inside) and extruded down into the neck
by `neck` (the jaw chain translated along the face's down direction). Lengths are fractions of the
nose-bottom -> chin distance, so the mask scales with the face. The contour never rises above the
nose bottom, so the eyes always stay source pixels.

masked source = M * I_s; output = M * I_s + (1 - M) * F_d. Rasterised with cv2.fillPoly per item (the
mask is not differentiable; its inputs are the A2E's predictions, used as a guide).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from realtalk.face_model import FaceModel, as_batch


def mask_polygons(face_model: FaceModel, alpha: torch.Tensor, beta: torch.Tensor, rho: torch.Tensor,
                  size: int = 256, neck: float = 0.9, dilate: float = 0.12) -> list[list[np.ndarray]]:
    """Per batch item, the polygons (float px [K,2]) whose union is the generated region."""
    with torch.no_grad():
        beta = as_batch(beta, face_model.n_exp)
        rho = as_batch(rho, face_model.n_pose)
        alpha = as_batch(alpha, face_model.n_id)
        b = max(beta.shape[0], rho.shape[0], alpha.shape[0])
        alpha, beta, rho = (x.expand(b, -1) if x.shape[0] == 1 else x for x in (alpha, beta, rho))
        pts = face_model.landmarks2d(alpha, beta, rho, size).detach().cpu().double().numpy()
    contour_idx = face_model.contour_idx.cpu().numpy()
    jaw_idx = face_model.jaw_idx.cpu().numpy()
    top_idx = np.setdiff1d(contour_idx, jaw_idx)
    out = []
    for p in pts:
        contour, jaw = p[contour_idx], p[jaw_idx]
        top = p[top_idx].mean(0) if len(top_idx) else contour.mean(0)
        chin = jaw[len(jaw) // 2]
        down = chin - top
        length = max(float(np.linalg.norm(down)), 1e-6)
        down = down / length
        centre = contour.mean(0)

        def push(q: np.ndarray) -> np.ndarray:
            d = q - centre
            n = np.linalg.norm(d, axis=-1, keepdims=True)
            return q + dilate * length * d / np.maximum(n, 1e-6)

        contour_d = push(contour)
        jaw_d = push(jaw)
        neck_chain = jaw_d + neck * length * down
        out.append([contour_d, np.concatenate([jaw_d, neck_chain[::-1]], 0)])
    return out


def lower_face_mask(face_model: FaceModel, alpha: torch.Tensor, beta: torch.Tensor, rho: torch.Tensor,
                    size: int = 256, neck: float = 0.9, dilate: float = 0.12) -> torch.Tensor:
    """[B,1,size,size] float32 on beta's device: 1 = keep source, 0 = generate (lower face + neck).

    alpha may be [n_id] (one clip) or [B,n_id]; beta [B,n_exp]; rho [B,n_pose]."""
    device = beta.device if isinstance(beta, torch.Tensor) else torch.device("cpu")
    polys = mask_polygons(face_model, alpha, beta, rho, size, neck, dilate)
    masks = np.ones((len(polys), 1, size, size), np.float32)
    shift = 4  # sub-pixel vertex precision for fillPoly
    for i, group in enumerate(polys):
        canvas = np.zeros((size, size), np.uint8)
        cv2.fillPoly(canvas, [np.round(g * (1 << shift)).astype(np.int32) for g in group], 1,
                     lineType=cv2.LINE_8, shift=shift)
        masks[i, 0] -= canvas
    return torch.from_numpy(masks).to(device)


def naive_lower_half_mask(batch: int, size: int = 256, device: torch.device | str = "cpu") -> torch.Tensor:
    """Table 6 ablation: generate the whole lower half (rows >= size/2), keep the upper half."""
    m = torch.ones(batch, 1, size, size, device=device)
    m[:, :, size // 2:, :] = 0.0
    return m


MASK_KINDS = ("learnable", "naive")  # RendererConfig.mask; Table 6 of the paper


def region_mask(kind: str, face_model: FaceModel, alpha: torch.Tensor, beta: torch.Tensor, rho: torch.Tensor,
                size: int = 256) -> torch.Tensor:
    """The renderer's region mask of a config (RendererConfig.mask), [B,1,size,size] on beta's device:
    "learnable" = the 3D-prior lower-face mask of the given expression (the paper's), "naive" = the fixed
    lower half (Table 6 ablation), the same for every frame whatever the face does."""
    if kind == "learnable":
        return lower_face_mask(face_model, alpha, beta, rho, size=size)
    if kind == "naive":
        beta = as_batch(beta, face_model.n_exp)
        device = beta.device if isinstance(beta, torch.Tensor) else torch.device("cpu")
        return naive_lower_half_mask(beta.shape[0], size, device)
    raise ValueError(f"unknown mask {kind!r}; known: {', '.join(MASK_KINDS)}")


def apply_mask(source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """masked source M * I_s (source [B,C,H,W], mask [B,1,H,W])."""
    return source * mask


def compose(source: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """M * I_s + (1 - M) * F_d."""
    return mask * source + (1.0 - mask) * generated
