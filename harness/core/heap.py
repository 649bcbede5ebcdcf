"""glibc heap settings for a process that streams big frames AND runs memory-bound networks (one idea: where
large allocations live).

- `keep_large_allocations_mapped()`: fixes glibc's mmap threshold at MMAP_THRESHOLD_BYTES, so decoded frames are
  mmapped and handed back to the OS on free (a streamed clip's heap no longer grows by holes a small
  allocation pins).
- `network_allocations_on_heap()`: around a memory-bound network call on the CPU (the RealTalk renderer's
  render_batch: 8 two-frame network calls at one thread), the threshold is raised to glibc's maximum and freed
  blocks stay in the heap (M_TRIM_THRESHOLD), so each network call's activations reuse the previous call's pages
  instead of being mmapped and page-faulted afresh: with the fixed 1 MB threshold the renderer took 28k minor
  faults per frame and 123 ms/frame; with the heap kept for good 0 faults and 84-86 ms/frame (one thread, 16
  frames in 2-frame calls; session 10). On the outer exit the process's heap is put back (thresholds restored,
  malloc_trim), because kept for good the dirty free heap served every later big allocation that used to
  be fresh zero pages (with the heap kept, one CI run saw tests/test_streamed_media.py's write-twice file
  differ by a few bytes; not reproduced in isolation, but a process-wide change of what uninitialised memory
  holds must not outlive the call that wanted it). So the first network call of each window faults afresh.
  The metric networks (Inception, SyncNet, LPIPS, FAN) are compute-bound and measured no different, so they
  do not use it.
Both are no-ops where the C library has no mallopt (not glibc).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

MMAP_THRESHOLD_BYTES = 1024 ** 2  # glibc: allocations at least this big are mmapped (returned to the OS on free)
NETWORK_MMAP_THRESHOLD_BYTES = 32 * 1024 ** 2  # inside network_allocations_on_heap: glibc's maximum (64-bit)
HEAP_KEEP_BYTES = 256 * 1024 ** 2  # inside the window: free heap top kept for the next call (M_TRIM_THRESHOLD)
TRIM_THRESHOLD_BYTES = 128 * 1024  # glibc's default M_TRIM_THRESHOLD, restored on the window's exit
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h

_malloc_fixed = False
_libc: Any = None
_window_lock = threading.Lock()
_window_depth = 0


def _mallopt(param: int, value: int) -> bool:
    global _libc
    try:
        if _libc is None:
            import ctypes
            import ctypes.util

            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(_libc.mallopt(param, value))
    except (OSError, AttributeError):
        return False


def keep_large_allocations_mapped() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD_BYTES for this process (once; True when set).

    Why: a streamed clip decodes full-resolution frames one after another (6.2 MB each at 1080p). glibc's
    threshold is dynamic: after the first such block is freed it rises to that size, and from then on frames come
    from the heap, where any small allocation that outlives a frame pins its hole; the heap then grew by about a
    frame per chunk (measured on a 1-minute 1080p clip with lmd + ssim fed in chunks: +0.75 MB per frame, all of
    it free memory that malloc_trim gave back; 5 minutes: over 1.4 GB). A fixed threshold keeps such blocks
    mmapped, so the peak follows what is alive."""
    global _malloc_fixed
    if not _malloc_fixed:
        _malloc_fixed = _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    return _malloc_fixed


def _malloc_trim() -> None:
    try:
        _libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def network_allocations_on_heap() -> Iterator[None]:
    """Within: allocations below NETWORK_MMAP_THRESHOLD_BYTES come from the heap and freed ones stay there (up
    to HEAP_KEEP_BYTES) for the next network call; on the outer exit the 1 MB threshold and glibc's default
    trim threshold come back and the free heap is handed back (malloc_trim). Only acting once the threshold was
    fixed (glibc's dynamic threshold already does this for a process that never fixed it). Nestable; threads
    share it (mallopt is process-wide: the first to enter raises, the last to leave restores)."""
    global _window_depth
    with _window_lock:
        active = _malloc_fixed
        if active:
            if _window_depth == 0:
                _mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP_BYTES)
                _mallopt(_M_MMAP_THRESHOLD, NETWORK_MMAP_THRESHOLD_BYTES)
            _window_depth += 1
    try:
        yield
    finally:
        if active:
            with _window_lock:
                _window_depth -= 1
                if _window_depth == 0:
                    _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                    _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
                    _malloc_trim()
