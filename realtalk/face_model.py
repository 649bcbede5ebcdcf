"""The 3D face prior's interface: a linear morphable model V(alpha, beta) posed by rho and projected
into the 256 crop. The A2E network, the mouth-vertex/teeth losses and the lower-face mask all go
through this one interface, so the BFM (Deep3DFaceRecon) and the offline landmark model are
interchangeable.

Conventions (both implementations):
- vertices(alpha [B,n_id], beta [B,n_exp]) -> [B,V,3] in the model's canonical frame;
- transform(verts, rho [B,n_pose]) -> [B,V,3] camera-frame points;
- project(verts_cam, image_size) -> [B,V,2] pixel (x right, y down) in an image_size crop;
- mouth_idx (mouth-vertex loss), mouth_interior_idx (teeth loss), contour_idx (ordered polygon for
  the mask: cheek -> jaw -> chin -> jaw -> cheek, closed under the nose) and jaw_idx (the part of
  the contour that mask.py extrudes down into the neck).
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import torch


class FaceModel(ABC):
    """A linear 3D face model; everything is torch and differentiable in alpha, beta and rho."""

    name: str = "face_model"
    n_id: int
    n_exp: int
    n_pose: int
    n_vertices: int
    mouth_idx: torch.LongTensor
    mouth_interior_idx: torch.LongTensor
    contour_idx: torch.LongTensor
    jaw_idx: torch.LongTensor

    @abstractmethod
    def vertices(self, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """[B,V,3] canonical-frame shape for identity alpha [B,n_id] and expression beta [B,n_exp]."""

    @abstractmethod
    def transform(self, verts: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        """[B,V,3] camera-frame points for pose rho [B,n_pose]."""

    @abstractmethod
    def project(self, verts_cam: torch.Tensor, image_size: int = 256) -> torch.Tensor:
        """[B,V,2] pixel coordinates (x right, y down) in an image_size x image_size crop."""

    def landmarks2d(self, alpha: torch.Tensor, beta: torch.Tensor, rho: torch.Tensor,
                    image_size: int = 256) -> torch.Tensor:
        """Convenience: project(transform(vertices(alpha, beta), rho)) -> [B,V,2]."""
        return self.project(self.transform(self.vertices(alpha, beta), rho), image_size)

    @abstractmethod
    def fingerprint(self) -> str:
        """Short hash of the model's arrays: part of every cache key that depends on the model."""

    def to(self, device: torch.device | str) -> "FaceModel":
        """Move every tensor attribute to device (returns self)."""
        for k, v in list(vars(self).items()):
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device))
        return self


def tensor_fingerprint(*arrays: torch.Tensor) -> str:
    """sha256 prefix over the bytes of float32/int64 tensors (order matters)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """[B,3] radians (x pitch, y yaw, z roll) -> [B,3,3] R = Rz @ Ry @ Rx (column vectors: v' = R v).

    Same angle convention as Deep3DFaceRecon's compute_rotation (which returns R^T for row vectors)."""
    x, y, z = angles[:, 0], angles[:, 1], angles[:, 2]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = torch.cos(x), torch.sin(x), torch.cos(y), torch.sin(y), torch.cos(z), torch.sin(z)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return rz @ ry @ rx


def rotation_to_euler(r) -> "np.ndarray":  # noqa: F821 - numpy in the annotation only
    """Inverse of euler_rotation for numpy [...,3,3] (R = Rz Ry Rx) -> [...,3] (x, y, z) radians."""
    import numpy as np

    r = np.asarray(r, dtype=np.float64)
    y = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
    x = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    z = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([x, y, z], -1)


def as_batch(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Accept [dim] or [B,dim]; return float [B,dim]."""
    t = torch.as_tensor(t, dtype=torch.float32) if not isinstance(t, torch.Tensor) else t
    return t.unsqueeze(0) if t.dim() == 1 else t
