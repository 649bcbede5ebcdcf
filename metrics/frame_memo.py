"""Per-process memo of per-frame network outputs, keyed by frame content.

Feature networks here are deterministic per image (no batch statistics), so a frame seen before —
a static method's repeated frame, the ground truth scored against itself, the reference set every
method of a clip shares — need not go through the network again. Batch size cannot change the result.
Every frame that does go through is logged in metrics.passes.PASSES under the memo's network name.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from metrics.passes import PASSES, content_key

MEMOS: list[Any] = []  # every per-process memo (anything with .clear()), so tests can simulate a fresh process


def frame_key(frame: np.ndarray) -> bytes:
    return content_key(frame)


def clear_all() -> None:
    """Empty every per-process memo (what a new process starts with); the on-disk caches stay."""
    for memo in MEMOS:
        memo.clear()


class FrameMemo:
    def __init__(self, max_entries: int = 50_000, network: str = "unnamed") -> None:
        self.max_entries = max_entries
        self.network = network
        self._rows: OrderedDict[tuple[Hashable, bytes], Any] = OrderedDict()
        MEMOS.append(self)

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
            PASSES.record(self.network, (k[1] for k in todo))
            for i, out in zip(idx, outs):
                self._rows[keys[i]] = out
        result = [self._rows[k] for k in keys]
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
        return result
