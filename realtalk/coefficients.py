"""Per-clip 3D face coefficients: identity alpha (one per clip), expression beta and pose rho per frame.

These are the A2E network's targets (beta) and the mask/vertex-loss inputs (alpha, rho). Fitting:
- landmark model: least squares on the ClipFaces landmarks (LandmarkFaceModel.fit): a free fit per
  frame, alpha = mean over frames, then beta and rho refitted with that alpha held fixed;
- BFM: the Deep3DFaceRecon regressor on the crops (realtalk.d3dfr), alpha = mean of its id part.
Frames without landmarks are linearly interpolated from their neighbours (held at the ends), then
beta and rho are smoothed with a Savitzky-Golay filter (window 5 frames = 0.2 s, order 2), which
removes landmark jitter but keeps mouth closures (a 2-frame closure survives at ~70 % depth).

Cached (harness.core.cache) by: the landmarks' (or crops') bytes, the video file hash and frame range when
given, the face model fingerprint, the smoothing and CODE_VERSION.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import savgol_filter

from harness.core.cache import Cache, default_cache, make_key
from harness.core.errors import NoFaceError
from realtalk.face_model import FaceModel

CODE_VERSION = "coeffs-1"


@dataclass
class Coefficients:
    alpha: np.ndarray  # [n_id] float32, per clip
    beta: np.ndarray  # [T,n_exp] float32
    rho: np.ndarray  # [T,n_pose] float32
    face_model: str  # "<name>:<fingerprint>"
    found: np.ndarray | None = field(default=None)  # [T] bool: frames fitted (others interpolated)

    def __len__(self) -> int:
        return int(self.beta.shape[0])


def interpolate_missing(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation over time of rows where valid is False (constant beyond the ends)."""
    x = np.asarray(x, np.float64)
    if valid.all():
        return x
    t = np.arange(len(x))
    out = np.empty_like(x)
    flat = x.reshape(len(x), -1)
    o = out.reshape(len(x), -1)
    for j in range(flat.shape[1]):
        o[:, j] = np.interp(t, t[valid], flat[valid, j])
    return out


def smooth_track(x: np.ndarray, window: int = 5, order: int = 2) -> np.ndarray:
    """Savitzky-Golay along time (axis 0); no-op for window <= 1 or tracks shorter than the window."""
    if window <= 1 or len(x) < window:
        return np.asarray(x)
    return savgol_filter(x, window, order, axis=0, mode="interp")


def fit_landmarks(landmarks: np.ndarray, face_model: FaceModel, smooth: int = 5) -> Coefficients:
    """Coefficients from a landmark track [T,68,2] (crop px, nan rows = no face). Uncached."""
    lm = np.asarray(landmarks, np.float32)
    valid = np.isfinite(lm).all(axis=(1, 2))
    if not valid.any():
        raise NoFaceError(f"no landmarks in any of the {len(lm)} frames")
    if not hasattr(face_model, "fit"):
        raise TypeError(f"face model {face_model.name} cannot be fitted to landmarks (use the crops path)")
    a_all, _, _ = face_model.fit(lm[valid])
    alpha = a_all.mean(0)
    _, beta_v, rho_v = face_model.fit(lm[valid], alpha=alpha)
    beta = np.zeros((len(lm), face_model.n_exp))
    rho = np.zeros((len(lm), face_model.n_pose))
    beta[valid], rho[valid] = beta_v, rho_v
    beta, rho = interpolate_missing(beta, valid), interpolate_missing(rho, valid)
    rho[:, :3] = np.unwrap(rho[:, :3], axis=0)
    beta, rho = smooth_track(beta, smooth), smooth_track(rho, smooth)
    return Coefficients(alpha=alpha.astype(np.float32), beta=beta.astype(np.float32), rho=rho.astype(np.float32),
                        face_model=f"{face_model.name}:{face_model.fingerprint()}", found=valid)


def fit_crops_bfm(crops: np.ndarray, face_model: FaceModel, smooth: int = 5, batch: int = 16) -> Coefficients:
    """BFM coefficients from 256 crops with the Deep3DFaceRecon regressor. Uncached."""
    from realtalk.d3dfr import load_regressor

    coeffs = load_regressor().predict(crops, batch=batch)  # dict of [T,k]
    alpha = coeffs["id"].mean(0)
    beta = smooth_track(coeffs["exp"], smooth)
    rho = smooth_track(np.concatenate([coeffs["angle"], coeffs["trans"]], 1), smooth)
    return Coefficients(alpha=alpha.astype(np.float32), beta=beta.astype(np.float32), rho=rho.astype(np.float32),
                        face_model=f"{face_model.name}:{face_model.fingerprint()}",
                        found=np.ones(len(crops), bool))


def clip_coefficients(clip_faces: Any, face_model: FaceModel | None = None, cache: Cache | bool | None = True,
                      video_path: str | os.PathLike | None = None, frame_range: tuple[int, int] | None = None,
                      smooth: int = 5) -> Coefficients:
    """Smoothed, cached coefficients of a harness.core.faces ClipFaces (landmark model by default).

    video_path / frame_range only make the cache key more specific (the key always covers the
    landmarks' bytes, so a different clip can never hit a stale entry)."""
    if face_model is None:
        from realtalk.face_models import load_default_face_model

        face_model = load_default_face_model()
    use_landmarks = hasattr(face_model, "fit")
    data = np.ascontiguousarray(clip_faces.landmarks if use_landmarks else clip_faces.crops)
    store = default_cache() if cache is True else (cache or None)
    name = f"{face_model.name}:{face_model.fingerprint()}"

    def compute() -> dict[str, np.ndarray]:
        c = (fit_landmarks(data, face_model, smooth) if use_landmarks else fit_crops_bfm(data, face_model, smooth))
        return {"alpha": c.alpha, "beta": c.beta, "rho": c.rho, "found": c.found}

    if store is None:
        arrays = compute()
    else:
        key = make_key("coeffs", CODE_VERSION, inputs=[video_path] if video_path else [],
                       face_model=name, data=hashlib.sha256(data.tobytes()).hexdigest(),
                       shape=list(data.shape), frame_range=list(frame_range) if frame_range else None, smooth=smooth)
        arrays = store.arrays(key, compute)
    return Coefficients(alpha=arrays["alpha"], beta=arrays["beta"], rho=arrays["rho"], face_model=name,
                        found=arrays["found"].astype(bool))
