"""`realtalk-bench cache info [--json] | clear [--kind K]`: what the derived-data cache holds, and emptying it."""
from __future__ import annotations

import argparse
import json

# what each kind holds (kinds are the folders under the cache root; see the make_key calls)
KIND_NOTES = {
    "faces": "ground truth: face track boxes + landmarks per clip",
    "lmdgt": "LMD: ground-truth landmarks on the crops",
    "generated": "generated frames per method fingerprint",
    "coeffs": "RealTalk: 3DMM coefficients per clip",
    "audiotok": "RealTalk: audio features per clip",
}


def _notes() -> dict[str, str]:
    from metrics.feature_cache import KINDS

    return {**KIND_NOTES, **KINDS}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cache", help="inspect or clear the derived-data cache")
    sub = p.add_subparsers(dest="cache_cmd", metavar="ACTION")
    i = sub.add_parser("info", help="entries and size per kind")
    i.add_argument("--json", action="store_true", help="print {kind: {entries, bytes}} as JSON")
    i.set_defaults(func=_info)
    c = sub.add_parser("clear", help="delete cached entries (all, or one kind: evict e.g. gtinception)")
    c.add_argument("--kind", default=None, help="only this kind (e.g. faces, gtinception; see `cache info`)")
    c.set_defaults(func=_clear)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.core.cache import Cache

    cache = Cache()
    info = cache.info()
    if getattr(args, "json", False):
        print(json.dumps(info, sort_keys=True))
        return 0
    notes = _notes()
    t = Table(title=f"cache at {cache.root}")
    t.add_column("kind")
    t.add_column("entries", justify="right")
    t.add_column("MiB", justify="right")
    t.add_column("holds")
    for kind, d in info.items():
        t.add_row(kind, str(d["entries"]), f"{d['bytes'] / 2**20:.2f}", notes.get(kind, ""))
    t.add_row("[bold]total[/bold]", str(sum(d["entries"] for d in info.values())),
              f"{sum(d['bytes'] for d in info.values()) / 2**20:.2f}", "")
    Console().print(t)
    return 0


def _clear(args: argparse.Namespace) -> int:
    from harness.core.cache import Cache

    cache = Cache()
    if args.kind and ("/" in args.kind or "\\" in args.kind or args.kind.startswith(".")):
        print(f"error: bad kind {args.kind!r} (a folder name under {cache.root}, see `cache info`)")
        return 2
    if args.kind and args.kind not in cache.info():
        present = ", ".join(cache.info()) or "none"
        print(f"nothing to remove: no entries of kind {args.kind!r} in {cache.root} (kinds present: {present})")
        return 0
    n = cache.clear(args.kind)
    print(f"removed {n} files from {cache.root / args.kind if args.kind else cache.root}")
    return 0
