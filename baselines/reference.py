"""Reference "methods" that bound every metric: the real frames (ceiling) and a frozen frame (lip-sync floor).

ground_truth returns the source clip's own frames. In reconstruction they are the exact target, so every
metric's value for it is the sanity line (PSNR inf / SSIM 1 / sync = the real video's). In cross_audio it
STILL returns the source frames, which were spoken to different audio: there it is a "real video, wrong
audio" line (sync should drop to chance), and describe() labels it so.
static_frame repeats the first source frame n_frames times: no motion at all, the floor for lip sync.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from harness.methods import Method, MethodInput, register


def _fit_length(frames: np.ndarray, n: int) -> np.ndarray:
    """Exactly n frames: trim, or hold the last frame."""
    if len(frames) >= n:
        return frames[:n]
    return np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])


@register
class GroundTruth(Method):
    """The real source frames (trimmed / last-frame-padded to n_frames)."""

    name = "ground_truth"
    kind = "reference"

    def fingerprint(self) -> str:
        return "ground_truth:v1"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["label"] = {"reconstruction": "real frames (exact target: metric sanity line)",
                      "cross_audio": "real source frames, NOT driven by the cross audio (real-video / wrong-audio line)"}
        return d

    def generate(self, inp: MethodInput) -> np.ndarray:
        return _fit_length(np.asarray(inp.source_frames), int(inp.n_frames)).copy()


@register
class StaticFrame(Method):
    """The first source frame repeated n_frames times: the lip-sync floor."""

    name = "static_frame"
    kind = "reference"

    def fingerprint(self) -> str:
        return "static_frame:v1"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["label"] = "first source frame held for the whole clip (no mouth motion: lip-sync floor)"
        return d

    def generate(self, inp: MethodInput) -> np.ndarray:
        first = np.asarray(inp.source_frames)[:1]
        return np.repeat(first, int(inp.n_frames), axis=0)
