"""Test-only stand-ins for harness.core.media / harness.core.faces (being written in parallel): PyAV decode of the
first frames of a real clip, and dlib 68-point landmarks on 256x256 crops. Real data, real models."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def decode_frames(path: Path, n: int, start: int = 0) -> np.ndarray:
    """uint8 RGB [n,H,W,3]: native frames start..start+n of a video (no resampling)."""
    import av

    out = []
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i >= start:
                out.append(fr.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return np.stack(out)


def styletalk_crops(data_root: Path, name: str = "Obama_clip1", n: int = 50, start: int = 0) -> np.ndarray:
    """The styletalk clips are already 256x256 face crops, so they serve as crop tracks directly."""
    frames = decode_frames(data_root / "styletalk" / "video" / f"{name}.mp4", n, start)
    assert frames.shape[1:] == (256, 256, 3)
    return frames


def dlib_landmarks_on_crops(crops: np.ndarray) -> np.ndarray:
    """[T,68,2] float32, nan rows where dlib finds no face (stand-in for harness.core.faces.landmarks_on_crops)."""
    import dlib

    from harness.core.weights import require

    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(str(require("dlib_landmarks68")))
    out = np.full((len(crops), 68, 2), np.nan, dtype=np.float32)
    for i, im in enumerate(crops):
        rects = det(np.ascontiguousarray(im), 1)
        if len(rects) == 0:
            continue
        r = max(rects, key=lambda q: q.width() * q.height())
        s = pred(np.ascontiguousarray(im), r)
        out[i] = [(p.x, p.y) for p in s.parts()]
    return out
