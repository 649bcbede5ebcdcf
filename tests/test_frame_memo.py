"""The per-frame content memo computes each distinct frame once and keeps order."""
from __future__ import annotations

import numpy as np

from metrics.frame_memo import FrameMemo


def test_memo_computes_each_distinct_frame_once() -> None:
    memo = FrameMemo(max_entries=100)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    seen: list[int] = []

    def compute(frames: np.ndarray) -> list[float]:
        seen.append(len(frames))
        return [float(f.mean()) for f in frames]

    out = memo.map("ns", np.stack([a, b, a, a, b]), compute)
    assert seen == [2] and out == [a.mean(), b.mean(), a.mean(), a.mean(), b.mean()]
    memo.map("ns", np.stack([b, a]), compute)
    assert seen == [2]  # all known
    memo.map("other", np.stack([a]), compute)
    assert seen == [2, 1]  # namespaces are separate (e.g. backend, weights)


def test_memo_is_bounded() -> None:
    memo = FrameMemo(max_entries=3)
    frames = np.arange(5 * 12, dtype=np.uint8).reshape(5, 2, 2, 3)
    memo.map("ns", frames, lambda f: list(range(len(f))))
    assert len(memo) == 3


def test_face_models_load_once_per_process() -> None:
    """The detector / landmarker every clip_faces call and LMD instance used to rebuild: one per settings per
    process (counted in PASSES.loads), forgotten by clear_all like the networks."""
    from metrics.face_models import shared_detector, shared_landmarker
    from metrics.frame_memo import clear_all
    from metrics.passes import PASSES

    clear_all()
    PASSES.reset()
    lm = shared_landmarker("dlib")
    assert shared_landmarker("dlib") is lm and PASSES.loads["landmarker:dlib"] == 1
    det = shared_detector("dlib_hog")
    assert shared_detector("dlib_hog") is det
    other = shared_detector("dlib_hog", max_side=160)
    assert other is not det and other.max_side == 160 and PASSES.loads["detector:dlib_hog"] == 2
    clear_all()  # a fresh process loads again
    assert shared_landmarker("dlib") is not lm and PASSES.loads["landmarker:dlib"] == 2
