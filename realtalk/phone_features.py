"""English phone segments of speech from PocketSphinx's bundled pretrained US-English acoustic model
(pocketsphinx 5.1.1 on PyPI: pocketsphinx/model/en-us/, the CMU Sphinx "generic US English" model, cmudict and
the en-us 3-gram LM), for the A2E's "phones" audio tokens (realtalk/audio_features.py).

Why phones: the lips follow the phonetic content; on the demo split a ridge read-out of the fitted mouth
opening from these phones beats one from log-mel (README "Phone tokens"). HuBERT, the paper's features, needs
weights this machine does not have; this model is offline and pinned (weights key "pocketsphinx_en_us").

How (two passes over the whole utterance, PocketSphinx's documented recipe):
1. word recognition with the en-us LM and cmudict (Decoder(lm=..., dict=...)), then
2. phone-level forced alignment of the recognised words (set_align_text + set_alignment).
When the aligner fails (its beam finds no path, which happens on some real clips) or no word is recognised,
the phones come from PocketSphinx's phone-loop recogniser ("allphone" with the en-us phone LM, lw 2.0, the
CMU wiki's settings) instead; `PhoneSegments.method` says which, so the fallback is never silent.
Not streaming: a word LM looks at the whole utterance (as the paper's HuBERT does).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# SIL (index 0: silence and every filler: +NSN+ noise, +SPN+ spoken noise, ...) then the 39 CMU phones
PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
          "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W",
          "Y", "Z", "ZH")
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
PHONE_TOKEN_DIM = len(PHONES) + 1  # one-hot phone + position within it (phone_tokens)
FRAME_S = 0.01  # PocketSphinx's frame shift (feat.params: 100 frames/s, 25.6 ms window)


@dataclass
class PhoneSegments:
    phones: list[tuple[str, int, int]]  # (phone, first 10-ms frame, end frame exclusive), in time order
    words: str  # the recognised word sequence ("" when none)
    method: str  # "align" (words + forced alignment) | "allphone" (phone loop fallback) | "none" (no audio)


def model_dir() -> Path:
    """The verified pocketsphinx en-us model folder (one-line WeightsMissingError when absent or changed)."""
    from harness.core.weights import require

    return require("pocketsphinx_en_us")


class PhoneRecognizer:
    """Phone segments of 16 kHz mono float audio. Fresh decoders for every utterance (about 1 s of CPU to load
    the LM): a reused PocketSphinx decoder carries state over (its cepstral-mean estimate and more; resetting
    the CMN alone was measured not to suffice), which made a clip's phones depend on the clip decoded before."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else model_dir()

    def _kw(self) -> dict:
        return {"hmm": str(self.folder / "en-us"), "dict": str(self.folder / "cmudict-en-us.dict"),
                "samprate": 16000, "loglevel": "FATAL"}

    def _decoder(self, mode: str):
        from pocketsphinx import Decoder

        if mode == "words":
            return Decoder(lm=str(self.folder / "en-us.lm.bin"), **self._kw())
        return Decoder(allphone=str(self.folder / "en-us-phone.lm.bin"), lw=2.0, beam=1e-20, pbeam=1e-20,
                       **self._kw())

    @staticmethod
    def _run(d, raw: bytes) -> None:
        d.start_utt()
        d.process_raw(raw, full_utt=True)
        d.end_utt()

    def segments(self, audio: np.ndarray) -> PhoneSegments:
        a = np.asarray(audio, np.float32).reshape(-1)
        if len(a) < 1600:  # under 0.1 s: nothing to decode
            return PhoneSegments([], "", "none")
        raw = (np.clip(a, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        d = self._decoder("words")
        self._run(d, raw)
        hyp = d.hyp()
        words = " ".join(w for w in (hyp.hypstr.split() if hyp is not None else []) if d.lookup_word(w))
        if words:
            try:
                d.set_align_text(words)
                self._run(d, raw)
                d.set_alignment()
                self._run(d, raw)
                al = d.get_alignment()
                phones = [(p.name, int(p.start), int(p.start + p.duration)) for p in al.phones()]
                return PhoneSegments(phones, words, "align")
            except RuntimeError:  # the aligner's beam found no path: phone loop instead (recorded in .method)
                pass
        ap = self._decoder("allphone")
        self._run(ap, raw)
        return PhoneSegments([(s.word, int(s.start_frame), int(s.end_frame) + 1) for s in ap.seg()], words,
                             "allphone")


def frame_labels(seg: PhoneSegments, n10: int) -> tuple[np.ndarray, np.ndarray]:
    """Per 10-ms frame: phone index [n10] (0 = SIL where nothing is aligned) and the position within the
    phone in (0, 1) [n10] (0 on unaligned frames)."""
    lab = np.zeros(n10, np.int64)
    pos = np.zeros(n10, np.float32)
    for name, s, e in seg.phones:
        s, e = max(0, s), min(n10, e)
        if e <= s:
            continue
        lab[s:e] = PHONE_INDEX.get(name, 0)
        pos[s:e] = (np.arange(e - s, dtype=np.float32) + 0.5) / (e - s)
    return lab, pos


def phone_tokens(seg: PhoneSegments, n_tokens: int, token_s: float = 0.02) -> np.ndarray:
    """[n_tokens, PHONE_TOKEN_DIM]: one-hot phone + position within it, token i read at the 10-ms frame
    nearest its centre i*token_s (a PocketSphinx frame j is centred at j*10 + 12.8 ms: j = i*token_s/0.01 - 1)."""
    step = int(round(token_s / FRAME_S))
    j = np.maximum(step * np.arange(n_tokens) - 1, 0)
    lab, pos = frame_labels(seg, int(j.max()) + 1 if n_tokens else 0)
    out = np.zeros((n_tokens, PHONE_TOKEN_DIM), np.float32)
    out[np.arange(n_tokens), lab[j]] = 1.0
    out[:, -1] = pos[j]
    return out
