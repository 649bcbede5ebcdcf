"""The GPU path, end to end, for a session that is lent a GPU (issue 16 item 5): one short script.

    .venv/bin/python tests/benchmarks/gpu_path.py [--split demo] [--max-frames 100] [--methods ground_truth,static_frame]

1. `run --device cuda` twice, --prefetch 0 and 1, cold ground-truth cache each time: wall seconds of each, and
   summary.json / per_clip.csv byte-identical (exit 1 if not).
2. Per method: generation ms/frame and metric-suite ms/frame (sum of the records' metric timings over frames),
   so "the metric suite costs less per frame than generating the frame" can be read off.
3. The same clips on the CPU (first --cpu-clips clips, --cpu-frames frames): per value the largest |GPU - CPU|,
   printed (not asserted: the tolerance belongs to tolerances.yaml once measured).
Prints one table; no timing is asserted. Exit 2 when no GPU is visible.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))


def _run(folder: Path, prefetch: int, device: str, **kw) -> tuple[dict, float]:
    from harness.runner import RunConfig, run_benchmark

    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    t0 = time.perf_counter()
    s = run_benchmark(RunConfig(out="run", device=device, n_boot=100, **kw), progress=False, prefetch=prefetch)
    return s, time.perf_counter() - t0


def _per_frame(run: Path) -> dict[str, dict[str, float]]:
    """method -> {generate_ms, metrics_ms} per frame over its fresh records (harness.record_rates)."""
    from harness.record_rates import GENERATE, SUITE, record_rates

    return {m: {"generate_ms_per_frame": r.stage(GENERATE).ms_per_frame, "metrics_ms_per_frame":
                r.stage(SUITE).ms_per_frame, "frames": r.stage(GENERATE).frames, "from_cache": r.from_cache,
                "failed": r.failed}
            for m, r in sorted(record_rates(run).items())}


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _values(run: Path) -> dict[tuple, float]:
    with open(run / "per_clip.csv") as f:
        return {(r["method"], r["setting"], r["clip_id"], r["metric"], r["value_name"]): float(r["value"] or "nan")
                for r in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="demo")
    ap.add_argument("--methods", default="ground_truth,static_frame")
    ap.add_argument("--metrics", default="all")
    ap.add_argument("--max-frames", type=int, default=100)
    ap.add_argument("--cpu-clips", type=int, default=1)
    ap.add_argument("--cpu-frames", type=int, default=25)
    ap.add_argument("--out", default="/tmp/rtb-gpu-path")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device visible", file=sys.stderr)
        return 2
    os.environ["REALTALK_BENCH_NO_CACHE"] = "1"  # cold: every run decodes, tracks and embeds the ground truth
    base = dict(split=args.split, methods=args.methods.split(","),
                metrics="all" if args.metrics == "all" else args.metrics.split(","), max_frames=args.max_frames)
    out = Path(args.out)
    print(f"device: {torch.cuda.get_device_name(0)}; split {args.split}, {args.max_frames} frames/clip")
    runs, walls = {}, {}
    for n in (0, 1):
        s, wall = _run(out / f"gpu-p{n}", n, "cuda", **base)
        runs[n], walls[n] = out / f"gpu-p{n}" / "run", wall
        print(f"cuda --prefetch {n}: wall {wall:.1f} s, {len(s['failures'])} failure(s); devices {s['devices']['metrics']}")
    same = all((runs[0] / f).read_bytes() == (runs[1] / f).read_bytes() for f in ("summary.json", "per_clip.csv"))
    print(f"prefetch 1 vs 0: summary.json + per_clip.csv byte-identical: {same}; wall ratio {walls[0] / walls[1]:.2f}x")
    for m, d in _per_frame(runs[1]).items():
        print(f"  {m:>14}: generate {_ms(d['generate_ms_per_frame'])} ms/frame, metric suite "
              f"{_ms(d['metrics_ms_per_frame'])} ms/frame ({d['frames']} frames; {d['from_cache']} from the cache, "
              f"{d['failed']} failed)")
    from harness.runner import RunConfig, select_clips

    _, chosen, _ = select_clips(RunConfig(out="x", **base))
    cpu_base = {**base, "clips": [c.clip_id for c in chosen[:args.cpu_clips]], "max_frames": args.cpu_frames}
    _run(out / "cpu", 0, "cpu", **cpu_base)
    _run(out / "gpu-small", 0, "cuda", **cpu_base)
    a, b = _values(out / "cpu" / "run"), _values(out / "gpu-small" / "run")
    worst: dict[str, float] = {}
    for k in a.keys() & b.keys():
        both_nan = a[k] != a[k] and b[k] != b[k]
        diff = 0.0 if a[k] == b[k] or both_nan else abs(a[k] - b[k])  # nan on one side only: nan, shown
        name = f"{k[3]}:{k[4]}"
        prev = worst.get(name, 0.0)
        worst[name] = diff if diff != diff or prev != prev else max(prev, diff)  # a one-sided nan sticks
    for name, d in sorted(worst.items()):
        print(f"  cpu vs cuda {name:>22}: max |diff| {d:.3g}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
