"""harness.core.heap: a process that fixed glibc's mmap threshold (every streamed-video run) mmaps and
page-faults each big activation afresh; inside network_allocations_on_heap the same allocations reuse heap
pages. Counted in minor page faults (the kernel's own count, /proc/self/stat), in a fresh process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import torch
from harness.core import heap

def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])  # minflt

def touch(n):  # n fresh 8 MB tensors, each written (as a network's activations are) and freed
    for _ in range(n):
        torch.ones(2 * 1024 * 1024).add_(1)

assert heap.keep_large_allocations_mapped()
touch(2)
f0 = faults(); touch(20); outside = faults() - f0
with heap.network_allocations_on_heap():
    with heap.network_allocations_on_heap():  # nested: the inner exit must not restore the threshold
        touch(2)
    f0 = faults(); touch(20); inside = faults() - f0
f0 = faults(); touch(20); after = faults() - f0
print(outside, inside, after)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc/self/stat")
def test_network_window_reuses_heap_pages_and_restores_the_threshold():
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    outside, inside, after = map(int, res.stdout.split())
    # outside: each fresh 8 MB block is mmapped, so each faults at least once (2048 times with 4 KB pages);
    # after the window the heap was handed back (malloc_trim), so blocks are fresh pages again
    assert outside >= 20 and after >= 20
    assert inside * 10 <= outside and inside * 10 <= after, (outside, inside, after)


def test_window_raises_then_restores_the_threshold_once_when_nested(monkeypatch):
    """mallopt calls, in order: trim threshold and mmap threshold up on the outer entry, both back (and the free
    heap trimmed) on the outer exit only; the inner exit leaves them raised."""
    from harness.core import heap

    calls = []
    monkeypatch.setattr(heap, "_mallopt", lambda p, v: calls.append((p, v)) or True)
    monkeypatch.setattr(heap, "_malloc_trim", lambda: calls.append("trim"))
    monkeypatch.setattr(heap, "_malloc_fixed", True)
    up = [(heap._M_TRIM_THRESHOLD, heap.HEAP_KEEP_BYTES), (heap._M_MMAP_THRESHOLD, heap.NETWORK_MMAP_THRESHOLD_BYTES)]
    down = [(heap._M_MMAP_THRESHOLD, heap.MMAP_THRESHOLD_BYTES), (heap._M_TRIM_THRESHOLD, heap.TRIM_THRESHOLD_BYTES),
            "trim"]
    with heap.network_allocations_on_heap():
        with heap.network_allocations_on_heap():
            pass
        assert calls == up
    assert calls == up + down
    with heap.network_allocations_on_heap():
        pass
    assert calls == (up + down) * 2 and heap._window_depth == 0


def test_window_is_a_no_op_until_the_threshold_is_fixed():
    """A process that never fixed the threshold keeps glibc's dynamic one: the window changes nothing."""
    code = ("from harness.core import heap\n"
            "with heap.network_allocations_on_heap():\n"
            "    assert heap._window_depth == 0\n"
            "print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
