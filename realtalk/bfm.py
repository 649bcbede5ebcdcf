"""The BFM 2009 front face as Deep3DFaceRecon_pytorch uses it (the paper's 3D prior), behind FaceModel.

BFM_model_front.mat (weights key "bfm_front"): meanshape [3N,1], idBase [3N,80], exBase [3N,64],
meantex [3N,1], texBase [3N,80], point_buf [N,8], tri [F,3] (1-based), keypoints [68,1] (1-based
vertex ids of the iBUG 68 landmarks). Only meanshape / idBase / exBase / keypoints (and tri when
present) are needed here; the loader reads N from the file (size-agnostic).

Camera (Deep3DFaceRecon): the recentred shape is rotated (R = Rz Ry Rx from 3 angles) and translated,
then z_cam = camera_distance (10) - z, and a pinhole with focal 1015 and centre 112 at 224 px images
the face; here both scale with image_size (focal 1015*s/224, centre s/2), and v is flipped to point
down (row = s - 1 - v, as Deep3DFaceRecon flips its landmarks). rho = [pitch, yaw, roll, tx, ty, tz].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.path import Path as MplPath

from realtalk.face_model import FaceModel, as_batch, euler_rotation, tensor_fingerprint
from realtalk.landmark_face_model import CONTOUR_IDX, JAW_IDX

FOCAL = 1015.0
CENTER = 112.0
REF_SIZE = 224
CAMERA_DISTANCE = 10.0
# Deep3DFaceRecon's 257-coefficient layout
COEFF_LAYOUT = {"id": (0, 80), "exp": (80, 144), "tex": (144, 224), "angle": (224, 227),
                "gamma": (227, 254), "trans": (254, 257)}


def split_coeffs(coeffs: np.ndarray | torch.Tensor) -> dict:
    """[B,257] -> {'id','exp','tex','angle','gamma','trans'} slices (Deep3DFaceRecon order)."""
    return {k: coeffs[:, a:b] for k, (a, b) in COEFF_LAYOUT.items()}


class BFMFaceModel(FaceModel):
    name = "bfm"
    n_pose = 6

    def __init__(self, mat: dict, recenter: bool = True):
        mean = np.asarray(mat["meanshape"], np.float32).reshape(-1, 3)
        if recenter:
            mean = mean - mean.mean(0, keepdims=True)
        id_base = np.asarray(mat["idBase"], np.float32)
        exp_base = np.asarray(mat["exBase"], np.float32)
        n = mean.shape[0]
        if id_base.shape[0] != 3 * n or exp_base.shape[0] != 3 * n:
            raise ValueError(f"BFM bases have {id_base.shape[0]}/{exp_base.shape[0]} rows, expected 3*{n}")
        self.mean = torch.from_numpy(mean)  # [N,3]
        self.id_base = torch.from_numpy(id_base.reshape(n, 3, -1))  # [N,3,n_id]
        self.exp_base = torch.from_numpy(exp_base.reshape(n, 3, -1))
        self.n_id, self.n_exp, self.n_vertices = id_base.shape[1], exp_base.shape[1], n
        self.keypoints = torch.from_numpy(np.squeeze(np.asarray(mat["keypoints"])).astype(np.int64) - 1)
        self.faces = (torch.from_numpy(np.asarray(mat["tri"]).astype(np.int64) - 1) if "tri" in mat else None)
        kp = self.keypoints
        self.jaw_idx = kp[JAW_IDX].clone()
        self.contour_idx = kp[CONTOUR_IDX].clone()
        self.mouth_idx, self.mouth_interior_idx = _mouth_regions(mean, kp.numpy())

    @classmethod
    def from_mat(cls, path: str | Path, recenter: bool = True) -> "BFMFaceModel":
        from scipy.io import loadmat

        from harness.core.errors import WeightsMissingError

        try:
            mat = loadmat(str(path))
        except (OSError, ValueError) as exc:
            raise WeightsMissingError(f"cannot read BFM .mat: {exc}", path) from exc
        missing = [k for k in ("meanshape", "idBase", "exBase", "keypoints") if k not in mat]
        if missing:
            raise WeightsMissingError(f"BFM .mat lacks keys {missing}", path)
        return cls(mat, recenter)

    @classmethod
    def from_weights(cls) -> "BFMFaceModel":
        from harness.core.weights import require

        return cls.from_mat(require("bfm_front"))

    def vertices(self, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        alpha, beta = as_batch(alpha, self.n_id).to(self.mean), as_batch(beta, self.n_exp).to(self.mean)
        shape = (self.mean.unsqueeze(0) + torch.einsum("vci,bi->bvc", self.id_base, alpha)
                 + torch.einsum("vce,be->bvc", self.exp_base, beta))
        return shape

    def transform(self, verts: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        rho = as_batch(rho, self.n_pose).to(verts)
        r = euler_rotation(rho[:, :3])
        v = verts @ r.transpose(1, 2) + rho[:, None, 3:6]
        return torch.cat([v[..., :2], CAMERA_DISTANCE - v[..., 2:]], -1)

    def project(self, verts_cam: torch.Tensor, image_size: int = 256) -> torch.Tensor:
        s = float(image_size) / REF_SIZE
        f, c = FOCAL * s, CENTER * s
        z = verts_cam[..., 2:].clamp_min(1e-6)
        u = f * verts_cam[..., :1] / z + c
        v = f * verts_cam[..., 1:2] / z + c
        return torch.cat([u, (image_size - 1) - v], -1)

    def fingerprint(self) -> str:
        return tensor_fingerprint(self.mean, self.id_base, self.exp_base, self.keypoints)


def _mouth_regions(mean: np.ndarray, kp: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mouth vertices: inside the outer-lip polygon (48-59) grown by 15 %, on the front of the face;
    interior: inside the inner-lip polygon (60-67). Both in the canonical x-y plane."""
    xy = mean[:, :2]

    def inside(idx: list[int], grow: float) -> np.ndarray:
        poly = xy[kp[idx]]
        c = poly.mean(0)
        poly = c + (poly - c) * (1.0 + grow)
        return MplPath(poly).contains_points(xy)

    front = mean[:, 2] >= mean[kp[48:68], 2].min() - 0.5 * np.ptp(mean[kp[48:68], 2]) - 1e-6
    mouth = np.flatnonzero(inside(list(range(48, 60)), 0.15) & front)
    interior = np.flatnonzero(inside(list(range(60, 68)), 0.0) & front)
    if len(mouth) == 0:
        mouth = kp[48:68]
    if len(interior) == 0:
        interior = kp[60:68]
    return torch.as_tensor(mouth, dtype=torch.long), torch.as_tensor(interior, dtype=torch.long)
