"""Wav2Lip's mel front end, reproduced from the official hparams so the official checkpoints see the
features they were trained on.

Official settings (Rudrabha/Wav2Lip hparams.py / audio.py): 16 kHz, pre-emphasis 0.97, STFT n_fft 800,
hop 200 (12.5 ms, 80 mel frames per second), window 800 (hann, librosa centre padding), 80 slaney mel
bands over 55-7600 Hz applied to the magnitude, 20*log10 with a -100 dB floor, minus ref_level_db 20,
then mapped symmetrically onto [-4, 4] and clipped. One video frame sees a window of 16 mel frames
(0.2 s) starting at int(i * 80 / fps) (the official `mel_idx_multiplier` indexing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MelParams:
    """The official Wav2Lip audio hyper-parameters (only the ones its melspectrogram uses)."""

    sample_rate: int = 16000
    preemphasis: float = 0.97
    n_fft: int = 800
    hop_size: int = 200
    win_size: int = 800
    num_mels: int = 80
    fmin: float = 55.0
    fmax: float = 7600.0
    min_level_db: float = -100.0
    ref_level_db: float = 20.0
    max_abs_value: float = 4.0
    mel_step_size: int = 16  # mel frames per video-frame window


HP = MelParams()
_MEL_BASIS: dict[MelParams, np.ndarray] = {}


def mel_basis(hp: MelParams = HP) -> np.ndarray:
    """[num_mels, n_fft//2+1] slaney-normalised mel filters (librosa's default, as the official code uses)."""
    if hp not in _MEL_BASIS:
        import librosa

        _MEL_BASIS[hp] = librosa.filters.mel(sr=hp.sample_rate, n_fft=hp.n_fft, n_mels=hp.num_mels,
                                             fmin=hp.fmin, fmax=hp.fmax)
    return _MEL_BASIS[hp]


def melspectrogram(wav: np.ndarray, hp: MelParams = HP) -> np.ndarray:
    """Normalised log-mel [num_mels, 1 + len(wav)//hop] of a mono float waveform at hp.sample_rate."""
    import librosa
    from scipy.signal import lfilter

    wav = np.asarray(wav, dtype=np.float64)
    emphasised = lfilter([1.0, -hp.preemphasis], [1.0], wav)
    spec = np.abs(librosa.stft(y=emphasised, n_fft=hp.n_fft, hop_length=hp.hop_size, win_length=hp.win_size))
    mel = np.dot(mel_basis(hp), spec)
    floor = np.exp(hp.min_level_db / 20.0 * np.log(10.0))
    db = 20.0 * np.log10(np.maximum(floor, mel)) - hp.ref_level_db
    scaled = (2.0 * hp.max_abs_value) * ((db - hp.min_level_db) / (-hp.min_level_db)) - hp.max_abs_value
    return np.clip(scaled, -hp.max_abs_value, hp.max_abs_value)


def window_starts(n_frames: int, n_mel: int, fps: float = 25.0, hp: MelParams = HP) -> np.ndarray:
    """Start column of each video frame's mel window: int(i * 80 / fps) (80 = sample_rate / hop_size mel
    frames per second), clamped to the last full window where the official loop takes mel[:, -16:]."""
    mel_per_s = hp.sample_rate / hp.hop_size
    starts = np.array([int(i * (mel_per_s / fps)) for i in range(n_frames)], dtype=np.int64)
    last = max(0, n_mel - hp.mel_step_size)
    return np.where(starts + hp.mel_step_size > n_mel, last, starts)


def mel_windows(wav: np.ndarray, n_frames: int, fps: float = 25.0, hp: MelParams = HP) -> np.ndarray:
    """[n_frames, num_mels, mel_step_size] float32: one official 16-frame mel window per video frame.

    The official loop stops at the first window that overruns the mel (so it can return fewer windows
    than frames); here every frame gets a window, the overrunning ones the last full window, exactly what
    the official loop appends for the first overrun.
    """
    mel = melspectrogram(wav, hp)
    if mel.shape[1] < hp.mel_step_size:  # under 0.2 s of audio: pad with silence (the floor value)
        mel = np.pad(mel, ((0, 0), (0, hp.mel_step_size - mel.shape[1])), constant_values=-hp.max_abs_value)
    starts = window_starts(n_frames, mel.shape[1], fps, hp)
    return np.stack([mel[:, s:s + hp.mel_step_size] for s in starts]).astype(np.float32)
