"""Every network against its compute floor (issue 16 item 4; harness/floor.py): prints the table of FLOPs per
frame, ms per frame, GFLOP/s, this run's GEMM rate and the floor ratio. `make bench` (--benchmark-enable):
all networks, best of 3, plus dlib one process per core. With the default --benchmark-disable: the SyncNet rows
only, once, so `make test` exercises the code path cheaply. Timings are printed, never asserted.
Same table from the CLI: `realtalk-bench bench floor`."""
from __future__ import annotations

import math

from harness.floor import floor_table


def test_bench_floor(benchmark):
    full = not benchmark.disabled
    kw = dict(names=None, repeats=3, dlib_workers=2) if full else dict(names=["syncnet"], repeats=1, dlib_workers=0)
    result = {}

    def run() -> None:
        result["rows"], result["text"] = floor_table(**kw)

    benchmark.pedantic(run, rounds=1, iterations=1)
    print("\n" + result["text"])
    rows = result["rows"]
    assert rows and all(math.isfinite(r.ratio) and r.ratio > 0 and r.flops_per_frame > 0 for r in rows)
    names = {r.network.split()[0] for r in rows}
    assert names >= ({"inception", "identity", "syncnet", "lpips", "fan", "realtalk"} if full else {"syncnet"})
