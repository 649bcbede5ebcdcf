"""Audio tokens: exactly 2 per 25-fps frame, log-mel (real speech) and HuBERT (tiny random model saved
in the transformers format and loaded through the real code path)."""
from __future__ import annotations

import numpy as np
import pytest

from realtalk.audio_features import get_featurizer


def test_logmel_real_speech(data_root) -> None:
    from harness.core.media import read_audio

    audio = read_audio(data_root / "styletalk/wav/Obama_clip3.wav", 16000, duration_s=4.0)
    f = get_featurizer("logmel")
    x = f.features(audio)
    assert x.shape == (200, 80) and f.dim == 80 and f.tokens_per_frame == 2
    assert np.isfinite(x).all() and abs(float(x.mean())) < 1.0 and 0.5 < float(x.std()) < 2.0
    # exactly 2 tokens per frame for any length: T = 16 -> l = 32; odd sample counts round
    assert f.features(audio[: 16 * 640]).shape == (32, 80)
    assert f.features(audio[: 16 * 640 + 100]).shape == (32, 80)
    assert f.features(audio[:1000], n_frames=16).shape == (32, 80)
    # fixed normalisation: a window's tokens match the whole file's (up to the edge frames)
    part = f.features(audio[640 * 40: 640 * 56])
    np.testing.assert_allclose(part[2:-2], x[82:110], atol=1e-3)


def test_hubert_tiny_random_model(tmp_path, monkeypatch) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    transformers.HubertModel(cfg).save_pretrained(tmp_path / "hubert-large-ls960-ft")
    monkeypatch.setenv("REALTALK_BENCH_WEIGHTS", str(tmp_path))
    f = get_featurizer("hubert")
    audio = np.random.default_rng(0).normal(0, 0.1, 16 * 640 + 37).astype(np.float32)
    x = f.features(audio)
    assert f.dim == 32 and x.shape == (32, 32) and np.isfinite(x).all()
    assert f.features(audio, n_frames=10).shape == (20, 32)


def test_unknown_featurizer() -> None:
    with pytest.raises(ValueError):
        get_featurizer("mfcc")
