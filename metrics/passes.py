"""Which inputs went through which network in this process, and how often each network was loaded.

The ground-truth feature cache (metrics/feature_cache.py) and the per-process memo (metrics/frame_memo.py)
exist to skip network passes; this log is how tests and the benchmark prove it: a warm run must show zero
passes on the ground truth's frames (checked by content, so no caller has to label what is ground truth)
and one load per network (and per face detector / landmarker, from harness.core.faces.models) however many
generated videos a process scores.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

import numpy as np

MAX_KEYS = 200_000  # per network; past this only the counts grow (a long run must not hoard memory)


def content_key(a: np.ndarray) -> bytes:
    """16-byte digest of an array's content (dtype, shape and bytes): the identity of a frame or a clip."""
    import hashlib

    a = np.ascontiguousarray(a)
    return hashlib.blake2b(a.tobytes() + f"{a.dtype}{a.shape}".encode(), digest_size=16).digest()


class PassLog:
    """frames[net]: inputs (frames, windows) run through net; keys[net]: their content keys; loads[net]."""

    def __init__(self) -> None:
        self.frames: Counter[str] = Counter()
        self.loads: Counter[str] = Counter()
        self.keys: defaultdict[str, Counter[bytes]] = defaultdict(Counter)

    def record(self, network: str, keys: Iterable[bytes], n: int | None = None) -> None:
        """`keys`: content keys of what went through; n: how many network inputs that was (default len(keys),
        e.g. SyncNet's windows of one clip)."""
        keys = list(keys)
        self.frames[network] += len(keys) if n is None else n
        if len(self.keys[network]) < MAX_KEYS:
            self.keys[network].update(keys)  # Counter.update counts each occurrence

    def load(self, network: str) -> None:
        self.loads[network] += 1

    def times(self, network: str, items: np.ndarray | list[np.ndarray]) -> list[int]:
        """For each of `items` (keyed by content_key): how often it went through `network` since the last reset."""
        known = self.keys.get(network, Counter())
        return [known[content_key(np.asarray(x))] for x in items]

    def seen(self, network: str, items: np.ndarray | list[np.ndarray]) -> int:
        """How many of `items` went through `network` at least once since the last reset."""
        return sum(t > 0 for t in self.times(network, items))

    def reset(self) -> None:
        self.frames.clear()
        self.loads.clear()
        self.keys.clear()

    def summary(self) -> dict[str, dict[str, int]]:
        nets = sorted(set(self.frames) | set(self.loads))
        return {n: {"passes": self.frames[n], "loads": self.loads[n]} for n in nets}


PASSES = PassLog()


def _count_face_model_loads() -> None:
    """Face detectors / landmarkers are shared in harness.core.faces (below the metrics): count their loads here."""
    from harness.core.faces.models import on_load

    on_load(PASSES.load)


_count_face_model_loads()
