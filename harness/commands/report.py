"""`realtalk-bench report RUN [RUN ...] --out DIR`: the HTML report + Markdown/LaTeX/CSV tables."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.plugins import add_plugin_argument, load_plugins


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML report, paper-style tables, grids and plots for one or more runs")
    p.add_argument("runs", nargs="+", type=Path, help="run store folders (runs/ID)")
    p.add_argument("--out", type=Path, required=True, help="output folder (index.html, table.md/.tex/.csv, images)")
    p.add_argument("--grid-clips", type=int, default=3, help="clips per setting with a comparison grid")
    p.add_argument("--columns", type=int, default=6, help="frames per grid row")
    p.add_argument("--no-videos", action="store_true", help="skip the side-by-side mp4s")
    add_plugin_argument(p)  # plugin metrics' directions for columns no run recorded
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    load_plugins(args.plugin)
    from reports.html import build_report

    path = build_report(args.runs, args.out, grid_clips=args.grid_clips, columns=args.columns,
                        videos=not args.no_videos)
    print(f"report: {path}")
    print(f"tables: {args.out / 'table.md'}  {args.out / 'table.tex'}  {args.out / 'table.csv'}")
    return 0
