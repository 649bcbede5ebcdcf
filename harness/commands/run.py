"""`realtalk-bench run`: evaluate methods on a split in both settings into a resumable run store."""
from __future__ import annotations

import argparse
from typing import Any

from harness.executors import EXECUTORS


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="evaluate methods x settings x clips of a split into runs/ID (resumable)")
    add_run_options(p)
    p.set_defaults(func=run)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The run options. Every default is None so that a flag typed on the command line can be told from
    one left out (which a --config file may then set); RunConfig holds the real defaults."""
    p.add_argument("--config", default=None, metavar="RUN.yaml",
                   help="a YAML file of run options (same names as these flags); flags given here override it")
    p.add_argument("--split", help="split name (harness/core/splits/NAME.yaml) or manifest path (required)")
    p.add_argument("--root", help="data root (default: $REALTALK_BENCH_DATA or ../shared/data)")
    p.add_argument("--methods", type=_csv, help="comma-separated method names (required)")
    p.add_argument("--settings", type=_csv,
                   help="reconstruction,cross_audio (default: both; reconstruction only on a split without cross-audio pairs)")
    p.add_argument("--metrics", help="'all' (default) or comma-separated metric names")
    p.add_argument("--out", help="run folder, e.g. runs/ID (rerun the same command to resume; required)")
    p.add_argument("--clips", type=_csv, help="only these clip ids")
    p.add_argument("--role", choices=["test", "train", "all"], help="which clips of the split (default test)")
    p.add_argument("--max-frames", type=int, help="cap each clip at its first N frames (quick runs)")
    p.add_argument("--shard", metavar="I/N",
                   help="evaluate shard I of N (clips sorted by id, every N-th); combine with `realtalk-bench merge`")
    p.add_argument("--executor", choices=list(EXECUTORS),
                   help="local (default): one after another here; processes: a pool of local worker processes; "
                        "ray: Ray tasks")
    p.add_argument("--workers", type=int, help="processes executor: workers (default: all cores, at most 8)")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--num-cpus", type=float, help="CPUs requested per Ray task (one clip; default 1)")
    p.add_argument("--num-gpus", type=float, help="GPUs requested per Ray task (one clip; default 0)")
    p.add_argument("--device", help="metric device: cpu (default) | cuda | cuda:N | auto (cuda when a GPU is visible); "
                                    "a GPU that is not there exits 2")
    p.add_argument("--face-detector", choices=["dlib", "mtcnn", "s3fd"],
                   help="the ground truth's face-tracking detector: dlib (default, HOG, CPU), mtcnn (facenet_pytorch) or "
                        "s3fd (face-alignment; needs its model file, see `realtalk-bench weights`); mtcnn / s3fd run "
                        "on --device; part of the run identity, the metric protocols and the face-track cache key")
    p.add_argument("--prefetch", type=int, metavar="N",
                   help="local executor: prepare the ground truth (decode, face tracking, crops) of the next N clips "
                        "in a background thread while this one is scored (default: 1 on a GPU, 0 on a CPU; "
                        "memory: N more clips' frames + crops; results are the same)")
    p.add_argument("--method-arg", action="append", metavar="METHOD.KEY=VALUE",
                   help="constructor argument for a method, e.g. realtalk.checkpoint=PATH (repeatable)")
    p.add_argument("--metric-arg", action="append", metavar="METRIC.KEY=VALUE",
                   help="constructor argument for a metric, e.g. lmd.backend=fan (repeatable; part of the run identity)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default 0)")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples (default 1000)")
    p.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE.py",
                   help="module (from sys.path or the current directory), MODULE@DIR, or .py file that registers "
                        "methods/metrics (repeatable); installed packages register through entry points")
    p.add_argument("--no-videos", action="store_true", default=None, help="do not write generated videos")
    p.add_argument("--retry-failed", action="store_true", default=None, help="redo clips whose record says failed")
    p.add_argument("--allow-failures", action="store_true", default=None,
                   help="exit 0 even when clips failed (default: exit 1; the finished work is written either way)")
    p.add_argument("--no-progress", action="store_true", default=None)


def cli_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options typed on the command line (None = not given), under the config-file key names."""
    from harness.runner import parse_method_args

    return {
        "split": args.split, "root": args.root, "methods": args.methods, "settings": args.settings,
        "metrics": None if args.metrics is None else ("all" if args.metrics == "all" else _csv(args.metrics)),
        "out": args.out, "clips": args.clips, "role": args.role, "max_frames": args.max_frames, "shard": args.shard,
        "executor": args.executor, "workers": args.workers, "address": args.address, "num_cpus": args.num_cpus,
        "num_gpus": args.num_gpus, "device": args.device,
        "method_args": parse_method_args(args.method_arg) if args.method_arg else None,
        "metric_args": parse_method_args(args.metric_arg, "--metric-arg", "METRIC") if args.metric_arg else None,
        "seed": args.seed, "n_boot": args.n_boot, "plugins": args.plugin, "no_videos": args.no_videos,
        "retry_failed": args.retry_failed, "allow_failures": args.allow_failures, "no_progress": args.no_progress,
        "prefetch": args.prefetch, "face_detector": args.face_detector,
    }


