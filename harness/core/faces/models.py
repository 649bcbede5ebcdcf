"""One face detector / landmarker per (kind, name, settings, weights file) per process.

Building dlib's HOG detector and loading its 100 MB 68-point predictor cost ~0.5 s each; every `clip_faces`
call (a cache hit too: the key needs the models' descriptions), every landmark metric and every crop verifier
used to build its own. get_detector / get_landmarker go through `shared()`, so all of them share one.
The key includes the weights file the backend would load (path, size, mtime), so a different file at the
default place (a test's random FAN, a replaced download) builds a new model instead of reusing a stale one.
Loads are counted here (LOADS) and announced to listeners (metrics.passes.PASSES counts them per process).
Imports nothing heavy: harness.core.faces.reset_face_models() must not pull in cv2 or dlib.
"""
from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")

# (kind, name) -> weights-table keys of the file(s) that backend loads when no `path` kwarg is given
WEIGHT_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("landmarker", "dlib"): ("dlib_landmarks68",),
    ("landmarker", "fan"): ("fan_2d_pth", "fan_2d"),
    ("detector", "s3fd"): ("s3fd",),
}

MAX_MODELS = 8  # a run holds ~5 (tracker, crop verifier, dlib, FAN, S3FD); past this the oldest go (tests' random FANs)
_MODELS: dict[Hashable, Any] = {}
_LOCK = threading.RLock()  # re-entrant: a build may ask for another shared model
LOADS: Counter[str] = Counter()  # "detector:dlib_hog" -> builds in this process (never reset: a process total)
_LISTENERS: list[Callable[[str], None]] = []


def _frozen(value: Any) -> Hashable:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def _stamp(path: Any) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return str(path), st.st_size, st.st_mtime_ns


def _files(kind: str, name: str, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Identity of the weights file(s) the build would read (cheap: stat only, no hashing)."""
    if kwargs.get("path") is not None:
        return (_stamp(kwargs["path"]),)
    keys = WEIGHT_KEYS.get((kind, name), ())
    if not keys:
        return ()
    from harness.core import weights

    out: list[Any] = [weights.unverified_allowed()]  # the env switch decides whether a mismatched file loads
    for key in keys:
        p = weights.REGISTRY[key].path()
        out.append(_stamp(p) if p is not None else None)
    return tuple(out)


def shared(kind: str, name: str, kwargs: dict[str, Any], build: Callable[[], T]) -> T:
    """The process's model for (kind, name, kwargs, weights file); `build()` runs once for it (under a lock,
    so two threads asking at once load it once). A build that raises is not remembered."""
    key = (kind, name, tuple(sorted((k, _frozen(v)) for k, v in kwargs.items())), _files(kind, name, kwargs))
    with _LOCK:
        if key in _MODELS:
            _MODELS[key] = _MODELS.pop(key)  # most recently used last
            return _MODELS[key]
        model = build()
        _MODELS[key] = model
        while len(_MODELS) > MAX_MODELS:
            del _MODELS[next(iter(_MODELS))]
        label = f"{kind}:{name}"
        LOADS[label] += 1
        listeners = list(_LISTENERS)
    for fn in listeners:
        fn(label)
    return model


def on_load(listener: Callable[[str], None]) -> None:
    """Call listener(label) on every later build; the builds so far are replayed, so a counter subscribing
    late (metrics imported after the first clip_faces) still sees every load of the process."""
    with _LOCK:
        _LISTENERS.append(listener)
        past = list(LOADS.elements())
    for label in past:
        listener(label)


def reset_face_models() -> None:
    """Forget every shared detector / landmarker (what a new process starts with); LOADS keeps counting."""
    with _LOCK:
        _MODELS.clear()


def n_shared() -> int:
    """How many models are held now (tests)."""
    return len(_MODELS)
