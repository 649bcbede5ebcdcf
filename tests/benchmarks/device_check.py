"""The GPU checks of issue 14 item 6 + issue 16 item 5 in ONE command (<= ~9 min on an H200), for the next
session that is lent a GPU (default budget 480 s). Prints every figure and writes $OUT/device_check.json (or --out).

  (a) paper-config RealTalk per-stage latency, bf16, at batch 1 and batched, eager and CUDA graphs, through
      the code `realtalk-bench latency` runs (harness.commands.latency.measure -> realtalk.latency_stages),
      against the targets (renderer <= 3 ms/frame at batch 1, >= 1000 frames/s batched, A2E <= 0.5 ms per
      window), and each stage's FLOP-floor ratio (harness.floor.FloorRow: counted FLOPs / the GPU's
      measured bf16 GEMM rate, an 8192^3 matmul, best of 10);
  (b) tests/test_realtalk_fast.py::test_cuda_graph_matches_eager_after_two_references (pytest, on the GPU);
  (c) the metric suite's frames/s on the crops of a few demo test clips with device cuda (every registered
      metric: timed, or listed with why not: missing weights / inputs the shards do not hold), next to
      RealTalk's generation frames/s (the sum of (a)'s stages at the method's GPU batch of 16);
  (d) trains the paper config (A2E then renderer, bf16, DataLoader workers) on the demo shards for the time
      left, validating on the held-out test clips under inference conditions (realtalk.validation);
  (e) when PyAV, dlib and its landmark model are there too: `run --device cuda` on 2 demo clips with (d)'s
      model, generation and per-metric frames/s of the whole harness path (else skipped, saying what is missing).
Each part catches its own failure (one line in the JSON, traceback printed) so one broken part costs only
itself. `--dry-run`: the same code on the CPU at tiny sizes (small config, fp32, 2 iterations; < 3 min),
tested by tests/test_device_check.py.

PREPARE (here, on the CPU, once; the device machine gets only the working tree: no PyPI, no ../shared/data,
no PyAV, no dlib model, 64 MiB a call):
    echo /.devpack/ >> .git/info/exclude
    .venv/bin/python tests/benchmarks/device_check.py --make-pack .devpack     # demo split -> shards -> pack
      (realtalk-bench preprocess of the demo split, first 200 frames per clip (test clips: their 100), then
       realtalk.shard_pack: crops as JPEG q95 (~16 KB a frame), the rest exact; ~30 MiB (20.0 MiB measured
       at --pack-frames 100); prints its size; reuses --shards DIR if given; a few minutes on 2 cores)
RUN (the `run` tool; python3 there is the image's, with torch, numpy, opencv, scipy, scikit-image, yaml,
rich, tqdm, pytest: everything parts (a), (b), (d) import; nothing to install):
    run(command="PYTHONUNBUFFERED=1 python3 tests/benchmarks/device_check.py --pack .devpack 2>&1 | tee $OUT/device_check.log",
        carry=[".devpack"], timeout_s=600)
The full-path half of (c) needs PyAV + dlib-bin wheels for cp312 and shape_predictor_68_face_landmarks.dat
(100 MB: it does not fit a call beside the pack); without them it is skipped with that reason.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

TARGETS = {"renderer_ms_per_frame_b1": 3.0, "renderer_frames_per_s_batched": 1000.0, "a2e_ms_per_window": 0.5}
CUDA_GRAPH_TEST = "tests/test_realtalk_fast.py::test_cuda_graph_matches_eager_after_two_references"


class Clock:
    def __init__(self, budget_s: float):
        self.t0, self.budget = time.monotonic(), float(budget_s)

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _part(results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]], save: Callable[[], None]) -> None:
    t = time.monotonic()
    print(f"\n=== {name} ===", flush=True)
    try:
        results[name] = fn()
    except Exception as exc:  # noqa: BLE001  (one part's failure must not cost the others)
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]}
    results[name]["wall_s"] = round(time.monotonic() - t, 1)
    save()


# ------------------------------------------------------------------------------------------------ (a)
def gemm_gflops(device: str, dtype: str, dry: bool) -> float:
    """Best-of-10 GEMM rate (GFLOP/s): bf16 8192^3 on the GPU; the CPU's fp32 rate (harness.floor) in a dry run."""
    import torch

    if not device.startswith("cuda"):
        from harness.floor import gemm_rate

        return gemm_rate(512 if dry else 2048, repeats=3)
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float32)
    n = 8192
    a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
    for _ in range(3):
        a @ b
    _sync()
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        _sync()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def part_latency(dry: bool, device: str) -> dict[str, Any]:
    from harness.commands.latency import measure
    from harness.floor import FloorRow, format_table
    from realtalk.config import get_config
    from realtalk.fast import window_starts

    config, dtype = ("small", "fp32") if dry else ("paper", "bf16")
    rows_spec = [(1, False), (2, False)] if dry else [(1, False), (1, True), (16, True), (64, False), (64, True),
                                                     (128, True)]
    it, wu = (2, 1) if dry else (50, 5)
    rows: list[dict[str, Any]] = []
    for batch, graphs in rows_spec:
        stages = ["all"] if batch <= 16 else ["a2e", "renderer"]  # mask / paste are CPU-side: batch 16 says it
        res = [r for st in stages for r in measure("realtalk", {"config": config}, st, device=device, batch=batch,
                                                   dtype=dtype, compile=False, cuda_graphs=graphs, iterations=it,
                                                   warmup=wu)]
        for r in res:
            r["cuda_graphs"] = graphs
            rows.append(r)
            print(f"{r['stage']:9s} batch {batch:4d} graphs {graphs!s:5s} p50 {r['p50_ms_per_frame']:9.3f} ms/frame "
                  f"{r['frames_per_s']:10.1f} frames/s  GFLOP/frame "
                  f"{(r['flops_per_frame'] or 0) / 1e9:8.3f}", flush=True)
    a2e = get_config(config).a2e
    frames_per_item = 16  # harness.commands.latency / realtalk_stages default
    n_win = len(window_starts(frames_per_item, a2e.T, a2e.overlap))

    def pick(stage: str, batch: int | None = None) -> list[dict[str, Any]]:
        return [r for r in rows if r["stage"] == stage and (batch is None or r["batch"] == batch)]

    ren_b1 = min(r["p50_ms_per_frame"] for r in pick("renderer", 1))
    ren_batched = max(r["frames_per_s"] for r in pick("renderer") if r["batch"] > 1)
    a2e_win = min(r["p50_ms_per_frame"] * frames_per_item / n_win for r in pick("a2e", 1))
    figures = {"renderer_ms_per_frame_b1": ren_b1, "renderer_frames_per_s_batched": ren_batched,
               "a2e_ms_per_window": a2e_win}
    verdict = {"renderer_ms_per_frame_b1": ren_b1 <= TARGETS["renderer_ms_per_frame_b1"],
               "renderer_frames_per_s_batched": ren_batched >= TARGETS["renderer_frames_per_s_batched"],
               "a2e_ms_per_window": a2e_win <= TARGETS["a2e_ms_per_window"]}
    for k, v in figures.items():
        print(f"target {k}: {v:.3f} vs {TARGETS[k]} -> {'MET' if verdict[k] else 'NOT MET'}"
              f"{'  (dry run: CPU, small config; not the target)' if dry else ''}")
    gemm = gemm_gflops(device, dtype, dry)
    floor_rows = [FloorRow(f"realtalk {r['stage']}{' +graphs' if r['cuda_graphs'] else ''}", r["batch"], 0,
                           float(r["flops_per_frame"]), r["p50_ms_per_frame"] / 1e3, gemm,
                           f"{dtype}, p50 of {it}")
                  for r in rows if r.get("flops_per_frame")]
    print(format_table(floor_rows, f"FLOP floor on {device}: GEMM {gemm:.0f} GFLOP/s ({'bf16 8192^3' if device.startswith('cuda') else 'fp32'})"))
    # generation frames/s of the method's GPU path: its 4 stages at batch 16 with CUDA graphs (CPU: batch 2)
    gb = 2 if dry else 16
    gen_rows = [r for r in rows if r["batch"] == gb and r["cuda_graphs"] == (not dry)]
    gen_ms = sum(r["p50_ms_per_frame"] for r in gen_rows)
    return {"config": config, "dtype": dtype, "device": device, "rows": rows, "figures": figures, "targets": TARGETS,
            "met": verdict, "a2e_windows_per_call_item": n_win, "gemm_gflops": gemm,
            "floor": [dict(vars(f), ratio=f.ratio, floor_s=f.floor_s, achieved_gflops=f.achieved_gflops)
                      for f in floor_rows],
            "generation": {"batch": gb, "cuda_graphs": not dry, "stages": [r["stage"] for r in gen_rows],
                           "ms_per_frame": gen_ms, "frames_per_s": 1e3 / gen_ms if gen_ms else None}}


