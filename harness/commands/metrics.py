"""`realtalk-bench metrics --gen X --gt Y`: every available metric for one generated/ground-truth pair."""
from __future__ import annotations

import argparse
import math
from typing import Any, Iterator

from harness.plugins import add_plugin_argument


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("metrics", help="compute all available metrics for one generated vs ground-truth pair")
    p.add_argument("--gen", nargs="+", help="generated video(s), or folder(s) of frames (png/jpg, sorted); several "
                   "versions of one ground truth are scored in one process (networks loaded once, GT features once)")
    p.add_argument("--gt", help="ground-truth video, or a folder of frames")
    p.add_argument("--audio", help="driving audio (wav); default: the ground truth's audio track if any")
    p.add_argument("--metrics", help="comma-separated metric names (default: all registered)")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N | auto (cuda when a GPU is visible); "
                   "a GPU that is not there exits 2")
    p.add_argument("--prefetch", type=int, default=None, metavar="N",
                   help="with several --gen: decode the next N generated versions in a background thread while one "
                        "is scored (default: 1 on a GPU, 0 on a CPU)")
    p.add_argument("--overlap", choices=["auto", "on", "off"], default="auto",
                   help="run the dlib-bound metrics (CSIM dlib, LMD / AV-sync / mouth_r on dlib landmarks) in one "
                        "worker process while the torch metrics run here; same values (auto: with several --gen or "
                        ">= 50 frames; off: one after the other)")
    p.add_argument("--metric-arg", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="constructor argument for a metric, e.g. lmd.backend=fan (repeatable)")
    p.add_argument("--benchmark", action="store_true", help="print frames/s per metric on the real test clips")
    p.add_argument("action", nargs="?", choices=["list"],
                   help="list: every registered metric (values, direction, needs, availability here and why not)")
    p.add_argument("--json", action="store_true", help="with list: print the rows as JSON")
    add_plugin_argument(p)
    p.set_defaults(func=run)


def _fmt(v: float) -> str:
    return "inf" if math.isinf(v) else ("nan" if math.isnan(v) else f"{v:.4f}")


