"""Audio tokens for the A2E network: exactly 2 tokens per 25-fps video frame (50 Hz), so a window of
T = 16 frames is l = 32 tokens.

- "logmel" (offline default): 80-bin log-mel at 16 kHz, hop 320 (20 ms), window 800 (50 ms) in an
  n_fft 1024 frame, Hann, fmin 55 / fmax 7600 Hz, centred frames. Token i covers [i*320, i*320+800)
  around time i*20 ms, so frame t owns tokens 2t, 2t+1. Value: ln(max(mel power, 1e-5)), then a FIXED
  global normalisation (x - LOGMEL_MEAN) / LOGMEL_STD (constants measured on the demo train speech),
  not per-utterance: a streaming (real-time) window gives the same tokens as the whole file.
- "hubert": transformers HubertModel from the local folder of weights key "hubert"
  (facebook/hubert-large-ls960-ft), input zero-mean/unit-variance per utterance as its feature
  extractor does, last hidden state (50 Hz, 1024-d), linearly interpolated to exactly 2T tokens.
- "phones": English phones from PocketSphinx's bundled pretrained US-English model (realtalk/phone_features.py:
  word recognition + phone forced alignment, phone-loop fallback; pinned as weights key "pocketsphinx_en_us"),
  41-d per token: one-hot of 40 classes (SIL + 39 CMU phones) + position within the phone in (0, 1).
  Token i reads the 10-ms PocketSphinx frame centred nearest i*20 ms. Whole-utterance (not streaming).
- "phones+logmel": [phones | logmel] concatenated per token (121-d): what the phones miss (prosody,
  loudness) stays available. Both read the audio once per clip; tokens_per_frame 2 like "logmel".

T = round(len(audio) / 640): the audio is zero-padded / trimmed to T*640 samples first.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
FPS = 25.0
SAMPLES_PER_FRAME = 640
HOP = 320
WIN = 800
N_FFT = 1024
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
LOGMEL_MEAN = -7.44  # ln mel power over the demo train speech (5 styletalk wavs): global constants
LOGMEL_STD = 3.45


def logmel_gain_shift(gain_db: float | np.ndarray) -> float | np.ndarray:
    """What a gain of gain_db dB does to a (normalised) "logmel" token: every mel power times 10^(gain_db/10),
    so ln(power) + gain_db ln(10)/10, divided by LOGMEL_STD: exact wherever the power is above the 1e-5 floor,
    an approximation in the bins at it (measured: about half the bins of 2 s of real speech are within 3 nats).
    The A2E's training-time gain augmentation (realtalk.train.audio_augmentation) is this shift."""
    return gain_db * (np.log(10.0) / 10.0) / LOGMEL_STD


def n_video_frames(n_samples: int) -> int:
    """Number of 25-fps frames an audio of n_samples at 16 kHz covers (rounded)."""
    return int(round(n_samples / SAMPLES_PER_FRAME))