# ------------------------------------------------------------------------------------------------ (b)
def part_cuda_graph_test(dry: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-rs", CUDA_GRAPH_TEST]
    r = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    tail = (r.stdout + r.stderr)[-3000:]
    print(tail)
    outcome = ("passed" if " passed" in tail and r.returncode == 0 else "skipped" if " skipped" in tail
               else "failed")
    errs = [ln for ln in tail.splitlines() if "max abs error" in ln]
    return {"test": CUDA_GRAPH_TEST, "returncode": r.returncode, "outcome": outcome, "lines": errs}


# ------------------------------------------------------------------------------------------------ (c)
def _metric_names() -> tuple[list[str], dict[str, str]]:
    """Registered metrics, importing each module on its own (one that cannot import is listed, not fatal)."""
    import importlib

    from metrics import METRIC_MODULES
    from metrics.base import REGISTRY

    broken = {}
    for mod in METRIC_MODULES:
        try:
            importlib.import_module(mod)
        except Exception as exc:  # noqa: BLE001
            broken[mod] = f"import failed: {type(exc).__name__}: {exc}"[:200]
    return sorted(REGISTRY), broken


def part_metrics(dry: bool, device: str, data_dir: Path, generation: dict[str, Any] | None) -> dict[str, Any]:
    import numpy as np

    from metrics.base import ClipInput, get_metric
    from realtalk.shards import ShardStore

    store = ShardStore(data_dir, role="test")
    n_clips, n_frames = (1, 8) if dry else (3, 100)
    clips = []
    for i in range(min(n_clips, len(store))):
        gt = np.ascontiguousarray(store[i].crops[:n_frames])
        # "generated": the clip shifted by 2 frames (real faces, a real error for the metrics to measure)
        clips.append(ClipInput(store.ids[i], generated=np.ascontiguousarray(np.roll(gt, 2, axis=0)), ground_truth=gt,
                               identity=gt[0]))
    names, broken = _metric_names()
    out: dict[str, Any] = {"clips": [c.clip_id for c in clips], "frames_per_clip": n_frames, "device": device,
                           "metrics": {}, "import_errors": broken}
    for name in names:
        try:
            m = get_metric(name, device=device)
        except Exception as exc:  # noqa: BLE001
            out["metrics"][name] = {"status": f"not built: {type(exc).__name__}: {exc}"[:200]}
            continue
        try:
            ok, why = m.availability()
        except Exception as exc:  # noqa: BLE001
            ok, why = False, f"availability check failed: {type(exc).__name__}: {exc}"
        needs = set(getattr(m, "needs", ()) or ()) - {"generated", "ground_truth", "identity"}
        if not ok:
            out["metrics"][name] = {"status": f"unavailable: {why}"[:200]}
            continue
        if needs:
            out["metrics"][name] = {"status": f"not timed: needs {sorted(needs)} (not in the shards)"}
            continue
        fn = m.clip_state if m.split_level else m.compute_clip
        try:
            fn(clips[0])  # warm-up: weights to the device, kernels chosen
            _sync()
            t = time.perf_counter()
            for c in clips:
                fn(c)
            _sync()
            dt = time.perf_counter() - t
        except Exception as exc:  # noqa: BLE001
            out["metrics"][name] = {"status": f"failed: {type(exc).__name__}: {exc}"[:200]}
            continue
        frames = sum(len(c.ground_truth) for c in clips)
        out["metrics"][name] = {"status": "timed", "frames": frames, "seconds": dt, "frames_per_s": frames / dt}
    timed = {k: v for k, v in out["metrics"].items() if v["status"] == "timed"}
    suite_s_per_frame = sum(1.0 / v["frames_per_s"] for v in timed.values())
    out["suite_frames_per_s"] = 1.0 / suite_s_per_frame if suite_s_per_frame else None
    out["realtalk_generation"] = generation
    for k, v in out["metrics"].items():
        print(f"{k:14s} " + (f"{v['frames_per_s']:10.1f} frames/s" if v["status"] == "timed" else v["status"]))
    gen_fps = (generation or {}).get("frames_per_s")
    print(f"metric suite (timed metrics in sequence): {out['suite_frames_per_s'] or float('nan'):.1f} frames/s; "
          f"RealTalk generation: {gen_fps or float('nan'):.1f} frames/s")
    return out


def part_full_run(dry: bool, device: str, work: Path) -> dict[str, Any]:
    """`run --device cuda` on 2 demo clips with (d)'s model, when the machine can decode and track."""
    import importlib.util

    from harness.core import weights
    from harness.core.paths import data_root

    def have(mod: str) -> bool:
        try:
            return importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            return False

    missing = [m for m in ("av", "dlib") if not have(m)]
    try:
        landmarks = weights.available("dlib_landmarks68")
    except Exception:  # noqa: BLE001  (the package that holds the file is absent)
        landmarks = False
    if have("dlib") and not landmarks:
        missing.append("dlib_landmarks68 weights")
    if not (data_root() / "styletalk").exists():
        missing.append(f"demo media ({data_root()})")
    ckpts = [work / "a2e" / "a2e.pt", work / "renderer" / "renderer.pt"]
    if not all(p.exists() for p in ckpts):
        missing.append("(d)'s checkpoints")
    if missing:
        print("skipped: missing " + ", ".join(missing))
        return {"status": "skipped: missing " + ", ".join(missing)}
    from harness.runner import RunConfig, run_benchmark
    from realtalk.train import export_combined

    ckpt = export_combined(*ckpts, work / "realtalk.pt")
    out = work / "run"
    cfg = RunConfig(split="demo", out=str(out), methods=["realtalk"], settings=["reconstruction"],
                    clips=["Obama_clip3", "feifeili_clip3"], max_frames=8 if dry else 100, device=device,
                    write_videos=False, n_boot=100,
                    method_args={"realtalk": {"device": device, "checkpoint": str(ckpt)}})
    run_benchmark(cfg, progress=False)
    from harness.record_rates import record_rates

    rates = record_rates(out).get("realtalk")
    if rates is None:
        return {"status": "ran: no realtalk record"}
    fps = {k: r.frames_per_s for k, r in rates.stages.items() if r.frames_per_s}
    for k, v in fps.items():
        print(f"{k:14s} {v:10.1f} frames/s (harness run, {device})")
    return {"status": "ran", "frames_per_s": fps, "records": rates.records, "failed": rates.failed,
            "from_cache": rates.from_cache}


# ------------------------------------------------------------------------------------------------ (d)
def part_train(dry: bool, device: str, data_dir: Path, seconds: float, work: Path, out_dir: Path | None
               ) -> dict[str, Any]:
    import shutil
    from types import SimpleNamespace

    from realtalk.config import get_config
    from realtalk.face_models import load_default_face_model
    from realtalk.shards import ShardStore
    from realtalk.train import train_a2e, train_renderer
    from realtalk.train_config import TrainSettings

    train, val = ShardStore(data_dir, "train"), ShardStore(data_dir, "test")
    idx = train.index
    fm = load_default_face_model()
    feat = SimpleNamespace(dim=idx["audio_dim"], tokens_per_frame=idx["tokens_per_frame"])
    cfg = get_config("small" if dry else "paper").with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_featurizer(feat)
    if dry:
        cfg.train.a2e_batch, cfg.train.renderer_batch = 4, 2
    cfg.train.log_every = 1 if dry else 10
    cfg.train.ckpt_every = 10 ** 9  # only the final checkpoint (a paper renderer checkpoint is ~0.8 GB)
    st = lambda: TrainSettings(device=device, precision="fp32" if dry else "bf16", workers=0 if dry else 6,  # noqa: E731
                               warmup_steps=2 if dry else 200, val_every=0 if dry else 500)
    steps = 2 if dry else 10 ** 7  # dry run: 2 steps whatever the (shared, busy) CPU; GPU: the time left
    shares = {"a2e": 0.3 * seconds, "renderer": 0.7 * seconds}
    res: dict[str, Any] = {"config": cfg.name, "train_clips": train.ids, "held_out": val.ids,
                           "frames": {c: train.n_frames(i) for i, c in enumerate(train.ids)},
                           "crops_codec": idx.get("crops_codec"), "budget_s": shares}
    quiet = dict(progress=False, log=lambda m: print(m, flush=True))
    for stage, fn in (("a2e", train_a2e), ("renderer", train_renderer)):
        kw = {"featurizer_name": idx.get("featurizer", "logmel")} if stage == "a2e" else {"perceptual": True}
        s = fn(cfg, train, fm, work / stage, steps, time_budget=None if dry else shares[stage], settings=st(),
               val_clips=val,
               **quiet, **kw)
        vals = [json.loads(x) for x in (work / stage / f"{stage}_val.jsonl").read_text().splitlines()]
        res[stage] = {"steps": s["steps"], "wall_s": s["wall_s"], "initial_loss": s["initial_loss"],
                      "final_loss": s["final_loss"], "validation": vals}
        print(f"{stage}: {s['steps']} steps in {s['wall_s']:.0f}s, loss {s['initial_loss']:.4f} -> "
              f"{s['final_loss']:.4f}; held-out " + "; ".join(
                  f"step {v['step']}: " + ", ".join(f"{k} {x:.4g}" for k, x in v.items() if k != "step") for v in vals))
        if out_dir is not None:
            for f in (f"{stage}_val.jsonl", f"{stage}_log.csv"):
                if (work / stage / f).exists():
                    shutil.copy(work / stage / f, out_dir / f)
    return res


# ------------------------------------------------------------------------------------------------ pack
def make_pack(args: argparse.Namespace) -> int:
    import tempfile

    from realtalk.audio_features import get_featurizer
    from realtalk.face_models import get_face_model
    from realtalk.shard_pack import pack_bytes, pack_shards
    from realtalk.shards import preprocess_split

    shards = Path(args.shards) if args.shards else Path(tempfile.mkdtemp(prefix="devpack-shards-"))
    index = preprocess_split(args.split, args.root, shards, get_face_model("landmark68"), get_featurizer("logmel"),
                             max_frames=args.pack_frames, log=lambda m: print(m, flush=True))
    if index["failed"]:
        print(f"error: {len(index['failed'])} clip(s) failed: {index['failed']}", file=sys.stderr)
        return 1
    pack_shards(shards, args.make_pack, quality=args.quality, max_frames=args.pack_frames)
    size = pack_bytes(args.make_pack)
    print(f"pack {args.make_pack}: {size / 2 ** 20:.1f} MiB from {shards} (the working tree travels with it: "
          f"keep the two under 64 MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (the test of this script)")
    ap.add_argument("--pack", default=".devpack", help="the pack made by --make-pack (carried to the device)")
    ap.add_argument("--out", default=None, help="JSON + logs folder (default $OUT, else runs/device_check)")
    ap.add_argument("--budget-s", type=float, default=None, help="whole-run budget (default 480; dry run 150)")
    ap.add_argument("--parts", default="a,b,c,d,e", help="which parts (default all)")
    ap.add_argument("--make-pack", default=None, metavar="DIR", help="HERE: preprocess the split and write the pack")
    ap.add_argument("--split", default="demo")
    ap.add_argument("--root", default=None)
    ap.add_argument("--shards", default=None, help="--make-pack: shard folder to (re)use")
    ap.add_argument("--pack-frames", type=int, default=200, help="--make-pack: first frames per clip (default 200)")
    ap.add_argument("--quality", type=int, default=95, help="--make-pack: JPEG quality of the crops")
    args = ap.parse_args(argv)
    if args.make_pack:
        return make_pack(args)

    import torch

    from harness.core.fsutil import atomic_write_json
    from realtalk.shard_pack import unpack_shards

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("error: no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    device = "cpu" if dry else "cuda"
    clock = Clock(args.budget_s or (150.0 if dry else 480.0))
    out_dir = Path(args.out or os.environ.get("OUT") or PROJECT / "runs" / "device_check")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"device_check_{os.getpid()}"
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {"dry_run": dry, "device": torch.cuda.get_device_name(0) if not dry else "cpu",
                               "torch": torch.__version__, "python": sys.version.split()[0], "budget_s": clock.budget}
    save = lambda: atomic_write_json(out_dir / "device_check.json", results)  # noqa: E731
    data_dir = work / "shards"
    t = time.monotonic()
    unpack_shards(args.pack, data_dir)
    results["unpack_s"] = round(time.monotonic() - t, 1)
    if "a" in parts:
        _part(results, "a_latency", lambda: part_latency(dry, device), save)
    if "b" in parts:
        _part(results, "b_cuda_graph_test", lambda: part_cuda_graph_test(dry), save)
    if "c" in parts:
        gen = results.get("a_latency", {}).get("generation")
        _part(results, "c_metrics", lambda: part_metrics(dry, device, data_dir, gen), save)
    if "d" in parts:
        left = clock.left() - (10.0 if dry else 60.0)  # final validation, checkpoints, (e)'s check, the JSON
        print(f"training budget: {left:.0f}s", flush=True)
        _part(results, "d_train", lambda: part_train(dry, device, data_dir, max(left, 5.0), work, out_dir), save)
    if "e" in parts:
        _part(results, "e_full_run", lambda: part_full_run(dry, device, work), save)
    results["total_s"] = round(time.monotonic() - clock.t0, 1)
    save()
    print(f"\nwrote {out_dir / 'device_check.json'} ({results['total_s']}s)")
    return 1 if any("error" in v for v in results.values() if isinstance(v, dict)) else 0


if __name__ == "__main__":
    sys.exit(main())
