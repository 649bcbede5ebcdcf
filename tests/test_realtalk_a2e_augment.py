"""The A2E's training-time audio augmentation (ours, realtalk.train.audio_augmentation): off unless asked,
the gain term is what a real gain does to real log-mel tokens, the mask and noise do what they say."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from realtalk.audio_features import LOGMEL_MEAN, LOGMEL_STD, get_featurizer, logmel_gain_shift
from realtalk.config import get_config
from realtalk.train import audio_augmentation


def _cfg(**aug):
    cfg = get_config("small")
    return dataclasses.replace(cfg, a2e=dataclasses.replace(cfg.a2e, **aug))


def test_off_by_default_and_logmel_only():
    for name in ("paper", "small"):
        assert audio_augmentation(get_config(name), "logmel") is None
    with pytest.raises(ValueError, match="log-mel"):
        audio_augmentation(_cfg(aug_noise=0.1), "hubert")


def test_gain_shift_is_a_real_gain_on_real_speech(data_root):
    from harness.core.media import read_audio

    audio = read_audio(data_root / "styletalk" / "wav" / "Obama_clip1.wav", 16000, start_s=2.0, duration_s=2.0)
    feat = get_featurizer("logmel")
    db = 6.0
    x, y = feat.features(audio), feat.features(audio * np.float32(10 ** (db / 20)))
    # where both powers are well above the 1e-5 floor (ln 1e-5 = -11.5) the shift is exact up to the float32
    # STFT: relative power error ~ 1e3 * 2^-24 (n_fft-term sums) -> ln error ~ 1e-4, /LOGMEL_STD, x10 margin
    live = (x * LOGMEL_STD + LOGMEL_MEAN > np.log(1e-5) + 3.0)
    assert live.mean() > 0.3, "the segment is speech: many bins are above the floor"  # (44% here: the rest, near
    # the floor, is where the shift only approximates a gain; said in logmel_gain_shift)
    err = np.abs((y - x) - logmel_gain_shift(db))[live]
    assert err.max() < 1e-3 / LOGMEL_STD * 10, err.max()


def test_mask_and_noise_do_what_they_say():
    torch.manual_seed(0)
    x = torch.full((64, 32, 80), 3.0)
    masked = audio_augmentation(_cfg(aug_freq_mask=10), "logmel")(x)
    zero = (masked == 0).all(1)  # [B, bins]: a bin is masked in every token of its window, or in none
    assert ((masked == 0) | (masked == 3.0)).all()
    widths = zero.sum(1)
    assert widths.max() <= 10 and widths.min() >= 0 and widths.float().mean() > 2
    for row in zero:  # adjacent bins
        idx = torch.nonzero(row).flatten()
        assert len(idx) == 0 or (idx[-1] - idx[0] + 1) == len(idx)
    noisy = audio_augmentation(_cfg(aug_noise=0.5), "logmel")(x) - 3.0
    # the sample std of n = 163840 normals is within 5 / sqrt(2n) (relative) of the true one
    assert abs(float(noisy.std()) / 0.5 - 1) < 5 / np.sqrt(2 * noisy.numel())
    gained = audio_augmentation(_cfg(aug_gain_db=6.0), "logmel")(x) - 3.0
    per_window = gained[:, 0, 0]
    assert torch.allclose(gained, per_window[:, None, None].expand_as(gained))  # one gain per window
    assert per_window.abs().max() <= logmel_gain_shift(6.0) + 1e-6 and per_window.std() > 0
    assert torch.equal(x, torch.full((64, 32, 80), 3.0)), "the batch itself is not modified"