def fit_length(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Trim / zero-pad to n_frames * 640 samples."""
    need = n_frames * SAMPLES_PER_FRAME
    a = np.asarray(audio, np.float32).reshape(-1)
    return a[:need] if len(a) >= need else np.pad(a, (0, need - len(a)))


class AudioFeaturizer(ABC):
    name: str
    dim: int
    tokens_per_frame: int = 2

    @abstractmethod
    def features(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        """[2*T, dim] float32 for 16 kHz float32 mono audio (T = n_frames or round(len/640))."""

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "tokens_per_frame": self.tokens_per_frame}


class LogMelFeaturizer(AudioFeaturizer):
    name = "logmel"
    dim = N_MELS

    def __init__(self) -> None:
        import librosa

        self._mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)

    def features(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        import librosa

        t_n = n_video_frames(len(audio)) if n_frames is None else int(n_frames)
        a = fit_length(audio, t_n)
        if t_n == 0:
            return np.zeros((0, self.dim), np.float32)
        spec = np.abs(librosa.stft(a, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window="hann",
                                   center=True, pad_mode="constant")) ** 2  # [513, 2T+1]
        mel = np.log(np.maximum(self._mel @ spec, 1e-5))[:, : 2 * t_n].T
        return ((mel - LOGMEL_MEAN) / LOGMEL_STD).astype(np.float32)


class HubertFeaturizer(AudioFeaturizer):
    name = "hubert"

    def __init__(self, path: str | Path | None = None, device: str = "cpu", layer: int = -1) -> None:
        import torch
        from transformers import HubertModel

        from harness.core.weights import require

        folder = Path(path) if path is not None else require("hubert")
        self.model = HubertModel.from_pretrained(str(folder), local_files_only=True).eval().to(device)
        self.device = device
        self.layer = layer
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def features(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        torch = self._torch
        t_n = n_video_frames(len(audio)) if n_frames is None else int(n_frames)
        if t_n == 0:
            return np.zeros((0, self.dim), np.float32)
        a = fit_length(audio, t_n)
        a = (a - a.mean()) / np.sqrt(a.var() + 1e-7)
        with torch.no_grad():
            x = torch.from_numpy(a).to(self.device)[None]
            if self.layer == -1:
                h = self.model(x).last_hidden_state
            else:
                h = self.model(x, output_hidden_states=True).hidden_states[self.layer]
            h = h.transpose(1, 2)  # [1,dim,~50 Hz]
            h = torch.nn.functional.interpolate(h, size=2 * t_n, mode="linear", align_corners=False)
        return h[0].T.cpu().numpy().astype(np.float32)


class PhoneFeaturizer(AudioFeaturizer):
    """PocketSphinx phones per token (see the module docstring); `last_method` / `methods_used` record how
    each call's phones were found ('align' or the 'allphone' fallback), so a fallback is never silent."""

    name = "phones"
    cache_version = "2"  # bump when the decoding changes (2: fresh decoders per utterance) (part of the token cache key, realtalk/data.py)

    def __init__(self, folder: str | Path | None = None) -> None:
        from realtalk.phone_features import PHONE_TOKEN_DIM, PhoneRecognizer

        self.recognizer = PhoneRecognizer(folder)
        self.dim = PHONE_TOKEN_DIM
        self.last_method = ""
        self.methods_used: dict[str, int] = {}

    def features(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        from realtalk.phone_features import phone_tokens

        t_n = n_video_frames(len(audio)) if n_frames is None else int(n_frames)
        if t_n == 0:
            return np.zeros((0, self.dim), np.float32)
        seg = self.recognizer.segments(fit_length(audio, t_n))
        self.last_method = seg.method
        self.methods_used[seg.method] = self.methods_used.get(seg.method, 0) + 1
        return phone_tokens(seg, self.tokens_per_frame * t_n, 1.0 / (FPS * self.tokens_per_frame))


class PhonesLogMelFeaturizer(AudioFeaturizer):
    """[phones | logmel] per token."""

    name = "phones+logmel"
    cache_version = PhoneFeaturizer.cache_version

    def __init__(self, folder: str | Path | None = None) -> None:
        self.phones, self.logmel = PhoneFeaturizer(folder), LogMelFeaturizer()
        self.dim = self.phones.dim + self.logmel.dim

    def features(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        return np.concatenate([self.phones.features(audio, n_frames), self.logmel.features(audio, n_frames)], 1)


FEATURIZERS = ("logmel", "hubert", "phones", "phones+logmel")


def featurizer_dim(name: str) -> int | None:
    """Token width of a featurizer known without building it (no decoder or network loaded); None for
    'hubert' (its width is the weights' hidden size). Lets training refuse a config built for other tokens."""
    from realtalk.phone_features import PHONE_TOKEN_DIM

    return {"logmel": N_MELS, "phones": PHONE_TOKEN_DIM, "phones+logmel": PHONE_TOKEN_DIM + N_MELS}.get(name)


def get_featurizer(name: str = "logmel", **kwargs) -> AudioFeaturizer:
    """'logmel' (offline default), 'hubert' (needs the weights 'hubert'; kwargs: path, device, layer),
    'phones' / 'phones+logmel' (PocketSphinx, weights 'pocketsphinx_en_us'; kwargs: folder)."""
    if name == "logmel":
        return LogMelFeaturizer()
    if name == "hubert":
        return HubertFeaturizer(**kwargs)
    if name == "phones":
        return PhoneFeaturizer(**kwargs)
    if name == "phones+logmel":
        return PhonesLogMelFeaturizer(**kwargs)
    raise ValueError(f"unknown audio features {name!r}: use one of {', '.join(FEATURIZERS)}")
