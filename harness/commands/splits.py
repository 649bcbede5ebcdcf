"""`realtalk-bench splits list | show NAME | verify NAME [--root DIR] | fetch NAME [--root DIR]`."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("splits", help="list, show, verify or fetch evaluation splits")
    sub = p.add_subparsers(dest="splits_cmd", metavar="ACTION")
    sub.add_parser("list", help="shipped split manifests").set_defaults(func=_list)
    s = sub.add_parser("show", help="clips of a split")
    s.add_argument("name")
    s.add_argument("--root", default=None, help="data root (for splits whose ids come from an official list there)")
    s.set_defaults(func=_show)
    for action, fn, text in (("verify", _verify, "check files exist and match sha256/duration/fps"),
                             ("fetch", _fetch, "download missing files from the pinned URLs (connected machine)")):
        q = sub.add_parser(action, help=text)
        q.add_argument("name")
        q.add_argument("--root", default=None, help="data root (default: $REALTALK_BENCH_DATA, else ../shared/data)")
        if action == "verify":
            q.add_argument("--no-hash", action="store_true", help="skip sha256 (faster)")
        q.set_defaults(func=fn)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _list(args: argparse.Namespace) -> int:
    from harness.splits import list_splits, load_split

    t = Table(title="splits")
    for col in ("name", "clips", "train", "test", "description"):
        t.add_column(col)
    for name in list_splits():
        s = load_split(name)
        t.add_row(name, str(len(s.clips)), str(len(s.by_role("train"))), str(len(s.by_role("test"))),
                  s.description[:80])
    Console().print(t)
    return 0


def _show(args: argparse.Namespace) -> int:
    from harness.errors import ManifestError
    from harness.splits import load_split, materialize

    s = load_split(args.name)
    con = Console()
    if s.pending:
        try:
            materialize(s, args.root)
        except ManifestError as exc:
            con.print(f"[yellow]clips not resolved:[/yellow] {exc}")
    con.print(f"[bold]{s.name}[/bold]: {s.description}\n[bold]selection rule[/bold]: {s.selection_rule}")
    t = Table()
    for col in ("clip_id", "identity", "role", "video", "audio", "frames", "drive_audio"):
        t.add_column(col)
    for c in s.clips:
        fr = f"[{c.frame_range[0]}, {c.frame_range[1]})" if c.frame_range else "all"
        t.add_row(c.clip_id, c.identity, c.role, c.video, c.audio or "(embedded)", fr, c.drive_audio or "")
    con.print(t)
    return 0


def _table(rows, title: str) -> Table:
    t = Table(title=title)
    for col in ("file", "status", "duration", "fps", "problems"):
        t.add_column(col)
    for r in rows:
        t.add_row(r.rel, "[green]ok[/green]" if r.ok else "[red]FAIL[/red]",
                  f"{r.duration:.3f}" if r.duration is not None else "", f"{r.fps:.2f}" if r.fps else "",
                  "; ".join(r.problems))
    return t


def _verify(args: argparse.Namespace) -> int:
    from harness.paths import data_root
    from harness.splits import load_split
    from harness.splits.verify import verify_split

    s = load_split(args.name)
    rows = verify_split(s, args.root, hash_files=not args.no_hash)
    con = Console()
    con.print(_table(rows, f"verify {s.name} at {data_root(args.root)}"))
    bad = [r for r in rows if not r.ok]
    con.print(f"{len(rows) - len(bad)}/{len(rows)} files ok")
    return 1 if bad else 0


def _fetch(args: argparse.Namespace) -> int:
    from harness.splits import load_split
    from harness.splits.verify import fetch_split

    s = load_split(args.name)
    rows = fetch_split(s, args.root)
    Console().print(_table(rows, f"fetch {s.name}"))
    return 0 if all(r.ok for r in rows) else 1