def resolved_options(args: argparse.Namespace) -> dict[str, Any]:
    """--config file options with the command line's flags over them."""
    from harness.run_config import load_run_file, merge_options

    cli = cli_options(args)
    return merge_options(load_run_file(args.config, cli.get("plugins")) if args.config else {}, cli)


def config_from_args(args: argparse.Namespace):
    from harness.run_config import config_from_options

    return config_from_options(resolved_options(args), source=args.config or "the command line")


def run(args: argparse.Namespace) -> int:
    from harness.run_config import config_from_options

    opts = resolved_options(args)
    cfg = config_from_options(opts, source=args.config or "the command line")
    return run_and_report(cfg, bool(opts.get("no_progress")), bool(opts.get("allow_failures")),
                          prefetch=opts.get("prefetch"))


def run_and_report(cfg: Any, no_progress: bool, allow_failures: bool, prefetch: int | None = None) -> int:
    """Run (or resume) cfg, print the tables and return the exit code (shared by `run` and `rerun`).
    2 (one line on stderr) when --device names a GPU this machine does not have, or --face-detector s3fd
    lacks its model file."""
    import sys

    from rich.console import Console

    from harness.core.faces.tracking import TrackingWeightsMissing
    from harness.devices import EXIT_DEVICE, DeviceError
    from harness.runner import render_summary, run_benchmark

    console = Console()
    try:
        summary = run_benchmark(cfg, progress=not no_progress, console=console, prefetch=prefetch)
    except (DeviceError, TrackingWeightsMissing) as exc:  # what this machine lacks for the run asked: exit 2
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEVICE
    render_summary(summary, console)
    console.print(f"run store: {cfg.out} (summary.json, per_clip.csv, clips/, videos/)  wall {summary['wall_s']:.1f} s",
                  highlight=False)
    return failure_exit(summary, allow_failures, console, requested_metrics=cfg.metrics)


def missing_requested(summary: dict, requested_metrics: Any) -> list[str]:
    """Metrics named explicitly (not via 'all') and methods that could not run: a hole the gate must see."""
    holes = [f"method {k}" for k in (summary.get("unavailable_methods") or {})]
    if requested_metrics != "all":
        holes += [f"metric {k}" for k in (summary.get("unavailable") or {}) if k in set(requested_metrics or [])]
    return holes


def failure_exit(summary: dict, allow_failures: bool, console, requested_metrics: Any = "all") -> int:
    """1 when clips failed, or a named metric / a method was unavailable (a run with holes must not pass a CI
    step silently), unless allowed with --allow-failures."""
    n = len(summary.get("failures") or [])
    holes = missing_requested(summary, requested_metrics)
    if not n and not holes:
        return 0
    what = ", ".join(([f"{n} failure(s)"] if n else []) + [f"{h} unavailable" for h in holes])
    if allow_failures:
        console.print(f"{what} allowed (--allow-failures)", highlight=False)
        return 0
    console.print(f"[red]exit 1[/red]: {what} (pass --allow-failures to exit 0)", highlight=False)
    return 1