def run(args: argparse.Namespace) -> int:
    """Warnings about the inputs (corrupt frames held, pair fitted, faces interpolated) print as one line each."""
    import sys
    import warnings

    from harness.devices import EXIT_DEVICE, DeviceError, check_device, full_precision

    try:
        args.device = check_device(args.device)
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEVICE
    full_precision(args.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _run(args)
        finally:
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from harness.core.errors import BenchError
    from harness.plugins import load_plugins

    load_plugins(args.plugin)
    if args.action == "list":
        from harness.listing import metric_rows, print_metrics

        print_metrics(metric_rows(args.device), as_json=args.json)
        return 0
    if args.benchmark:
        from metrics.throughput import main as bench

        return bench(["--frames", str(args.max_frames or 50), "--batch-size", str(args.batch_size)])
    if not args.gen or not args.gt:
        raise BenchError("--gen and --gt are required (or --benchmark)")
    gens = args.gen if isinstance(args.gen, list) else [args.gen]
    return _run_versions(args, gens)


def side_worker(args: argparse.Namespace, versions: int) -> Any:
    """The overlap session of this call (metrics.overlap.SideWorker), or a no-op context with --overlap off."""
    import contextlib

    from metrics.overlap import SideWorker

    if getattr(args, "overlap", "auto") == "off":
        return contextlib.nullcontext(None)
    return SideWorker(versions=versions, force=args.overlap == "on")


def _run_versions(args: argparse.Namespace, gens: list[str]) -> int:
    """Each --gen version's table, in --gen order (worst exit code); see score_versions."""
    names = [n.strip() for n in args.metrics.split(",")] if args.metrics else None
    return max(_print(args, g, audio, res, names) for g, audio, res in score_versions(args, gens))


def score_versions(args: argparse.Namespace, gens: list[str]) -> Iterator[tuple[str, Any, Any]]:
    """(generated path, its driving audio, PairResult) for each --gen version, in order, against one decoded
    ground truth and its face track. With the side worker (--overlap), version k+1 is decoded, cut and its
    torch metrics run while the worker finishes version k's dlib metrics. With --prefetch N (default 1 on a
    GPU) the next N versions are decoded in a background thread. A decode error is raised when its version
    comes up, after the versions before it (tests/benchmarks/test_bench_pipeline.py times this function)."""
    import contextlib

    from harness.core.errors import BenchError
    from harness.core.media import read_audio, read_video_or_frames
    from harness.prefetch import Prefetcher
    from metrics.compute import ground_truth_faces
    from metrics.overlap import SIDE_BACKENDS

    given = getattr(args, "prefetch", None)
    depth = (1 if str(args.device).startswith("cuda") else 0) if given is None else given
    if depth < 0:
        raise BenchError(f"--prefetch {depth}: expected a version count >= 0")
    names = [n.strip() for n in args.metrics.split(",")] if args.metrics else None
    from harness.runner import parse_method_args

    margs = parse_method_args(getattr(args, "metric_arg", None), "--metric-arg", "METRIC")
    stray = sorted(set(margs) - set(names)) if names else []
    if stray:
        raise BenchError(f"--metric-arg for {', '.join(stray)}: not among --metrics")
    gt = read_video_or_frames(args.gt, args.fps, args.max_frames)
    audio_path = args.audio or (args.gt if getattr(gt.info, "has_audio", False) else None)
    audio = read_audio(audio_path) if audio_path else None
    faces = ground_truth_faces(gt)

    def decode(g: str) -> Any:
        return read_video_or_frames(g, args.fps, args.max_frames)

    pending: tuple[str, Any, Any] | None = None
    with contextlib.ExitStack() as stack:
        side = stack.enter_context(side_worker(args, len(gens)))
        if side is not None and len(gens) > 1 and (names is None or set(names) & set(SIDE_BACKENDS)):
            side.start()  # its imports overlap with the first decode
        pf = stack.enter_context(Prefetcher(gens, decode, depth)) if depth and len(gens) > 1 else None
        for g in gens:
            try:
                gen = pf.take(g) if pf is not None else decode(g)
                started = _start(args, g, gen, gt, faces, audio, audio_path, names, margs, side)
            except BaseException:
                if pending is not None:  # the version before this one is scored: show it, then fail
                    yield pending[0], pending[1], pending[2].result()
                raise
            if pending is not None:
                yield pending[0], pending[1], pending[2].result()
            pending = started
        if pending is not None:
            yield pending[0], pending[1], pending[2].result()


def _start(args: argparse.Namespace, gen_path: str, gen: Any, gt: Any, faces: Any, audio: Any, audio_path: Any,
           names: list[str] | None, margs: dict, side: Any) -> tuple[str, Any, Any]:
    """One version cut with the ground truth's track and scored (the side worker's part still running)."""
    from metrics.compute import aligned_pair, fit_audio, start_pair

    pair = aligned_pair(gen, gt, faces)
    if audio is not None:
        audio = fit_audio(audio, len(pair.gt_crops), args.fps, 16000, audio_path, warn=args.max_frames is None)
    return gen_path, audio, start_pair(pair.gen_crops, pair.gt_crops, audio, names, args.batch_size, args.device,
                                       metric_args=margs, gen_full=pair.gen_full, face_boxes=pair.face_boxes,
                                       side=side)


def _print(args: argparse.Namespace, gen_path: str, audio: Any, res: Any, names: list[str] | None) -> int:
    """One version's table; 1 when a metric failed or a metric named in --metrics is missing."""
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{gen_path} vs {args.gt} ({res.n_frames} frames, ground truth's crop track)")
    for col in ("metric", "value", "better", "backend", "weights sha256", "protocol"):
        table.add_column(col)
    from metrics.base import load_all

    reg = load_all()
    for name, vals in res.values.items():
        proto = res.protocols[name]
        for vname, v in vals.items():
            hib = reg[name].higher_is_better.get(vname, True)
            table.add_row(vname, _fmt(v), "-" if hib is None else ("higher" if hib else "lower"), proto.backend,
                          (proto.weights_sha256 or "-")[:12], proto.fingerprint())
    console.print(table)
    for name, extra in res.extra.items():
        if extra.get("frames_excluded"):
            console.print(f"{name}: {extra['frames_excluded']} frame(s) excluded (no landmarks)")
    for name, reason in res.unavailable.items():
        console.print(f"[yellow]unavailable[/] {name}: {reason}")
    for name, err in res.errors.items():
        console.print(f"[red]failed[/] {name}: {err}")
    holes = named_unavailable(res.unavailable, names, audio)
    for name in holes:  # one line each on stderr, as `run` fails on a metric named in --metrics it cannot compute
        print(f"error: metric {name} unavailable: {res.unavailable[name]}", file=sys.stderr)
    return 1 if res.errors or holes else 0


def named_unavailable(unavailable: dict[str, str], names: list[str] | None, audio: Any) -> list[str]:
    """Metrics named in --metrics that were not computed (exit 1, as `run`'s missing_requested), except those
    skipped because the driving audio is silent: `run` skips them per clip too and exits 0 (nothing to sync)."""
    if not names:
        return []  # the default (all registered): what this machine lacks is listed, not an error, as run's 'all'
    from metrics.base import load_all
    from metrics.compute import silent

    reg = load_all()
    quiet = audio is not None and bool(silent(audio))
    return [n for n in names if n in unavailable and not (quiet and "audio" in reg[n].needs
                                                          and unavailable[n].startswith("needs speech"))]
