"""Per-process memo of per-frame network outputs, keyed by frame content.

Feature networks here are deterministic per image (no batch statistics), so a frame seen before —
a static method's repeated frame, the ground truth scored against itself, the reference set every
method of a clip shares — need not go through the network again. Batch size cannot change the result.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Callable, Hashable, Sequence

import numpy as np


def frame_key(frame: np.ndarray) -> bytes:
    a = np.ascontiguousarray(frame)
    return hashlib.blake2b(a.tobytes() + str(a.shape).encode(), digest_size=16).digest()


class FrameMemo:
    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._rows: OrderedDict[tuple[Hashable, bytes], Any] = OrderedDict()

    def clear(self) -> None:
        self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)

    def map(self, namespace: Hashable, frames: np.ndarray, compute: Callable[[np.ndarray], Sequence[Any]]) -> list[Any]:
        """Per-frame outputs for `frames`; `compute(unique_unseen_frames)` runs once on the frames not seen
        before (in order) and returns one output per frame."""
        keys = [(namespace, frame_key(f)) for f in frames]
        todo: dict[tuple[Hashable, bytes], int] = {}
        for i, k in enumerate(keys):
            if k not in self._rows and k not in todo:
                todo[k] = i
        if todo:
            idx = list(todo.values())
            outs = compute(frames[idx])
            if len(outs) != len(idx):
                raise ValueError(f"memo compute returned {len(outs)} rows for {len(idx)} frames")
            for i, out in zip(idx, outs):
                self._rows[keys[i]] = out
        result = [self._rows[k] for k in keys]
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
        return result
