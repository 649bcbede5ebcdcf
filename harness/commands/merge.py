"""`realtalk-bench merge SHARD_DIR... --out DIR`: combine `run --shard I/N` stores into one run store."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("merge", help="combine the stores of `run --shard I/N` into one run store")
    p.add_argument("run_dirs", nargs="+", metavar="SHARD_DIR", help="the shards' run folders")
    p.add_argument("--out", required=True, help="the merged run folder (summary equals an unsharded run's)")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when clips failed or shards are missing (default: exit 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.commands.run import failure_exit
    from harness.merge import merge_runs
    from harness.runner import render_summary

    console = Console()
    summary = merge_runs(args.run_dirs, args.out, console=console)
    render_summary(summary, console)
    return failure_exit(summary, args.allow_failures, console)
