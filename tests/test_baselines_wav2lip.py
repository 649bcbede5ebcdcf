"""Wav2Lip in-process: official checkpoint layout loads strictly through the real loader, the mel front
end matches an independent librosa computation from the official hparams, the parameter count is the
official model's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.wav2lip.audio import HP, mel_windows, melspectrogram
from baselines.wav2lip.model import Wav2Lip
from harness.core.methods import MethodInput, get_method

# The official generator (Rudrabha/Wav2Lip models/wav2lip.py, 96x96): 36,298,035 trainable parameters,
# 352 state-dict entries (weights, biases, BN running stats and num_batches_tracked).
OFFICIAL_PARAMS = 36_298_035
OFFICIAL_STATE_KEYS = 352


@pytest.fixture(scope="module")
def clip(data_root: Path):
    from harness.core.media import read_audio, read_video

    v = read_video(data_root / "styletalk/video/Obama_clip1.mp4", fps=25.0, max_frames=50)
    a = read_audio(data_root / "styletalk/wav/Obama_clip1.wav", 16000, duration_s=2.0)
    return v, a


def _save_official(path: Path) -> dict[str, torch.Tensor]:
    """A randomly initialised generator saved exactly as the official training script saves it."""
    torch.manual_seed(0)
    model = Wav2Lip()
    for m in model.modules():  # non-trivial BN statistics, so eval-mode BN is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {"module." + k: v for k, v in model.state_dict().items()}  # saved from nn.DataParallel
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "optimizer": {"state": {}, "param_groups": []}, "global_step": 123}, path)
    return model.state_dict()


def test_official_checkpoint_loads_and_generates(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("REALTALK_BENCH_WEIGHTS", str(tmp_path / "weights"))
    m = get_method("wav2lip")
    ok, why = m.availability()
    assert not ok and str(tmp_path / "weights" / "wav2lip" / "wav2lip.pth") in why
    ref = _save_official(tmp_path / "weights" / "wav2lip" / "wav2lip.pth")
    m = get_method("wav2lip", batch_size=16)
    assert m.availability() == (True, "")
    assert len(m.fingerprint()) == 64
    model = m.model()  # the real loader: strict=True after stripping 'module.'
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    v, a = clip
    inp = MethodInput(clip_id="Obama_clip1", setting="reconstruction", source_video=v.path, source_frames=v.frames,
                      audio=a, n_frames=50)
    out = m.generate(inp)
    assert out.dtype == np.uint8 and out.shape == (50,) + v.frames.shape[1:]
    boxes = m.face_boxes(v.frames)
    x1, y1, x2, y2 = boxes[0]
    changed = np.any(out[0] != v.frames[0], axis=2)
    assert changed[y1:y2, x1:x2].mean() > 0.5  # the face box was replaced by the network's output
    outside = changed.copy()
    outside[y1:y2, x1:x2] = False
    assert not outside.any()  # nothing outside the box touched
    # cross-audio length: more frames than the source -> source frames cycle (official i % len(frames))
    inp2 = MethodInput(clip_id="x", setting="cross_audio", source_video=v.path, source_frames=v.frames[:20],
                       audio=a[: 30 * 640], n_frames=30)
    assert m.generate(inp2).shape == (30,) + v.frames.shape[1:]


def test_wrong_layout_fails_strict(tmp_path):
    from baselines.wav2lip.model import load_wav2lip

    state = {"module." + k: v for k, v in Wav2Lip().state_dict().items()}
    state.pop("module.output_block.1.bias")
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="output_block.1.bias"):
        load_wav2lip(tmp_path / "bad.pth")


def _reference_mel(wav: np.ndarray) -> np.ndarray:
    """Independent computation from the official hparams with librosa's own mel spectrogram."""
    import librosa
    import scipy.signal

    y = scipy.signal.lfilter([1, -0.97], [1], wav.astype(np.float64))
    mag_mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200, win_length=800,
                                             window="hann", center=True, pad_mode="constant", power=1.0,
                                             n_mels=80, fmin=55, fmax=7600, htk=False, norm="slaney")
    db = 20 * np.log10(np.maximum(1e-5, mag_mel)) - 20  # min_level_db -100 -> amplitude floor 1e-5
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4)  # symmetric, max_abs_value 4


def test_mel_matches_independent_librosa(clip):
    _, a = clip
    ours = melspectrogram(a)
    ref = _reference_mel(a)
    assert ours.shape == ref.shape == (80, 1 + len(a) // 200)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    n = 50
    win = mel_windows(a, n, 25.0)
    assert win.shape == (n, 80, 16) and win.dtype == np.float32
    for i in (0, 1, 7, 30, n - 1):  # official indexing: start = int(i * 80 / fps), last full window at the end
        s = int(i * 80 / 25)
        s = s if s + 16 <= ref.shape[1] else ref.shape[1] - 16
        np.testing.assert_allclose(win[i], ref[:, s:s + 16], atol=1e-5, rtol=0)
    assert HP.num_mels == 80 and HP.mel_step_size == 16


def test_parameter_count_is_official():
    model = Wav2Lip()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS
    assert len(model.state_dict()) == OFFICIAL_STATE_KEYS
    sd = model.state_dict()
    # a few official keys and shapes
    assert sd["face_encoder_blocks.0.0.conv_block.0.weight"].shape == (16, 6, 7, 7)
    assert sd["audio_encoder.12.conv_block.0.weight"].shape == (512, 512, 1, 1)
    assert sd["face_decoder_blocks.6.0.conv_block.0.weight"].shape == (160, 64, 3, 3)
    assert sd["output_block.0.conv_block.0.weight"].shape == (32, 80, 3, 3)
    assert sd["output_block.1.weight"].shape == (3, 32, 1, 1)
