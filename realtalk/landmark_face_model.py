"""Offline default face model: a linear 3D morphable model over the 68 iBUG landmarks, learned from real
landmark tracks (no BFM licence needed).

Why landmarks: RealTalk needs the 3D prior for (1) a per-frame expression code the A2E network can
predict from audio, (2) mouth vertices for the vertex loss and (3) a lower-face contour for the mask.
All three only need the sparse geometry of jaw and lips, which dlib's 68 points capture.

Build (`build_landmark_face_model`):
1. Rigid shape and per-frame rotation by Tomasi-Kanade factorization of the centred 2D tracks of all
   training frames (rank-3 SVD + metric upgrade for scaled orthography); the 3D mean is then
   symmetrised (mirror pairs of the iBUG layout) and normalised to unit RMS radius.
2. Per-frame pose (rotation, scale, translation) by orthographic Procrustes against the mean.
3. The non-rigid residual (in the canonical frame, x-y only: depth of a deformation is not observable
   from near-frontal 2D tracks) splits into an identity part (per-clip mean residual; PCA -> id basis)
   and an expression part (within-clip residual; PCA -> exp basis, so exp 0 is the dominant mouth
   opening mode; sign fixed so +beta0 opens the mouth). Bases are scaled by their component std, so
   coefficients are ~unit variance.

Pose rho (n_pose = 6): pitch, yaw, roll (radians, R = Rz Ry Rx), tx, ty (crop px at 256), log scale.
Camera: scaled orthographic, p = s * (R v)[:2] + t, in 256-crop px; project() rescales to image_size.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realtalk.face_model import FaceModel, as_batch, euler_rotation, rotation_to_euler, tensor_fingerprint

ASSET = Path(__file__).resolve().parent / "assets" / "landmark_face_model.npz"
REF_SIZE = 256  # crop size the pose translation/scale are expressed in
FORMAT_VERSION = 1

# iBUG 68 mirror pairs (left <-> right) for symmetrising the mean face.
_MIRROR = (
    list(range(16, -1, -1))  # jaw 0..16
    + list(range(26, 16, -1))  # brows 17..26
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose bottom 31..35
    + [45, 44, 43, 42, 47, 46]  # eye 36..41 -> 42..47
    + [39, 38, 37, 36, 41, 40]  # eye 42..47 -> 36..41
    + [54, 53, 52, 51, 50, 49, 48]  # outer lip 48..54
    + [59, 58, 57, 56, 55]  # outer lip 55..59
    + [64, 63, 62, 61, 60]  # inner lip 60..64
    + [67, 66, 65]  # inner lip 65..67
)
MOUTH_IDX = list(range(48, 68))
MOUTH_INTERIOR_IDX = list(range(60, 68))
JAW_IDX = list(range(2, 15))  # cheek at nose-bottom height -> chin -> other cheek
CONTOUR_IDX = JAW_IDX + [35, 34, 33, 32, 31]  # closed under the nose: never reaches the eyes


class LandmarkFaceModel(FaceModel):
    """68-vertex linear model: V = mean + id_basis . alpha + exp_basis . beta (torch, differentiable)."""

    name = "landmark68"
    n_pose = 6

    def __init__(self, mean: np.ndarray, id_basis: np.ndarray, exp_basis: np.ndarray,
                 metadata: dict | None = None):
        self.mean = torch.as_tensor(np.asarray(mean, np.float32))  # [68,3]
        self.id_basis = torch.as_tensor(np.asarray(id_basis, np.float32))  # [n_id,68,3]
        self.exp_basis = torch.as_tensor(np.asarray(exp_basis, np.float32))  # [n_exp,68,3]
        self.n_id = int(self.id_basis.shape[0])
        self.n_exp = int(self.exp_basis.shape[0])
        self.n_vertices = int(self.mean.shape[0])
        self.metadata = dict(metadata or {})
        self.mouth_idx = torch.tensor(MOUTH_IDX, dtype=torch.long)
        self.mouth_interior_idx = torch.tensor(MOUTH_INTERIOR_IDX, dtype=torch.long)
        self.contour_idx = torch.tensor(CONTOUR_IDX, dtype=torch.long)
        self.jaw_idx = torch.tensor(JAW_IDX, dtype=torch.long)

    # --- FaceModel --------------------------------------------------------------------------------
    def vertices(self, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        alpha, beta = as_batch(alpha, self.n_id), as_batch(beta, self.n_exp)
        b = max(alpha.shape[0], beta.shape[0])
        shape = (self.mean.unsqueeze(0)
                 + torch.einsum("bi,ivc->bvc", alpha.to(self.mean), self.id_basis)
                 + torch.einsum("be,evc->bvc", beta.to(self.mean), self.exp_basis))
        return shape.expand(b, -1, -1)

    def transform(self, verts: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        rho = as_batch(rho, self.n_pose).to(verts)
        r = euler_rotation(rho[:, :3])
        s = torch.exp(rho[:, 5]).view(-1, 1, 1)
        t = torch.stack([rho[:, 3], rho[:, 4], torch.zeros_like(rho[:, 3])], -1).unsqueeze(1)
        return s * verts @ r.transpose(1, 2) + t

    def project(self, verts_cam: torch.Tensor, image_size: int = 256) -> torch.Tensor:
        return verts_cam[..., :2] * (float(image_size) / REF_SIZE)

    def fingerprint(self) -> str:
        return tensor_fingerprint(self.mean, self.id_basis, self.exp_basis)

    # --- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, mean=self.mean.numpy(), id_basis=self.id_basis.numpy(),
                            exp_basis=self.exp_basis.numpy(),
                            metadata=np.array(json.dumps(self.metadata, sort_keys=True)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LandmarkFaceModel":
        from harness.core.errors import WeightsMissingError

        path = Path(path)
        if not path.exists():
            raise WeightsMissingError("landmark face model not found", path,
                                      hint="build it: realtalk-bench face-model build --split demo")
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"])) if "metadata" in z.files else {}
            return cls(z["mean"], z["id_basis"], z["exp_basis"], meta)

    @classmethod
    def load_default(cls) -> "LandmarkFaceModel":
        return cls.load(ASSET)

    # --- fitting ----------------------------------------------------------------------------------
    def fit(self, landmarks: np.ndarray, alpha: np.ndarray | None = None, iters: int = 4,
            ridge_id: float = 1e-2, ridge_exp: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Least-squares fit to 2D landmarks [T,68,2] (256-crop px; rows must be finite).

        Returns per-frame alpha [T,n_id], beta [T,n_exp], rho [T,6]. With alpha given ([n_id]) only
        beta and the pose are solved (the per-clip identity is held fixed)."""
        lm = np.asarray(landmarks, np.float64)
        t_n = lm.shape[0]
        mean = self.mean.numpy().astype(np.float64)
        idb = self.id_basis.numpy().astype(np.float64)
        exb = self.exp_basis.numpy().astype(np.float64)
        a = np.zeros((t_n, self.n_id)) if alpha is None else np.broadcast_to(alpha, (t_n, self.n_id)).astype(np.float64)
        b = np.zeros((t_n, self.n_exp))
        for _ in range(iters):
            shape = mean[None] + np.einsum("ti,ivc->tvc", a, idb) + np.einsum("te,evc->tvc", b, exb)
            rot, scale, trans = _ortho_procrustes(shape, lm)
            # linear solve for coefficients given pose: lm - t = s * P R (mean + B c)
            pr = rot[:, :2, :]  # [T,2,3]
            target = (lm - trans[:, None, :]) / scale[:, None, None] - np.einsum("tij,vj->tvi", pr, mean)
            bases = exb if alpha is not None else np.concatenate([idb, exb], 0)
            design = np.einsum("tij,kvj->tvik", pr, bases).reshape(t_n, -1, bases.shape[0])  # [T,136,K]
            rhs = target.reshape(t_n, -1)
            if alpha is not None:
                rhs = rhs - np.einsum("tij,kvj,tk->tvi", pr, idb, a).reshape(t_n, -1)
                reg = np.full(self.n_exp, ridge_exp)
            else:
                reg = np.concatenate([np.full(self.n_id, ridge_id), np.full(self.n_exp, ridge_exp)])
            ata = np.einsum("tnk,tnl->tkl", design, design) + np.diag(reg)[None]
            atb = np.einsum("tnk,tn->tk", design, rhs)
            coef = np.linalg.solve(ata, atb[..., None])[..., 0]
            if alpha is None:
                a, b = coef[:, : self.n_id], coef[:, self.n_id:]
            else:
                b = coef
        shape = mean[None] + np.einsum("ti,ivc->tvc", a, idb) + np.einsum("te,evc->tvc", b, exb)
        rot, scale, trans = _ortho_procrustes(shape, lm)
        rho = np.concatenate([rotation_to_euler(rot), trans, np.log(scale)[:, None]], 1)
        return a.astype(np.float32), b.astype(np.float32), rho.astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# geometry helpers (numpy, batched over frames)
