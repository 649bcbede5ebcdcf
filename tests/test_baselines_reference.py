"""Reference methods: ground truth (sanity line) and a frozen first frame (lip-sync floor)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.methods import MethodInput, get_method


@pytest.fixture(scope="module")
def clip(data_root: Path):
    from harness.media import read_video

    return read_video(data_root / "video-retalking/face/3.mp4", fps=25.0, max_frames=25)


def _inp(v, n: int, setting: str = "reconstruction") -> MethodInput:
    return MethodInput(clip_id="3", setting=setting, source_video=v.path, source_frames=v.frames,
                       audio=np.zeros(n * 640, np.float32), n_frames=n)


def test_ground_truth(clip):
    m = get_method("ground_truth")
    assert m.kind == "reference" and m.availability() == (True, "")
    out = m.generate(_inp(clip, 25))
    assert np.array_equal(out, clip.frames)
    out = m.generate(_inp(clip, 30, "cross_audio"))  # longer audio: last frame held
    assert out.shape[0] == 30 and np.array_equal(out[25:], np.repeat(clip.frames[-1:], 5, axis=0))
    assert np.array_equal(m.generate(_inp(clip, 10))[:10], clip.frames[:10])
    assert "NOT driven" in m.describe()["label"]["cross_audio"]


def test_static_frame(clip):
    m = get_method("static_frame")
    out = m.generate(_inp(clip, 40))
    assert out.shape == (40,) + clip.frames.shape[1:]
    assert all(np.array_equal(f, clip.frames[0]) for f in out)
