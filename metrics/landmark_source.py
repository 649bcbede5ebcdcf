"""68-point landmarks on the 256x256 crops, for the metrics built on them (LMD, AV-sync).

One backend table, one availability rule and one per-process memo keyed by frame content, so a
generated frame scored by both metrics (or a static method's repeated frame) is fitted once.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from metrics.frame_memo import FrameMemo

BACKENDS = ("dlib", "fan")
WEIGHTS_KEYS = {"dlib": "dlib_landmarks68", "fan": "fan_2d"}
_MEMO = FrameMemo(network="landmarks")


class LandmarkSource:
    """crops [T,H,W,3] -> [T,68,2] float (nan rows where no face), through harness.core.faces."""

    def __init__(self, backend: str = "dlib", landmarks_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 owner: str = "metric", device: str = "cpu") -> None:
        """landmarks_fn: a custom landmarker (tests, plugins); it bypasses the memo (no content identity).
        device: where FAN runs (dlib always runs on the CPU)."""
        if backend not in BACKENDS:
            raise ValueError(f"{owner} backend {backend!r} not in {BACKENDS}")
        self.backend = backend
        self.custom = landmarks_fn
        self.device = str(device)
        self._landmarker: Any = None

    @property
    def device_type(self) -> str:
        """'cpu' or 'cuda': where the landmark network runs (part of memo and cache keys off the CPU)."""
        return self.device.split(":")[0] if self.backend == "fan" else "cpu"

    @property
    def weights_key(self) -> str:
        """The file the landmarker loads: for fan, the state dict or the TorchScript zip (whichever is there)."""
        if self.backend == "fan":
            from harness.core.faces.landmarks import fan_weights_key

            return fan_weights_key()
        return WEIGHTS_KEYS[self.backend]

    def availability(self) -> tuple[bool, str]:
        from harness.core import weights

        state, path, _ = weights.check(self.weights_key)
        if state in ("found", "unverified"):
            return True, ""
        return False, f"{weights.REGISTRY[self.weights_key].filename} {state} at {path}"

    def weights(self) -> tuple[str | None, str]:
        """(sha256 of the landmark model file, its state label for protocols)."""
        from harness.core import weights

        return weights.check(self.weights_key)[2], weights.state_label(self.weights_key)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        if self.custom is not None:
            return self.custom(crops)
        from harness.core.faces import clip as faces_clip
        from harness.core.faces.landmarks import get_landmarker

        if self._landmarker is None:
            kw = {"device": self.device} if self.device_type != "cpu" else {}
            self._landmarker = get_landmarker(self.backend, **kw)  # shared: one load per process, not per metric
        lm = self._landmarker
        space = (self.backend, lm.weights_sha256) + (() if self.device_type == "cpu" else (self.device_type,))
        rows = _MEMO.map(space, crops,
                         lambda fr: list(faces_clip.landmarks_on_crops(fr, lm)))
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 68, 2), np.float32)
