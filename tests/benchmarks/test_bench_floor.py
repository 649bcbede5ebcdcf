"""Every network against its compute floor (issue 16 item 4; harness/floor.py): prints the table of FLOPs per
frame, ms per frame, GFLOP/s, this run's GEMM rate, the floor ratio, the target (<= 1.5 for torch networks) and
pass/FAIL. `make bench` (--benchmark-enable):
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
    judged = [r for r in rows if "alternative" not in r.note and not r.network.startswith("identity")]
    assert judged and all(r.verdict in ("pass", "FAIL") for r in judged)  # every torch network the harness runs
    names = {r.network.split()[0] for r in rows}
    assert names >= ({"inception", "identity", "syncnet", "lpips", "fan", "realtalk"} if full else {"syncnet"})
