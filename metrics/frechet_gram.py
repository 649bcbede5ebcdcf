"""The Fréchet distance of two feature sets from their Gram matrix, without any D x D matrix.

With centred features A [n1, D] and B [n2, D], S1 = A^T A / (n1 - 1) and S2 = B^T B / (n2 - 1). The nonzero
eigenvalues of S1 S2 are those of (A B^T)(A B^T)^T / ((n1 - 1)(n2 - 1)) (eig(XY) = eig(YX) with X = A^T), so
Tr sqrt(S1 S2) = nuclear norm of A B^T / sqrt((n1 - 1)(n2 - 1)): one n1 x n2 SVD. Tr S = |A|_F^2 / (n - 1).
The same quantity as pytorch-fid's sqrtm(S1 S2) trace (exact in exact arithmetic; no eigenvalue of a squared
matrix is taken, so it is at least as accurate as metrics/frechet.py's eigh), and when both sets have fewer
rows than D (every clip, most splits: 100 frames vs D = 2048) it replaces two 2048 x 2048 eigendecompositions
and two covariances (~4 s on 2 cores, far more on a loaded machine) by a 100 x 100 SVD (milliseconds).
"""
from __future__ import annotations

import numpy as np


def gram_pays(n1: int, n2: int, dim: int) -> bool:
    """The Gram form is cheaper than the D x D one while neither set has more rows than the feature dimension."""
    return max(n1, n2) <= dim


def fid_gram(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr S1 + Tr S2 - 2 Tr sqrt(S1 S2) of two [N, D] feature sets (covariances ddof=1), float64."""
    f1 = np.asarray(feats1, dtype=np.float64)
    f2 = np.asarray(feats2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"need two feature sets [N>=2, D] of the same D, got {f1.shape} and {f2.shape}")
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a, b = f1 - mu1, f2 - mu2
    d1, d2 = len(f1) - 1, len(f2) - 1
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.einsum("ij,ij->", a, a) / d1 + np.einsum("ij,ij->", b, b) / d2
                 - 2.0 * nuclear / np.sqrt(d1 * d2))
