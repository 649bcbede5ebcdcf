"""`realtalk-bench splits list | show NAME | verify NAME [--root DIR] | fetch NAME [--root DIR]
| prepare NAME [--root DIR] [--clips a,b] [--max-frames N] [--json PATH]
| make NAME --from-folder DIR [--audio-dir DIR] [--cross-audio rotate|none] [--seed S] --out NAME.yaml`."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from harness.core.splits.prepare import PrepareRow


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("splits", help="list, show, verify, fetch or prepare evaluation splits")
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
    _add_prepare(sub)
    _add_make(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("prepare", help="decode every clip (whole files) and cache its face track, timing each stage")
    q.add_argument("name", help="split name or path to a manifest .yaml")
    q.add_argument("--root", default=None, help="data root (default: $REALTALK_BENCH_DATA, else ../shared/data)")
    q.add_argument("--clips", default=None, help="comma-separated clip ids (default: every clip, train and test)")
    q.add_argument("--max-frames", type=int, default=None, help="only the first N frames at 25 fps of each clip")
    q.add_argument("--json", default=None, help="also write the rows and totals to this JSON file")
    q.set_defaults(func=_prepare)


def _add_make(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("make", help="write a manifest for a folder of your own videos (sha256, duration, fps measured)")
    q.add_argument("name", help="split name written into the manifest")
    q.add_argument("--from-folder", required=True, metavar="DIR", help="folder of videos (searched recursively)")
    q.add_argument("--audio-dir", default=None, metavar="DIR",
                   help="speech files named like the videos (default: each video's own audio track)")
    q.add_argument("--cross-audio", default="rotate", choices=["rotate", "none"],
                   help="rotate: each clip driven by another clip's speech (seeded cycle); none: reconstruction only")
    q.add_argument("--seed", type=int, default=0, help="seed of the cross-audio rotation")
    q.add_argument("--role", default="test", choices=["test", "train"], help="role of every clip")
    q.add_argument("--root", default=None,
                   help="write paths relative to this data root when files lie under it (default: absolute paths)")
    q.add_argument("--out", default=None, help="manifest file to write (default: NAME.yaml here)")
    q.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=_make)


def _make(args: argparse.Namespace) -> int:
    from harness.core.splits.make import make_split, write_manifest

    made = make_split(args.name, args.from_folder, args.audio_dir, args.cross_audio, args.seed, args.role,
                      args.root, progress=not args.no_progress)
    path = write_manifest(made, args.out or f"{args.name}.yaml", args.force)
    clips = made.doc["clips"]
    pairs = sum(1 for c in clips if c["drive_clip"])
    con = Console(highlight=False)
    con.print(f"wrote {path}: {len(clips)} clip(s), role {args.role}, "
              f"{pairs} cross-audio pair(s)" + (f" (rotate, seed {args.seed})" if pairs else ""), markup=False)
    if made.ignored:
        more = f" (+{len(made.ignored) - 5} more)" if len(made.ignored) > 5 else ""
        con.print(f"ignored {len(made.ignored)} non-video file(s): {', '.join(made.ignored[:5])}{more}", markup=False)
    for w in made.warnings:
        con.print(f"warning: {w}", markup=False)
    root = f" --root {args.root}" if args.root else ""
    con.print(f"next: realtalk-bench splits verify {path}{root}; "
              f"realtalk-bench run --split {path}{root} --methods ground_truth,static_frame --out runs/{args.name}",
              markup=False)
    return 0


def _list(args: argparse.Namespace) -> int:
    from harness.core.splits import list_splits, load_split

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
    from harness.core.errors import ManifestError
    from harness.core.splits import load_split, materialize

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
    from harness.core.paths import data_root
    from harness.core.splits import load_split
    from harness.core.splits.verify import verify_split

    s = load_split(args.name)
    rows = verify_split(s, args.root, hash_files=not args.no_hash)
    con = Console()
    con.print(_table(rows, f"verify {s.name} at {data_root(args.root)}"))
    bad = [r for r in rows if not r.ok]
    con.print(f"{len(rows) - len(bad)}/{len(rows)} files ok")
    return 1 if bad else 0


def _fetch(args: argparse.Namespace) -> int:
    from harness.core.splits import load_split
    from harness.core.splits.verify import fetch_split

    s = load_split(args.name)
    rows = fetch_split(s, args.root)
    Console().print(_table(rows, f"fetch {s.name}"))
    return 0 if all(r.ok for r in rows) else 1


def _prepare_table(rows: list[PrepareRow], total: dict[str, Any], title: str) -> Table:
    """One row per clip (failed ones show their error) and a total row with the pass's wall time."""
    from rich.markup import escape

    t = Table(title=title)
    for col in ("clip", "role", "frames@25", "decode s", "face s", "cached", "error"):
        t.add_column(col, justify="right" if col in ("frames@25", "decode s", "face s") else "left")

    def num(v: float | int | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for r in rows:
        cached = "" if r.cached is None else ("yes" if r.cached else "no")
        t.add_row(r.clip_id, r.role, num(r.frames, "d"), num(r.decode_s, ".2f"), num(r.face_s, ".2f"), cached,
                  f"[red]{escape(r.error)}[/red]" if r.error else "", end_section=r is rows[-1])
    t.add_row(f"total ({total['clips'] - total['failed']}/{total['clips']} ok)", "", str(total["frames"]),
              f"{total['decode_s']:.2f}", f"{total['face_s']:.2f}", f"{total['cached']}/{total['clips']}",
              f"wall {total['wall_s']:.2f} s")
    return t


def _prepare(args: argparse.Namespace) -> int:
    """Exit 1 when any clip failed, after every clip was tried and the table (and JSON) written."""
    import time

    from harness.core.errors import BenchError
    from harness.core.fsutil import atomic_write_json
    from harness.core.paths import data_root
    from harness.core.splits import load_split, materialize
    from harness.core.splits.prepare import FPS, SAMPLE_RATE, prepare_split, select_clips, totals

    if args.max_frames is not None and args.max_frames < 1:
        raise BenchError(f"--max-frames must be >= 1, got {args.max_frames}")
    s = materialize(load_split(args.name), args.root)
    clips = select_clips(s, None if args.clips is None else [c.strip() for c in args.clips.split(",")])
    t0 = time.perf_counter()
    rows = prepare_split(clips, args.root, args.max_frames)
    total = totals(rows, time.perf_counter() - t0)
    root = data_root(args.root)
    Console().print(_prepare_table(rows, total, f"prepare {s.name} at {root}"))
    if args.json:
        atomic_write_json(args.json, {"split": s.name, "root": str(root), "fps": FPS, "sample_rate": SAMPLE_RATE,
                                      "max_frames": args.max_frames, "rows": [r.to_dict() for r in rows],
                                      "total": total})
    return 1 if total["failed"] else 0
