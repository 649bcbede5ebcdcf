"""`realtalk-bench compare RUN_A RUN_B`: per-value deltas with paired bootstrap CIs; the CI regression gate."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare two runs (B against reference A); exit 1 if B is worse beyond tolerance")
    p.add_argument("run_a", help="reference run folder")
    p.add_argument("run_b", help="new run folder")
    p.add_argument("--tolerances", default=None,
                   help="YAML: value_name (or setting/value_name, method/setting/value_name) -> allowed worsening, "
                        "absolute (0.02) or percent ('5%%')")
    p.add_argument("--default-tolerance", default="0", help="allowed worsening for values not in the file (default 0)")
    p.add_argument("--methods", default=None, help="only these methods (comma-separated)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the comparison as JSON here")
    p.add_argument("--strict-protocols", action="store_true",
                   help="exit 2 when some values could not be compared because their protocols differ")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.compare import Tolerance, compare_runs, load_tolerances, render
    from harness.errors import BenchError
    from harness.store import atomic_write_json

    try:
        default = Tolerance.parse(args.default_tolerance)
    except ValueError as exc:
        raise BenchError(f"--default-tolerance: {exc}") from None
    cmp = compare_runs(args.run_a, args.run_b, load_tolerances(args.tolerances), default_tolerance=default,
                       n_boot=args.n_boot, seed=args.seed,
                       methods=[m for m in args.methods.split(",") if m] if args.methods else None)
    render(cmp)
    if args.json:
        from pathlib import Path

        atomic_write_json(Path(args.json), cmp.to_dict())
    if cmp.failed:
        return 1
    if args.strict_protocols and cmp.refused:
        return 2
    return 0
