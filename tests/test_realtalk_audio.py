"""Audio tokens: exactly 2 per 25-fps frame, log-mel (real speech) and HuBERT (tiny random model saved
in the transformers format and loaded through the real code path) and PocketSphinx phones (its real bundled
model on real speech)."""
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


# ---- "phones" / "phones+logmel": PocketSphinx's bundled US-English model (realtalk/phone_features.py) ----

@pytest.fixture(scope="module")
def andrew_4s(data_root):
    from harness.core.media import read_audio

    pytest.importorskip("pocketsphinx")
    return read_audio(data_root / "styletalk/wav/andrew_clip_2.wav", 16000, duration_s=4.0)


def test_phones_real_speech_known_phone(andrew_4s) -> None:
    """andrew_clip_2 opens with "what are the challenges": the words are recognised, aligned, and the tokens
    inside the aligned CH of "challenges" (about 0.77-0.98 s) are one-hot CH."""
    from realtalk.phone_features import PHONE_INDEX, PHONES

    f = get_featurizer("phones")
    x = f.features(andrew_4s)
    assert x.shape == (200, len(PHONES) + 1) == (200, f.dim) and f.tokens_per_frame == 2
    assert f.last_method == "align" and f.methods_used == {"align": 1}
    assert np.array_equal(x[:, :-1].sum(1), np.ones(200)) and ((x[:, -1] > 0) & (x[:, -1] < 1)).all()
    seg = f.recognizer.segments(andrew_4s)
    assert "challenges" in seg.words.split(), seg.words
    ch = [(s, e) for p, s, e in seg.phones if p == "CH"]
    assert ch and 70 <= ch[0][0] <= 85 and 90 <= ch[0][1] <= 105, seg.phones  # 10-ms frames
    # token i reads frame 2i - 1: tokens well inside the segment (a boundary may move a frame between CPUs)
    inside = range((ch[0][0] + 1) // 2 + 1, (ch[0][1] + 1) // 2 - 1)
    assert len(inside) >= 5 and all(x[i, PHONE_INDEX["CH"]] == 1 for i in inside)
    f.features(andrew_4s[64000 - 25600:])  # another utterance in between: no state carried over
    np.testing.assert_array_equal(f.features(andrew_4s), x)  # deterministic (fresh decoders per utterance)
    assert f.features(andrew_4s[:1000], n_frames=16).shape == (32, f.dim)  # too short: all SIL, exact length
    assert f.features(andrew_4s[: 16 * 640 + 100]).shape == (32, f.dim)


def test_phones_logmel_is_the_concatenation(andrew_4s) -> None:
    a = andrew_4s[: 50 * 640]
    both = get_featurizer("phones+logmel")
    np.testing.assert_array_equal(both.features(a), np.concatenate(
        [get_featurizer("phones").features(a), get_featurizer("logmel").features(a)], 1))
    assert both.dim == 121 and both.describe()["name"] == "phones+logmel"


def test_phones_fallback_is_recorded(andrew_4s, monkeypatch) -> None:
    """When the forced aligner fails, the phone-loop recogniser gives the phones and says so."""
    f = get_featurizer("phones")
    real = f.recognizer._decoder

    class Failing:
        def __init__(self, d):
            self.d = d

        def __getattr__(self, name):
            return getattr(self.d, name)

        def set_alignment(self, *a):
            raise RuntimeError("Failed to stop utterance processing")

    monkeypatch.setattr(f.recognizer, "_decoder", lambda mode: Failing(real(mode)) if mode == "words" else real(mode))
    x = f.features(andrew_4s)
    assert f.last_method == "allphone" and f.methods_used == {"allphone": 1} and x.shape == (200, f.dim)
    assert (x[:, 1:-1].sum(0) > 0).sum() >= 10  # real phones recognised, not silence


def test_phones_model_pinned(tmp_path, monkeypatch) -> None:
    """A changed model file is a one-line WeightsMissingError naming it, never a silent use."""
    import dataclasses

    from harness.core import weights
    from harness.core.errors import WeightsMissingError
    from realtalk.phone_features import model_dir

    pytest.importorskip("pocketsphinx")
    src = model_dir()
    dst = tmp_path / "en-us"
    for q in sorted(src.rglob("*")):
        if q.is_file():
            (dst / q.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dst / q.relative_to(src)).symlink_to(q)
    (dst / "en-us" / "noisedict").unlink()
    (dst / "en-us" / "noisedict").write_text((src / "en-us" / "noisedict").read_text() + "[COUGH] +NSN+\n")
    w = weights.REGISTRY["pocketsphinx_en_us"]
    monkeypatch.setitem(weights.REGISTRY, "pocketsphinx_en_us", dataclasses.replace(w, locate=lambda: dst))
    monkeypatch.delenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", raising=False)
    with pytest.raises(WeightsMissingError, match="en-us .*sha256") as e:
        get_featurizer("phones")
    first = str(e.value).splitlines()[0]  # the error's line: the folder and the problem (then its hint line)
    assert str(dst) in first and "expected 97f534d2cc87" in first, str(e.value)