# ---------------------------------------------------------------------------------------------------
def _ortho_procrustes(shape: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled-orthographic pose of 3D shapes [T,V,3] to 2D points [T,V,2]: R [T,3,3], s [T], t [T,2].

    Affine 2x3 camera by least squares, then its rows are projected to the nearest scaled
    orthonormal pair (SVD), and the third row is their cross product."""
    sc = shape - shape.mean(1, keepdims=True)
    lc = lm - lm.mean(1, keepdims=True)
    # M [T,2,3] = lc^T sc (sc^T sc)^-1
    sts = np.einsum("tvi,tvj->tij", sc, sc)
    lts = np.einsum("tvi,tvj->tij", lc, sc)
    m = lts @ np.linalg.inv(sts)
    u, sv, vt = np.linalg.svd(m, full_matrices=False)  # m = u diag(sv) vt, u [T,2,2], vt [T,2,3]
    rows = u @ vt  # nearest matrix with orthonormal rows
    scale = sv.mean(-1)
    r3 = np.cross(rows[:, 0], rows[:, 1])
    rot = np.concatenate([rows, r3[:, None, :]], 1)
    # refine scale for the orthonormal rows (least squares)
    proj = np.einsum("tij,tvj->tvi", rows, sc)
    scale = np.einsum("tvi,tvi->t", proj, lc) / np.maximum(np.einsum("tvi,tvi->t", proj, proj), 1e-12)
    trans = lm.mean(1) - scale[:, None] * np.einsum("tij,tj->ti", rows, shape.mean(1))
    return rot, scale, trans


def _metric_upgrade(motion: np.ndarray) -> np.ndarray:
    """Q [3,3] such that motion @ Q has scaled-orthonormal row pairs (Tomasi-Kanade, scaled orthography)."""
    m1, m2 = motion[0::2], motion[1::2]

    def coeffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a^T L b for symmetric L, 6 unknowns
        return np.stack([a[:, 0] * b[:, 0], a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0], a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
                         a[:, 1] * b[:, 1], a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1], a[:, 2] * b[:, 2]], 1)

    rows = np.concatenate([coeffs(m1, m1) - coeffs(m2, m2), coeffs(m1, m2)], 0)
    norm_row = coeffs(m1, m1).mean(0, keepdims=True) + coeffs(m2, m2).mean(0, keepdims=True)
    a_mat = np.concatenate([rows, 100.0 * norm_row], 0)
    rhs = np.concatenate([np.zeros(rows.shape[0]), [200.0]])
    lv = np.linalg.lstsq(a_mat, rhs, rcond=None)[0]
    l_mat = np.array([[lv[0], lv[1], lv[2]], [lv[1], lv[3], lv[4]], [lv[2], lv[4], lv[5]]])
    w, v = np.linalg.eigh(l_mat)
    w = np.maximum(w, 1e-3 * w.max())
    return v @ np.diag(np.sqrt(w))


def _normalize_tracks(lm: np.ndarray) -> np.ndarray:
    """Centre each frame and divide by the track's median RMS radius (scale changes between clips)."""
    c = lm - lm.mean(1, keepdims=True)
    rms = np.sqrt((c ** 2).sum(-1).mean(-1))
    return c / np.median(rms)


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k principal directions of rows of x (already centred) and their std."""
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    std = s / np.sqrt(max(x.shape[0] - 1, 1))
    k = min(k, vt.shape[0])
    return vt[:k], std[:k]


@dataclass
class BuildReport:
    n_clips: int
    n_frames: int
    explained_exp: list[float]
    explained_id: list[float]


def build_landmark_face_model(tracks: dict[str, np.ndarray], n_id: int = 8, n_exp: int = 12,
                              metadata: dict | None = None) -> tuple[LandmarkFaceModel, BuildReport]:
    """Learn the model from landmark tracks {clip_id: [T,68,2]} (frames with nan are dropped)."""
    clean = {k: v[np.isfinite(v).all((1, 2))].astype(np.float64) for k, v in tracks.items()}
    clean = {k: _normalize_tracks(v) for k, v in clean.items() if len(v) >= 10}
    if not clean:
        raise ValueError("no landmark track with at least 10 detected frames")
    names = sorted(clean)
    all_lm = np.concatenate([clean[k] for k in names], 0)  # [F,68,2]
    f_n = all_lm.shape[0]

    # 1. Tomasi-Kanade: W [2F,68] = M [2F,3] S [3,68]
    w = all_lm.transpose(0, 2, 1).reshape(2 * f_n, 68)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    motion = u[:, :3] * np.sqrt(s[:3])
    shape = (vt[:3].T * np.sqrt(s[:3])).T  # [3,68]
    q = _metric_upgrade(motion)
    mean = (np.linalg.inv(q) @ shape).T  # [68,3]
    # canonical orientation: align to the average frame (x right, y down as in the image), z by right-hand rule
    rot, _, _ = _ortho_procrustes(np.broadcast_to(mean, (f_n, 68, 3)), all_lm)
    r_avg = _nearest_rotation(rot.mean(0))
    mean = mean @ r_avg.T
    # depth sign (reflection ambiguity of the factorization): right-handed camera frame with x right,
    # y down, so the nose tip (30) is nearer the camera than the jaw ends: smaller z
    if mean[30, 2] > mean[[0, 16], 2].mean():
        mean[:, 2] *= -1
    mean = _symmetrize(mean)
    mean -= mean.mean(0)
    mean /= np.sqrt((mean ** 2).sum(-1).mean())

    # 2. per-frame pose against the mean, 3. residuals in the canonical frame (x-y only)
    per_clip_res = {}
    for k in names:
        lm = clean[k]
        r, sc, t = _ortho_procrustes(np.broadcast_to(mean, (len(lm), 68, 3)), lm)
        back = (lm - t[:, None]) / sc[:, None, None]  # = (R v)[:2] observed
        r2 = r[:, :2, :2]
        inv = np.linalg.inv(r2)
        # residual of observed minus projected mean, brought back through the 2x2 in-plane part
        pred = np.einsum("tij,vj->tvi", r[:, :2, :], mean)
        per_clip_res[k] = np.einsum("tij,tvj->tvi", inv, back - pred)  # [T,68,2]
    clip_means = np.stack([per_clip_res[k].mean(0) for k in names])  # [C,68,2]
    n_id = max(1, min(n_id, len(names) - 1))
    id_dirs, id_std = _pca((clip_means - clip_means.mean(0)).reshape(len(names), -1), n_id)
    within = np.concatenate([per_clip_res[k] - per_clip_res[k].mean(0) for k in names], 0).reshape(f_n, -1)
    exp_dirs, exp_std = _pca(within, n_exp)
    # fold the average identity residual into the mean
    mean[:, :2] += clip_means.mean(0)

    def to3d(dirs: np.ndarray, std: np.ndarray) -> np.ndarray:
        b = np.zeros((len(dirs), 68, 3))
        b[:, :, :2] = (dirs * std[:, None]).reshape(len(dirs), 68, 2)
        return b

    exp_basis = to3d(exp_dirs, exp_std)
    id_basis = to3d(id_dirs, id_std)
    # sign: +beta0 opens the mouth (inner lip 66 moves down relative to 62)
    for i in range(len(exp_basis)):
        if exp_basis[i, 66, 1] - exp_basis[i, 62, 1] < 0 and i == 0:
            exp_basis[i] *= -1
    total_exp = (within ** 2).sum() / max(f_n - 1, 1)
    total_id = ((clip_means - clip_means.mean(0)) ** 2).sum() / max(len(names) - 1, 1)
    report = BuildReport(
        n_clips=len(names), n_frames=int(f_n),
        explained_exp=[float(v) for v in (exp_std ** 2 / total_exp)],
        explained_id=[float(v) for v in (id_std ** 2 / max(total_id, 1e-12))],
    )
    meta = dict(metadata or {})
    meta.update({"format_version": FORMAT_VERSION, "n_clips": report.n_clips, "n_frames": report.n_frames,
                 "clips": names, "n_id": len(id_basis), "n_exp": len(exp_basis),
                 "explained_exp": report.explained_exp[:5],
                 "method": "Tomasi-Kanade mean + Procrustes pose + PCA id (per-clip means) / exp (within-clip)"})
    return LandmarkFaceModel(mean, id_basis, exp_basis, meta), report


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def _symmetrize(mean: np.ndarray) -> np.ndarray:
    """Average the shape with its left-right mirror (x -> -x about the midline, pairs swapped)."""
    c = mean - mean.mean(0)
    # the mirror plane is x = 0 only after centring on the midline points
    mid = c[[27, 28, 29, 30, 33, 51, 57, 8]].mean(0)
    c = c - np.array([mid[0], 0, 0])
    mirrored = c[_MIRROR] * np.array([-1.0, 1.0, 1.0])
    return 0.5 * (c + mirrored)
