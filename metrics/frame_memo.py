"""Per-process memo of per-frame network outputs, keyed by frame content.

Feature networks here are deterministic per image (no batch statistics), so a frame seen before —
a static method's repeated frame, the ground truth scored against itself, the reference set every
method of a clip shares — need not go through the network again. Batch size cannot change the result.
Every frame that does go through is logged in metrics.passes.PASSES under the memo's network name.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Sequence, TypeVar

import numpy as np

from metrics.passes import PASSES, content_key

MAP_BLOCK = 512  # unseen frames handed to compute() at once (the result does not depend on it)


def frames_equal(a: np.ndarray, b: np.ndarray, block: int = 256) -> bool:
    """np.array_equal without its full-size temporary (a bool per byte: 1.5 GB for 7500 256x256 crops)."""
    if a is b:
        return True
    if np.shape(a) != np.shape(b):
        return False
    return all(np.array_equal(a[i:i + block], b[i:i + block]) for i in range(0, len(a), block))


MEMOS: list[Any] = []  # every per-process memo (anything with .clear()), so tests can simulate a fresh process
M = TypeVar("M")


def register(memo: M) -> M:
    """Add a per-process memo (a dict of loaded networks, a FrameMemo: anything with .clear()) to clear_all."""
    MEMOS.append(memo)
    return memo


def frame_key(frame: np.ndarray) -> bytes:
    return content_key(frame)


def clear_all() -> None:
    """Empty every per-process memo (what a new process starts with): frame outputs, loaded networks, the shared
    face detectors / landmarkers of harness.core.faces; the on-disk caches stay."""
    from harness.core.faces import reset_face_models

    for memo in MEMOS:
        memo.clear()
    reset_face_models()


class FrameMemo:
    def __init__(self, max_entries: int = 50_000, network: str = "unnamed") -> None:
        self.max_entries = max_entries
        self.network = network
        self._rows: OrderedDict[tuple[Hashable, bytes], Any] = OrderedDict()
        self._lock = threading.RLock()  # harness.prefetch: another thread may use the same memo
        MEMOS.append(self)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)

    def map(self, namespace: Hashable, frames: np.ndarray, compute: Callable[[np.ndarray], Sequence[Any]]) -> list[Any]:
        """Per-frame outputs for `frames`; `compute(unique_unseen_frames)` runs once on the frames not seen
        before (in order) and returns one output per frame. One thread at a time (a frame is computed once)."""
        with self._lock:
            return self._map(namespace, frames, compute)

    def _map(self, namespace: Hashable, frames: np.ndarray, compute: Callable[[np.ndarray], Sequence[Any]]) -> list[Any]:
        keys = [(namespace, frame_key(f)) for f in frames]
        todo: dict[tuple[Hashable, bytes], int] = {}
        for i, k in enumerate(keys):
            if k not in self._rows and k not in todo:
                todo[k] = i
        if todo:
            idx = list(todo.values())
            outs = []  # in blocks: frames[idx] of a long clip's crops would copy them all at once (1.5 GB / 7500)
            for b in range(0, len(idx), MAP_BLOCK):
                outs.extend(compute(frames[idx[b:b + MAP_BLOCK]]))
            if len(outs) != len(idx):
                raise ValueError(f"memo compute returned {len(outs)} rows for {len(idx)} frames")
            PASSES.record(self.network, (k[1] for k in todo))
            for i, out in zip(idx, outs):
                self._rows[keys[i]] = out
        result = [self._rows[k] for k in keys]
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
        return result
