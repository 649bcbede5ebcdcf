"""`realtalk-bench compare RUN_A RUN_B`: per-value deltas with paired bootstrap CIs; the CI regression gate.

`--format markdown` prints a pull-request comment, `--format json` / `--json FILE` the JSON document.

Exit codes: 0 everything compared and nothing worse beyond tolerance; 1 a regression; 2 usage or input
error (bad folder, unreadable summary, bad tolerance); 3 not comparable (a metric, method or value in one
run only, a protocol change, a different split / clip set / --max-frames / settings, failed clips), unless
relaxed by the matching --allow-* flag."""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare two runs (B against reference A): exit 0 pass, 1 regression, "
                                              "2 input error, 3 not comparable")
    p.add_argument("run_a", help="reference run folder")
    p.add_argument("run_b", help="new run folder")
    p.add_argument("--tolerances", default=None,
                   help="YAML: value_name (or setting/value_name, method/setting/value_name) -> allowed worsening, "
                        "absolute (0.02) or percent ('5%%'); informational values gate only when listed here")
    p.add_argument("--default-tolerance", default="0", help="allowed worsening for values not in the file (default 0)")
    p.add_argument("--methods", default=None, help="only these methods (comma-separated)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the comparison as JSON here (schema: README, "
                                                "'compare --json')")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                   help="stdout: a terminal table (default), GitHub markdown for a pull-request comment, or the "
                        "JSON document; the exit code is the same for all three")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="write the --format output to FILE instead of stdout (e.g. comment.md)")
    p.add_argument("--allow-missing", action="store_true",
                   help="a metric / method / value in one run only is reported, not a reason for exit 3")
    p.add_argument("--allow-protocol-change", action="store_true",
                   help="values made under different protocols are reported (not compared), not a reason for exit 3")
    p.add_argument("--allow-failures", action="store_true",
                   help="failed clips are reported, not a reason for exit 3; per-clip values are compared on the "
                        "clips both runs finished")
    p.add_argument("--strict-protocols", action="store_true",
                   help="deprecated, no effect: a protocol mismatch is exit 3 by default")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Input errors exit 2 here (the CLI maps other commands' BenchError to 1)."""
    from harness.core.errors import BenchError

    try:
        return _run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.compare import Tolerance, compare_runs, load_tolerances, render, to_markdown
    from harness.core.errors import BenchError
    from harness.store import atomic_write_json

    if args.strict_protocols:
        print("note: --strict-protocols is deprecated and has no effect (protocol mismatch is exit 3)", file=sys.stderr)
    try:
        default = Tolerance.parse(args.default_tolerance)
    except ValueError as exc:
        raise BenchError(f"--default-tolerance: {exc}") from None
    for p in (args.run_a, args.run_b):
        if not Path(p).is_dir():
            raise BenchError("not a run folder", Path(p))
    cmp = compare_runs(args.run_a, args.run_b, load_tolerances(args.tolerances), default_tolerance=default,
                       n_boot=args.n_boot, seed=args.seed,
                       methods=[m for m in args.methods.split(",") if m] if args.methods else None,
                       allow_missing=args.allow_missing, allow_protocol_change=args.allow_protocol_change,
                       allow_failures=args.allow_failures)
    if args.format == "table" and not args.output:
        render(cmp)
    else:
        import json

        from harness.core.fsutil import atomic_write_text

        text = {"markdown": to_markdown, "json": lambda c: json.dumps(c.to_dict(), indent=2, default=str) + "\n",
                "table": _plain_table}[args.format](cmp)
        if args.output:
            atomic_write_text(Path(args.output), text)
            print(f"{cmp.verdict()}; {args.format} written to {args.output}")
        else:
            sys.stdout.write(text)
    if args.json:
        atomic_write_json(Path(args.json), cmp.to_dict())
    return cmp.exit_code


def _plain_table(cmp: object) -> str:
    """--format table --output FILE: the terminal table as plain text."""
    import io

    from rich.console import Console

    from harness.compare import render

    buf = io.StringIO()
    render(cmp, Console(file=buf, width=200, color_system=None))
    return buf.getvalue()
