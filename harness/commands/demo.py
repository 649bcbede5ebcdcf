"""`realtalk-bench demo` (what `make demo` runs): the demo split's test clips, RealTalk (demo checkpoint)
and the baselines, every available metric, both settings; prints the table and builds the report.
Stages that are not built yet are named and skipped: the demo never crashes on a missing piece."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from harness.executors import EXECUTORS

REFERENCE_METHODS = ("ground_truth", "static_frame", "copy_reference")
LIP_FIGURE_METHODS = ("realtalk", "static_frame", "copy_reference")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="evaluate RealTalk and the baselines on the demo split, then build the report")
    p.add_argument("--root", default=None, help="data root (default: $REALTALK_BENCH_DATA or ../shared/data)")
    p.add_argument("--out", default="runs/demo", help="run folder (rerun to resume; default runs/demo)")
    p.add_argument("--report", default=None, help="report folder (default: <out>/report)")
    p.add_argument("--max-frames", type=int, default=None, help="cap each clip at N frames (quicker)")
    p.add_argument("--executor", default="auto", choices=["auto", *EXECUTORS],
                   help="auto: a pool of worker processes on CPU (the 2-core budget), local on a GPU")
    p.add_argument("--workers", type=int, default=None, help="processes executor: workers (default: all cores, at most 8)")
    p.add_argument("--device", default="auto")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when clips failed")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def plan_methods(console: Any) -> tuple[list[str], dict[str, dict[str, Any]], list[str]]:
    """(methods to run, their arguments, notes on stages not built / skipped)."""
    from harness.core.methods import REGISTRY, load_all

    notes: list[str] = []
    try:
        load_all()
    except Exception as exc:  # noqa: BLE001 - a broken method module is reported, the rest goes on
        notes.append(f"methods registry: a method module failed to import ({type(exc).__name__}: {exc})")
    methods: list[str] = []
    args: dict[str, dict[str, Any]] = {}
    if "realtalk" not in REGISTRY:
        notes.append("realtalk: method not built yet (realtalk/method.py not registered) — skipped")
    else:
        try:
            from realtalk.demo_checkpoint import ensure_demo_checkpoint
        except ImportError as exc:
            notes.append(f"realtalk: demo checkpoint stage not built yet ({exc}) — skipped")
        else:
            try:
                t0 = time.time()
                ckpt = ensure_demo_checkpoint()
                methods.append("realtalk")
                if ckpt is not None:
                    args["realtalk"] = {"checkpoint": str(ckpt)}
                console.print(f"realtalk demo checkpoint: {ckpt} ({time.time() - t0:.0f} s)", highlight=False)
            except Exception as exc:  # noqa: BLE001 - the demo goes on with the baselines
                notes.append(f"realtalk: demo checkpoint failed ({type(exc).__name__}: {exc}) — skipped")
    for name in REFERENCE_METHODS:
        if name in REGISTRY:
            methods.append(name)
        else:
            notes.append(f"{name}: baseline not built yet — skipped")
    from harness.core import weights

    if "wav2lip" in REGISTRY:
        if "wav2lip" in weights.REGISTRY and weights.available("wav2lip"):
            methods.append("wav2lip")
        else:
            notes.append("wav2lip: checkpoint not present (see `realtalk-bench doctor`) — skipped")
    return methods, args, notes


def build_report(run_dir: str, out_dir: str, console: Any) -> str | None:
    try:
        from reports.html import build_report as _build
    except ImportError as exc:
        console.print(f"[yellow]report not built yet[/yellow] (reports.html: {exc})", highlight=False)
        return None
    try:
        path = _build([run_dir], out_dir)
    except Exception as exc:  # noqa: BLE001 - the numbers are already saved
        console.print(f"[red]report failed[/red]: {type(exc).__name__}: {exc}", highlight=False)
        return None
    return str(path)


def print_lip_figures(run_dir: str, methods: list[str], console: Any, candidate: str = "realtalk") -> None:
    """Issue 14's two figures for the demo model, M-LMD and the mouth-opening r, per method with their 95% CI,
    read from the run's own results (harness.demo_figures.run_figures): the numbers of the table above and of
    the report, not a second computation on the stored videos. Nothing to show without the candidate."""
    if candidate not in methods:
        return
    import json

    from harness.demo_figures import format_run_figures, run_figures, targets_line

    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        console.print(f"[red]lip-motion figures[/red]: {run_dir}/summary.json: {exc}", highlight=False)
        return
    figs = run_figures(summary, methods)
    for line in format_run_figures(figs, summary.get("unavailable")):
        console.print(line, highlight=False, markup=False)
    line = targets_line(figs, candidate, [m for m in methods if m != candidate])
    if line:
        console.print(line, highlight=False, markup=False)


def set_aside_other_run(out: "Path", cfg: Any) -> "Path | None":
    """The demo is one fixed recipe: when its folder holds a run of another recipe (an older checkout's
    methods or method arguments), move that folder to <out>-previous-<k> instead of refusing, so `make demo`
    after an upgrade just works and no finished work is lost. Returns where it went (None: nothing moved)."""
    from harness.core.errors import BenchError
    from harness.runner import check_same_run
    from harness.store import RunStore

    if not (out / "run.json").exists():
        return None
    try:
        check_same_run(RunStore(out), cfg)
        return None  # the same recipe: resume it
    except BenchError:
        k = 1
        while out.with_name(f"{out.name}-previous-{k}").exists():
            k += 1
        dest = out.with_name(f"{out.name}-previous-{k}")
        out.rename(dest)
        return dest


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from harness.runner import RunConfig, render_summary, run_benchmark

    console = Console()
    t0 = time.time()
    methods, margs, notes = plan_methods(console)
    for n in notes:
        console.print(f"[yellow]not built yet / skipped[/yellow]: {n}", highlight=False)
    if not methods:
        console.print("[red]no method is available: nothing to evaluate yet[/red]")
        return 1
    executor = args.executor
    if executor == "auto":
        from harness.runner import resolve_device

        executor = "processes" if resolve_device(args.device) == "cpu" else "local"
    cfg = RunConfig(split="demo", out=args.out, methods=methods, root=args.root, metrics="all", role="test",
                    max_frames=args.max_frames, method_args=margs, executor=executor, workers=args.workers,
                    device=args.device)
    moved = set_aside_other_run(Path(args.out), cfg)
    if moved:
        console.print(f"[yellow]{args.out} held an earlier, different demo run: moved to {moved}[/yellow]",
                      highlight=False)
    summary = run_benchmark(cfg, progress=not args.no_progress, console=console)
    render_summary(summary, console)
    print_lip_figures(args.out, [m for m in LIP_FIGURE_METHODS if m in methods], console)
    report = build_report(args.out, args.report or str(Path(args.out) / "report"), console)
    console.print(f"run store: {args.out}", highlight=False)
    if report:
        console.print(f"report: {report}", highlight=False)
    console.print(f"demo finished in {time.time() - t0:.0f} s", highlight=False)
    from harness.commands.run import failure_exit

    return failure_exit(summary, args.allow_failures, console)
