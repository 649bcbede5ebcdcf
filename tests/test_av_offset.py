"""tests/benchmarks/av_offset.py (ours, a diagnostic): per-clip audio/video offset estimate of training clips (leave-one-clip-out ridge)
and the token shift that corrects it."""
from __future__ import annotations

import numpy as np

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
import av_offset as av  # noqa: E402 (a diagnostic of tests/benchmarks, not a package module)


def test_shift_tokens_moves_frames_and_repeats_edges():
    tok = np.arange(12, dtype=np.float32).reshape(12, 1)  # 6 frames x 2 tokens
    out = av.shift_tokens(tok, 2, tokens_per_frame=2)  # out[j] = tok[j + 4]
    assert out[:, 0].tolist() == [4, 5, 6, 7, 8, 9, 10, 11, 11, 11, 11, 11]
    assert av.shift_tokens(tok, -1, 2)[:, 0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert out.dtype == np.float32 and av.shift_tokens(tok, 0, 2).tolist() == tok.tolist()


def _smooth(rng, t, d):
    x = rng.standard_normal((t + 20, d))
    k = np.hanning(9)[:, None]
    return np.stack([np.convolve(x[:, i], k[:, 0], "same") for i in range(d)], 1)[10:-10]


def test_estimate_offsets_recovers_synthetic_lags():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(6)
    true = [0, 0, 0, 3, -2, 0]
    feats, opens = [], []
    for lag in true:
        x = _smooth(rng, 300, 6)
        opens.append(x @ v + 0.1 * rng.standard_normal(300))  # the mouth follows the audio frame by frame
        feats.append(av.shift_frames(x, -lag))  # audio `lag` frames late: feats[t + lag] = x[t]
    rows = av.estimate_offsets(feats, opens, k=4, lam=10.0, iterations=2)
    assert [r["lag"] for r in rows] == true
    for r, lag in zip(rows, true):
        assert r["r_best"] > 0.9 and (lag == 0 or r["r_best"] > r["r0"] + 0.2)
    # shifting each clip's features by its estimated lag restores the synchronous signal (edges aside)
    for f, r, o in zip(feats, rows, opens):
        assert av.pearson(av.shift_frames(f, r["lag"])[8:-8] @ v, o[8:-8]) > 0.95


def test_estimate_offsets_on_a_real_clip(data_root):
    """feifeili_clip2_short (a real demo train clip, 375 frames) as two halves (the first half trains the read-out
    of the second): one clip has one offset, so the halves' relative lag is about 0; the second half's audio
    made 3 frames late moves its estimated lag by exactly +3."""
    import torch

    from realtalk.audio_features import get_featurizer
    from realtalk.data import load_clip_data, split_entries
    from realtalk.face_models import get_face_model

    torch.set_num_threads(1)
    fm = get_face_model("landmark68")
    entry = next(e for e in split_entries("demo", "train") if e.clip_id == "feifeili_clip2_short")
    clip = load_clip_data(entry, data_root, fm, get_featurizer("logmel"), max_frames=375)
    f, o = av.per_frame(clip.audio, len(clip)), av.fitted_opening(fm, clip.alpha, clip.beta, clip.rho)
    assert f.shape == (375, 160) and o.shape == (375,) and np.all(np.isfinite(o)) and o.std() > 0.5
    a, b = slice(0, 187), slice(187, 375)
    base = av.estimate_offsets([f[a], f[b]], [o[a], o[b]])[1]
    late = av.estimate_offsets([f[a], av.shift_frames(f[b], -3)], [o[a], o[b]])[1]
    assert abs(base["lag"]) <= 1 and late["lag"] == base["lag"] + 3
    assert late["r_best"] > 0.15 and abs(late["r_best"] - base["r_best"]) < 0.05 and late["r0"] < late["r_best"] - 0.05
    # and the clip's tokens shifted back by the estimate are the original ones (away from the edge)
    shifted = av.shift_tokens(av.shift_tokens(clip.audio, -3, 2), 3, 2)
    assert np.array_equal(shifted[:-6], clip.audio[:-6])
