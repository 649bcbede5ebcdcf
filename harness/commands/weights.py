"""`realtalk-bench weights status | fetch [KEY] | import DIR | verify`: the one table of model files."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("weights", help="model files: status, fetch, import, verify")
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    sub.add_parser("status", help="table of every model file: state, pin (sha256 or unpinned), path, sha256, size, "
                                  "license, URL")
    f = sub.add_parser("fetch", help="download from the official URL (connected machines only)")
    f.add_argument("key", nargs="?", help="one weights key (default: every missing fetchable file)")
    i = sub.add_parser("import", help="copy known files (matched by file name) from a folder to their places")
    i.add_argument("dir")
    sub.add_parser("verify", help="exit non-zero if any present file has a bad checksum")
    p.set_defaults(func=run)


def status_rows() -> list[dict[str, str]]:
    """One row per registry entry (what `status` prints)."""
    from harness.core import weights

    rows = []
    for key, w in weights.REGISTRY.items():
        state, path, digest = weights.check(key)
        size = ""
        if path is not None and path.exists():
            size = str(sum(q.stat().st_size for q in path.rglob("*") if q.is_file()) if path.is_dir() else path.stat().st_size)
        rows.append({"key": key, "purpose": w.purpose, "file": w.filename, "state": state,
                     "pin": "pinned" if weights.pinned(key) else "unpinned",
                     "path": str(path) if path else "-", "sha256": digest or "-", "size": size or "-",
                     "license": w.license, "url": w.url or "-", "sha256_source": w.sha256_source or "-"})
    return rows


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.core import weights
    from harness.core.errors import BenchError, WeightsMissingError

    console = Console()
    action = args.weights_command or "status"
    if action == "status":
        table = Table(title="model files (harness/core/weights.py)")
        for col in ("key", "purpose", "file", "state", "pin", "path", "sha256", "size", "license", "url", "sha256 source"):
            table.add_column(col, overflow="fold")
        colour = {"found": "green", "missing": "yellow", "bad checksum": "red", "unverified": "red",
                  "package missing": "yellow"}
        for r in status_rows():
            r = dict(r, state=f"[{colour.get(r['state'], 'white')}]{r['state']}[/]",
                     pin=r["pin"] if r["pin"] == "pinned" else f"[yellow]{r['pin']}[/]")
            table.add_row(*r.values())
        console.print(table)
        return 0
    if action == "verify":
        bad = [r for r in status_rows() if r["state"] in ("bad checksum", "unverified")]
        for r in bad:
            console.print(f"[red]bad checksum[/] {r['key']}: {r['path']} has sha256 {r['sha256']}")
        if not bad:
            console.print("every present model file matches its checksum")
        return 1 if bad else 0
    if action == "import":
        copied = weights.import_from(args.dir)
        for key, dst in copied:
            console.print(f"imported {key} -> {dst}")
        if not copied:
            console.print(f"no known model file names in {args.dir}")
        return 0
    if action == "fetch":
        keys = [args.key] if args.key else [k for k, w in weights.REGISTRY.items()
                                             if weights.check(k)[0] == "missing" and w.url and not w.is_dir and not w.bundled]
        if args.key and args.key not in weights.REGISTRY:
            raise BenchError(f"unknown weights key {args.key!r}; known: {sorted(weights.REGISTRY)}")
        failed = 0
        for key in keys:
            try:
                console.print(f"fetched {key} -> {weights.fetch(key)}")
            except WeightsMissingError as exc:
                failed += 1
                console.print(f"[red]cannot fetch[/] {key}: {exc}")
            except OSError as exc:  # urllib errors are OSErrors: no network here
                failed += 1
                w = weights.REGISTRY[key]
                console.print(f"[red]cannot fetch[/] {key}: download of {w.url} failed ({exc}); this machine may be "
                              f"offline: fetch on a connected machine, then `realtalk-bench weights import DIR`")
        return 1 if failed else 0
    raise BenchError(f"unknown weights action {action!r}")
