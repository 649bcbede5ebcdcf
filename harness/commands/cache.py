"""`realtalk-bench cache info | clear [--kind K]`: what the derived-data cache holds, and emptying it."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cache", help="inspect or clear the derived-data cache")
    sub = p.add_subparsers(dest="cache_cmd", metavar="ACTION")
    sub.add_parser("info", help="entries and size per kind").set_defaults(func=_info)
    c = sub.add_parser("clear", help="delete cached entries")
    c.add_argument("--kind", default=None, help="only this kind (e.g. faces, coeffs)")
    c.set_defaults(func=_clear)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _info(args: argparse.Namespace) -> int:
    from harness.cache import Cache

    cache = Cache()
    info = cache.info()
    t = Table(title=f"cache at {cache.root}")
    t.add_column("kind")
    t.add_column("entries", justify="right")
    t.add_column("MiB", justify="right")
    for kind, d in info.items():
        t.add_row(kind, str(d["entries"]), f"{d['bytes'] / 2**20:.1f}")
    t.add_row("[bold]total[/bold]", str(sum(d["entries"] for d in info.values())),
              f"{sum(d['bytes'] for d in info.values()) / 2**20:.1f}")
    Console().print(t)
    return 0


def _clear(args: argparse.Namespace) -> int:
    from harness.cache import Cache

    cache = Cache()
    if args.kind and ("/" in args.kind or args.kind.startswith(".")):
        print(f"error: bad kind {args.kind!r}")
        return 2
    n = cache.clear(args.kind)
    print(f"removed {n} files from {cache.root / args.kind if args.kind else cache.root}")
    return 0
