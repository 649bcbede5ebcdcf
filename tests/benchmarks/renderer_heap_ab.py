"""The CPU renderer stage under the heap states a process can be in (harness.core.heap), one process per state:

- default: glibc's dynamic mmap threshold (a process that never decoded a streamed video; the floor table);
- fixed:   the 1 MB threshold every streamed-video run sets (keep_large_allocations_mapped), no window;
- window:  fixed, the renderer inside network_allocations_on_heap (what realtalk.fast does).

Prints ms/frame (best of 5 calls of 16 frames, one thread) and minor page faults per frame.

    for m in default fixed window; do .venv/bin/python tests/benchmarks/renderer_heap_ab.py $m; done
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def minor_faults() -> int:
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])


def main(mode: str) -> None:
    from harness.core import heap
    from realtalk import fast
    from realtalk.latency_stages import build_networks, realtalk_stages

    torch.set_num_threads(1)
    if mode != "default":
        heap.keep_large_allocations_mapped()
    if mode == "fixed":  # the renderer without its window
        fast.network_allocations_on_heap = contextlib.nullcontext
    a2e, ren, fm, cfg = build_networks("small")
    stage = next(s for s in realtalk_stages(a2e, ren, fm, cfg, batch=16, frames=16) if s.name == "renderer")
    x = stage.make_inputs()
    for _ in range(3):
        stage.run(x)
    times, f0 = [], minor_faults()
    for _ in range(5):
        t = time.perf_counter()
        stage.run(x)
        times.append(time.perf_counter() - t)
    faults = (minor_faults() - f0) / (5 * stage.frames_per_call)
    print(f"{mode:8s} {min(times) * 1000 / stage.frames_per_call:7.1f} ms/frame  {faults:8.0f} minor faults/frame")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "window")
