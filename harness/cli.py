"""`realtalk-bench` entry point. Each subcommand lives in its own module under harness/commands/ and
exposes `add_parser(subparsers)`, which registers the sub-parser and sets `func(args) -> int`."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from harness.core.errors import BenchError

# One line per subcommand module (harness/commands/<name>.py).
COMMAND_MODULES: list[str] = [
    "harness.commands.weights",
    "harness.commands.metrics",
    "harness.commands.methods",
    "harness.commands.train",
    "harness.commands.preprocess",
    "harness.commands.splits",
    "harness.commands.cache",
    "harness.commands.doctor",
    "harness.commands.latency",
    "harness.commands.report",
    "harness.commands.face_model",
    "harness.commands.run",
    "harness.commands.rerun",
    "harness.commands.merge",
    "harness.commands.compare",
    "harness.commands.demo",
    "harness.commands.bench",
    "harness.commands.ablation",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtalk-bench",
        description="Evaluate and benchmark audio-driven talking-face generation (RealTalk + baselines).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if not sys.stdout.isatty():  # logs and CI: let rich tables use a readable width instead of 80 columns
        os.environ.setdefault("COLUMNS", "200")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:  # clear one-line errors, no traceback soup
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # full disk, read-only folder, permissions: the file and the reason, one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc} (finished work is kept; fix it and rerun to resume)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
