"""One face detector and one 68-point landmarker per (name, settings) per process.

Loading dlib's 68-point predictor (a 100 MB file) and building its HOG detector cost ~0.5 s each, and every
`clip_faces` call (also a cache hit: the key needs the models' descriptions) and every LMD / AV-sync metric
instance used to load its own; scoring N generated versions in one process now loads each once. Registered in
metrics.frame_memo.MEMOS, so frame_memo.clear_all() (a simulated fresh process) forgets them like the networks.
"""
from __future__ import annotations

from typing import Any

from metrics.frame_memo import MEMOS
from metrics.passes import PASSES

_MODELS: dict[tuple[str, str, tuple[tuple[str, Any], ...]], Any] = {}
MEMOS.append(_MODELS)


def shared_detector(name: str = "dlib_hog", **kwargs: Any) -> Any:
    """harness.core.faces.detect.get_detector(name, **kwargs), built once per process."""
    from harness.core.faces.detect import get_detector

    key = ("detector", name, tuple(sorted(kwargs.items())))
    if key not in _MODELS:
        _MODELS[key] = get_detector(name, **kwargs)
        PASSES.load(f"detector:{name}")
    return _MODELS[key]


def shared_landmarker(name: str = "dlib", **kwargs: Any) -> Any:
    """harness.core.faces.landmarks.get_landmarker(name, **kwargs), built once per process."""
    from harness.core.faces.landmarks import get_landmarker

    key = ("landmarker", name, tuple(sorted(kwargs.items())))
    if key not in _MODELS:
        _MODELS[key] = get_landmarker(name, **kwargs)
        PASSES.load(f"landmarker:{name}")
    return _MODELS[key]
