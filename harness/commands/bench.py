"""`realtalk-bench bench floor`: every network's measured time per frame against its compute floor
(counted FLOPs / this machine's fp32 GEMM rate, measured in the same run). See harness/floor.py.

Exit codes: 0 table printed; 1 with --strict when a network is over its target ratio; 2 usage error
(unknown network name)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

NETWORKS = ("inception", "identity", "syncnet", "lpips", "fan", "realtalk")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: `bench floor` = each network against its FLOP floor")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    f = bsub.add_parser("floor", help="FLOPs/frame, ms/frame, GFLOP/s, GEMM rate and floor ratio per network")
    f.add_argument("--networks", default="all", help=f"'all' or comma-separated of {', '.join(NETWORKS)}")
    f.add_argument("--repeats", type=int, default=3, help="timed calls per network (best is kept; default 3)")
    f.add_argument("--dlib-workers", type=int, default=2,
                   help="also time this many single-threaded dlib processes at once (0/1: off; default 2)")
    f.add_argument("--json", type=Path, help="write the rows as JSON here")
    f.add_argument("--threads", type=int, default=0,
                   help="intra-op threads for the torch networks (and their GEMM rate); 0: torch's default")
    f.add_argument("--strict", action="store_true",
                   help="exit 1 when a network's ratio is over its target (the table's pass column says FAIL)")
    f.set_defaults(func=run_floor)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def run_floor(args: argparse.Namespace) -> int:
    from harness.core.fsutil import atomic_write_json
    from harness.floor import FloorRow, floor_table

    names = None if args.networks == "all" else [n.strip() for n in args.networks.split(",") if n.strip()]
    bad = [n for n in names or [] if n not in NETWORKS]
    problem = (f"unknown network(s) {bad}: choose from {', '.join(NETWORKS)}" if bad else
               f"--repeats {args.repeats} must be >= 1" if args.repeats < 1 else
               f"--threads {args.threads} must be >= 0" if args.threads < 0 else "")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    def progress(r: FloorRow) -> None:
        print(f"measured {r.network}: {r.s_per_frame * 1e3:.1f} ms/frame, ratio {r.ratio:.2f}", file=sys.stderr,
              flush=True)

    rows, text = floor_table(names, repeats=args.repeats, dlib_workers=args.dlib_workers, on_row=progress,
                             threads=args.threads or None)
    print(text)
    if args.json:
        atomic_write_json(args.json, [dict(vars(r), achieved_gflops=r.achieved_gflops, floor_s=r.floor_s,
                                            ratio=r.ratio, verdict=r.verdict) for r in rows])
    return 1 if args.strict and any(r.verdict == "FAIL" for r in rows) else 0
