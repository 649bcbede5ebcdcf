"""Where the code follows the paper (issue 14 item 2): time-consistent position codes, random history
outside the window (identical in training and inference), tokens_per_frame from the featurizer, and the
overlapping-window crossfade."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from realtalk.a2e import AudioToExpression
from realtalk.config import get_config


@pytest.mark.parametrize("preset", ["paper", "small"])
@pytest.mark.parametrize("tpf", [2, 3])
def test_no_two_audio_tokens_of_a_window_share_a_code(preset, tpf):
    cfg = dataclasses.replace(get_config(preset).a2e, tokens_per_frame=tpf)
    m = AudioToExpression(cfg)
    with torch.no_grad():
        codes = m.token_codes("audio", cfg.n_audio_tokens).double()
        d = torch.cdist(codes, codes)
    off = d[~torch.eye(len(d), dtype=torch.bool)]
    # distinct codes: the nearest pair still differs by far more than fp32 rounding of O(1) sinusoids
    assert off.min() > 1e-3, f"two audio tokens share a code (min distance {off.min():.2e})"
    # time-consistent: query t and audio token tpf*t (the first token of frame t) carry the same time code
    q = m.token_codes("query", cfg.T) - m.modality.weight[3]
    a = m.token_codes("audio", cfg.n_audio_tokens) - m.modality.weight[0]
    assert torch.allclose(q, a[::tpf], atol=1e-6)
    # and history / query tokens are told apart by the modality embedding
    assert not torch.allclose(m.token_codes("history", cfg.T), m.token_codes("query", cfg.T))


def test_period_must_exceed_the_window():
    cfg = dataclasses.replace(get_config("small").a2e, ppe_period=16)
    with pytest.raises(ValueError, match="ppe_period"):
        AudioToExpression(cfg)


def test_sample_history_outside_window_sorted_seeded():
    from realtalk.data import sample_history

    win = np.arange(30, 46)
    a = sample_history(100, win, 16, np.random.default_rng([0, 3]))
    b = sample_history(100, win, 16, np.random.default_rng([0, 3]))
    assert np.array_equal(a, b) and np.all(np.diff(a) > 0) and not np.isin(a, win).any()
    short = sample_history(20, np.arange(0, 16), 16, np.random.default_rng(0))  # only 4 frames outside
    assert len(short) == 16 and set(short) <= {16, 17, 18, 19}
    whole = sample_history(16, np.arange(16), 16, np.random.default_rng(0))  # nothing outside: the whole clip
    assert len(whole) == 16 and whole.min() >= 0 and whole.max() < 16
    with pytest.raises(ValueError, match="empty clip"):
        sample_history(0, np.arange(16), 16, np.random.default_rng(0))


def test_training_windows_use_featurizer_tokens_and_random_history():
    from realtalk.data import A2EWindows, ClipData

    n, tpf = 60, 3
    beta = np.arange(n, dtype=np.float32)[:, None].repeat(4, 1)  # beta row t holds t: history frames readable
    audio = np.arange(n * tpf, dtype=np.float32)[:, None].repeat(5, 1)
    clip = ClipData("c", np.zeros((n, 8, 8, 3), np.uint8), np.zeros(3, np.float32), beta,
                    np.zeros((n, 6), np.float32), audio)
    win = A2EWindows([clip], T=16, n_history=8, tokens_per_frame=tpf)
    it = win.item(0, 20, np.random.default_rng(1))
    assert np.array_equal(it["audio"][:, 0], np.arange(60, 108))  # tokens tpf*t0 .. tpf*(t0+T)
    frames = it["history"][:, 0]
    assert np.all(np.diff(frames) > 0) and not ((frames >= 20) & (frames < 36)).any()


def test_window_crossfade_weights_sum_to_one():
    from realtalk.inference import window_starts, window_weights

    T, O = 16, 4
    for n in (5, 16, 17, 40, 100):
        starts = window_starts(n, T, O)
        assert starts[-1] + T >= n and all(b - a == T - O for a, b in zip(starts, starts[1:]))
        total = np.zeros(starts[-1] + T)
        for k, s in enumerate(starts):
            total[s:s + T] += window_weights(T, O, k == 0, k == len(starts) - 1)
        assert np.allclose(total[:n], 1.0, atol=1e-12)
    with pytest.raises(ValueError):
        window_starts(40, 16, 16)


def test_featurizer_sets_tokens_per_frame():
    from types import SimpleNamespace

    cfg = get_config("small").with_featurizer(SimpleNamespace(dim=7, tokens_per_frame=3))
    assert cfg.a2e.audio_dim == 7 and cfg.a2e.tokens_per_frame == 3 and cfg.a2e.n_audio_tokens == 48
