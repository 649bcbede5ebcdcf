"""Per-clip audio/video offset of TRAINING clips, estimated and corrected before A2E training (ours; a
diagnostic: measured in session 10 NOT to raise the A2E's linear bound, so it is not wired into training; see
README "The RealTalk demo checkpoint" and tests/benchmarks/av_offset_bounds.py).

Why: the demo's clips come from different sources (styletalk ships its speech as separate wav files, the
video-retalking clips carry an embedded AAC track), and the frame lag that best aligns a clip's mouth with its
audio differs per clip. An A2E trained on clips with different audio/video offsets learns a mapping smeared
over those offsets. Standard dataset practice (Wav2Lip / LRS2 SyncNet offsets, HDTF preprocessing) corrects
each training clip's offset before training; this module does the same with no extra model: a
leave-one-clip-out ridge regression from audio-token context to the clip's fitted mouth opening, trained on
the OTHER clips, predicts the clip's opening; the clip's offset is the lag in [-max_lag, max_lag] frames that
maximises r(prediction[t + lag], opening[t]) (lag > 0: the clip's audio is late, its mouth at t shows the sound
at t + lag). `shift_tokens` then moves the clip's audio tokens by that lag (edge tokens repeated).

Only training clips are estimated and shifted: held-out clips are never altered (that would change a
benchmark's ground truth). The offsets are relative to the training clips' common alignment (the ridge's
zero), not to an absolute sync; `center=True` subtracts their median so the shifted set keeps the set's own
typical offset (what unshifted held-out clips are expected to have).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

MAX_LAG = 6  # frames (0.24 s at 25 fps)
CONTEXT = 8  # +-frames of token context of the ridge read-out
RIDGE = 1e4


def per_frame(tokens: np.ndarray, n_frames: int) -> np.ndarray:
    """[tpf*T, A] audio tokens -> [T, tpf*A] (a frame's tokens side by side)."""
    t = np.asarray(tokens, np.float64)
    return t[: len(t) // n_frames * n_frames].reshape(n_frames, -1)


def context(x: np.ndarray, k: int) -> np.ndarray:
    """[T, D] -> [T, (2k+1) D]: each frame with its k neighbours on both sides (edge padded)."""
    pad = np.pad(x, ((k, k), (0, 0)), mode="edge")
    return np.concatenate([pad[i:i + len(x)] for i in range(2 * k + 1)], 1)


def shift_frames(x: np.ndarray, lag: int) -> np.ndarray:
    """out[t] = x[t + lag] along axis 0, edge rows repeated where t + lag falls outside."""
    x = np.asarray(x)
    idx = np.clip(np.arange(len(x)) + int(lag), 0, len(x) - 1)
    return x[idx]


def shift_tokens(tokens: np.ndarray, lag: int, tokens_per_frame: int = 2) -> np.ndarray:
    """Audio tokens [tpf*T, A] moved by `lag` FRAMES (out[j] = tokens[j + tpf*lag], edge token repeated), so that
    a clip whose audio is `lag` frames late (estimate_offsets) lines up with its video."""
    return shift_frames(tokens, int(lag) * int(tokens_per_frame)).astype(np.asarray(tokens).dtype, copy=False)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    a, b = x - x.mean(), y - y.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def lagged_r(pred: np.ndarray, ref: np.ndarray, lag: int) -> float:
    """r of pred[t + lag] vs ref[t] over the overlapping frames."""
    if lag >= 0:
        return pearson(pred[lag:], ref[:len(ref) - lag])
    return pearson(pred[:lag], ref[-lag:])


def fit_ridge(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], lam: float = RIDGE):
    """Ridge regression of per-clip z-scored targets on standardised inputs; returns predict(x)."""
    x = np.concatenate(xs)
    y = np.concatenate([(v - v.mean()) / (v.std() + 1e-9) for v in ys])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xn = (x - mu) / sd
    w = np.linalg.solve(xn.T @ xn + lam * np.eye(xn.shape[1]), xn.T @ y)
    return lambda z: ((z - mu) / sd) @ w


def best_lag(pred: np.ndarray, ref: np.ndarray, max_lag: int = MAX_LAG) -> tuple[int, float, float]:
    """(lag in [-max_lag, max_lag] maximising lagged_r, r at lag 0, r at that lag)."""
    rs = {k: lagged_r(pred, ref, k) for k in range(-max_lag, max_lag + 1)}
    lag = max(rs, key=lambda k: -np.inf if not np.isfinite(rs[k]) else (rs[k], -abs(k)))
    return lag, rs[0], rs[lag]


def estimate_offsets(feats: Sequence[np.ndarray], openings: Sequence[np.ndarray], max_lag: int = MAX_LAG,
                     k: int = CONTEXT, lam: float = RIDGE, iterations: int = 1, center: bool = False
                     ) -> list[dict[str, float]]:
    """Per clip {"lag", "r0", "r_best"}: leave-one-clip-out ridge (per-frame features [T, D] with +-k frames of
    context -> z-scored mouth opening [T]) trained on the other clips, the lag maximising r(pred shifted,
    opening). iterations > 1: re-estimate with the other clips shifted by their previous lags. center:
    subtract the median lag (rounded) from every lag."""
    feats = [np.asarray(f, np.float64) for f in feats]
    openings = [np.asarray(o, np.float64) for o in openings]
    if len(feats) < 2:
        raise ValueError("estimate_offsets needs at least two clips (leave-one-clip-out)")
    lags = [0] * len(feats)
    rows: list[dict[str, float]] = []
    for _ in range(max(1, iterations)):
        ctx = [context(shift_frames(f, lg), k) for f, lg in zip(feats, lags)]
        rows = []
        for i in range(len(feats)):
            others = [j for j in range(len(feats)) if j != i]
            f = fit_ridge([ctx[j] for j in others], [openings[j] for j in others], lam)
            lag, r0, rb = best_lag(f(context(feats[i], k)), openings[i], max_lag)
            rows.append({"lag": int(lag), "r0": r0, "r_best": rb})
        lags = [r["lag"] for r in rows]
    if center:
        med = int(np.round(np.median(lags)))
        for r in rows:
            r["lag"] = int(r["lag"] - med)
    return rows


def fitted_opening(face_model: Any, alpha: np.ndarray, beta: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """[T] inner-lip gap (px at 256) of the face model's landmarks for the fitted (alpha, beta [T], rho [T])."""
    import torch

    from metrics.mouth_corr import mouth_opening

    b = torch.from_numpy(np.asarray(beta, np.float32))
    a = torch.from_numpy(np.asarray(alpha, np.float32)).reshape(1, -1).expand(len(b), -1)
    with torch.no_grad():
        lm = face_model.landmarks2d(a, b, torch.from_numpy(np.asarray(rho, np.float32)), 256)
    return mouth_opening(lm.cpu().numpy())


def clip_offsets(clips: Sequence[Any], face_model: Any, **kw: Any) -> list[dict[str, float]]:
    """estimate_offsets over ClipData (realtalk.data): their audio tokens and fitted mouth openings."""
    feats = [per_frame(c.audio, len(c)) for c in clips]
    opens = [fitted_opening(face_model, c.alpha, c.beta, c.rho) for c in clips]
    return estimate_offsets(feats, opens, **kw)


def apply_offsets(clips: Sequence[Any], lags: Sequence[int], tokens_per_frame: int = 2) -> None:
    """Shift each ClipData's audio tokens in place by its lag (frames)."""
    for c, lag in zip(clips, lags):
        c.audio = shift_tokens(c.audio, int(lag), tokens_per_frame)
