"""Ground-truth features on disk, content-addressed, so no process ever recomputes them.

A metric's features of the ground truth (Inception pool3 of the real crops, the identity reference's
embedding, SyncNet's embeddings of the driving audio) depend only on the input's content, the network's
weights and the protocol. The key is sha256(dtype, shape, bytes of the input array) + the metric's protocol
fingerprint + the weights sha256 (+ whatever else shapes the output, e.g. SyncNet's window count), never a
path: a re-encoded copy of the same frames hits, a changed frame or setting misses. Entries live in
harness.core.cache.Cache under one kind per feature (`realtalk-bench cache info` / `cache clear --kind KIND`).
Values are stored exactly as computed (float32 / float64 arrays), so a warm run gives the cold run's values.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from harness.core.cache import Cache, default_cache, make_key
from metrics.frame_memo import MEMOS, frames_equal

VERSION = "1"
# kind -> what it holds (shown by `cache info`)
KINDS = {
    "gtinception": "FID: InceptionV3 pool3 features of ground-truth crops",
    "gtidentity": "CSIM: identity embeddings of the reference frame (and of ground-truth frames scored as a method)",
    "gtsyncaudio": "LSE-C/D: SyncNet audio embeddings of the driving audio",
    "gtsyncvideo": "LSE-C/D: SyncNet video embeddings of the ground truth's own crops (the ground truth as a method)",
}


# the same entries held in memory for the life of the process (also with the disk cache off), so one process
# scoring many generated versions computes each ground-truth feature once; bounded by entry count
MEMORY_ENTRIES = 256
_MEMORY: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
MEMOS.append(_MEMORY)  # frame_memo.clear_all() empties it too (a fresh process)


def generated_is_ground_truth(clip: Any) -> bool:
    """The generated crops are the ground truth's own (a reference row: the ground truth scored as a method), so
    what a metric computes from them is ground-truth work and goes into the cache like the reference set's."""
    gen, gt = clip.generated, clip.ground_truth
    return gt is not None and frames_equal(gen, gt)  # blockwise: no bool temporary of the crops' size


DIGEST_BLOCK = 256  # leading-axis rows hashed at a time (the same digest as one update over all the bytes)


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes: the content identity of frames or audio. Hashed block by
    block along the first axis (C order, so the same bytes in the same order): a long clip's crops are never
    copied whole (a.tobytes() would double 1.5 GB for 7500 crops)."""
    a = np.asarray(a)
    if a.ndim == 0:
        a = np.ascontiguousarray(a)  # as before: at least 1-d, so the key string (and every cache key) is unchanged
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    for i in range(0, len(a), DIGEST_BLOCK):
        h.update(memoryview(np.ascontiguousarray(a[i:i + DIGEST_BLOCK])).cast("B"))
    return h.hexdigest()


def cached_features(kind: str, content: np.ndarray, fingerprint: dict[str, Any],
                    compute: Callable[[], dict[str, np.ndarray]] | None, store: bool = True,
                    cache: Cache | None = None) -> dict[str, np.ndarray] | None:
    """The arrays stored for (kind, content, fingerprint), else compute() (stored when `store`).
    compute=None: look up only (None on a miss), e.g. generated frames that may equal a known ground truth."""
    if kind not in KINDS:
        raise KeyError(f"unknown feature-cache kind {kind!r}; known: {sorted(KINDS)}")
    cache = cache if cache is not None else default_cache()
    key = make_key(kind, VERSION, content=array_digest(content), **fingerprint)
    hit = _MEMORY.get(key)
    if hit is None:
        hit = cache.get_arrays(key)
    if hit is None and compute is not None:
        hit = compute()
        if store:
            cache.put_arrays(key, hit)
    if hit is not None and (store or key in _MEMORY):
        _MEMORY[key] = hit
        _MEMORY.move_to_end(key)
        while len(_MEMORY) > MEMORY_ENTRIES:
            _MEMORY.popitem(last=False)
    return hit
