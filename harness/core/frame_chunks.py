"""Chunked walks over frame sequences (an array, or anything with chunks(size, start, stop): a streamed video,
a frame folder), numpy only: no PyAV, so RealTalk's inference imports it on machines without a decoder (the
device machine of tests/benchmarks/device_check.py)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np


def fitted_chunks(frames: Any, n: int, size: int) -> Iterator[np.ndarray]:
    """Exactly n frames (trimmed, or padded by holding the last frame) in chunks of at most `size`; `frames` is
    an array or decodes in chunks (anything with chunks(size, start, stop): StreamedFrames, a frame folder),
    so no more than one chunk is held."""
    stop = min(len(frames), n)
    if hasattr(frames, "chunks"):
        chunks = frames.chunks(size, 0, stop)
    else:
        chunks = (np.array(frames[i:min(i + size, stop)]) for i in range(0, stop, size))
    got, last = 0, None
    for chunk in chunks:
        last = chunk[-1:]
        got += len(chunk)
        yield chunk
    while got < n and last is not None:
        k = min(size, n - got)
        got += k
        yield np.repeat(last, k, axis=0)


class ForwardFrames:
    """Frames by index, read forward over one chunked pass of `frames` (StreamedFrames decodes a chunk at a time;
    an array is sliced), for consumers that walk a clip in order (a StreamedFrames slice per request would seek
    and decode from the previous keyframe each time). An index behind the current chunk is decoded on its own."""

    def __init__(self, frames: Any, size: int):
        self.frames = frames
        chunks = getattr(frames, "chunks", None)
        self.it = chunks(size) if chunks is not None else (frames[i:i + size] for i in range(0, len(frames), size))
        self.lo, self.buf = 0, np.empty((0, *frames.shape[1:]), np.uint8)

    def one(self, s: int) -> np.ndarray:
        """Frame s as [1,H,W,3]."""
        while s >= self.lo + len(self.buf):
            nxt = next(self.it, None)
            if nxt is None:
                break
            self.lo, self.buf = self.lo + len(self.buf), np.asarray(nxt)
        if self.lo <= s < self.lo + len(self.buf):
            return self.buf[s - self.lo:s - self.lo + 1]
        return np.asarray(self.frames[s:s + 1])

    def take(self, idx: list[int]) -> np.ndarray:
        return np.concatenate([self.one(s) for s in idx])
