"""`realtalk-bench latency`: per-method, per-stage latency; `--check budgets.yaml` gates CI.

Exit codes: 0 measured (with --check: every budget of this device's class met); 1 --check: a budget exceeded;
2 usage or input error (bad budget file, unknown method / stage, --device cuda without a GPU, a plugin that
fails to load); 3 --check: this device matches no device class of the budget file, or its class has no
budgets, so nothing could be vouched for (--allow-unknown-device turns that into 0, with a note)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.core.errors import BenchError
from harness.plugins import add_plugin_argument, load_plugins

EXIT_OK, EXIT_OVER_BUDGET, EXIT_INPUT, EXIT_UNKNOWN_DEVICE = 0, 1, 2, 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="per-stage latency of a method (p50/p95 ms per frame, fps, memory, FLOPs)")
    p.add_argument("--method", default="realtalk")
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for the method (e.g. config=paper, checkpoint=PATH)")
    p.add_argument("--stage", default="all", help="a2e|mask|renderer|paste|all (method-specific names)")
    p.add_argument("--device", default="auto", help="auto (default: cuda when a GPU is visible, else cpu) | cpu | "
                                                    "cuda | cuda:N")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=16, help="frames per timed call for windowed stages")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--cuda-graphs", action="store_true", help="capture CUDA graphs (GPU only)")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", type=Path, help="write results as JSON here")
    p.add_argument("--run", type=Path, help="add the results to this run store (summary.json 'latency')")
    p.add_argument("--check", type=Path, metavar="BUDGETS.yaml",
                   help="time every budget of this device's class; exit 1 if one is over, 3 if no class matches")
    p.add_argument("--allow-unknown-device", action="store_true",
                   help="with --check: a device that matches no budget device class (or a class without budgets) "
                        "exits 0 with a note instead of 3")
    add_plugin_argument(p)  # a plugin method with latency_stages() is timed like a built-in one
    p.set_defaults(func=run)


def parse_method_args(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise BenchError(f"--method-arg {item!r} is not KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.split(".")[-1]] = v
    return out


def measure(method_name: str, method_kwargs: dict[str, Any], stage: str, **opts: Any) -> list[dict[str, Any]]:
    """Time the method's stages (all, or the one named) and return result dicts."""
    from harness.core.latency import time_stage
    from harness.core.methods import get_method

    method = get_method(method_name, **method_kwargs)
    stages = method.latency_stages(
        device=opts["device"], batch=opts["batch"], dtype=opts["dtype"], compile=opts["compile"],
        cuda_graphs=opts["cuda_graphs"],
    )
    chosen = [s for s in stages if stage in ("all", s.name)]
    if not chosen:
        raise BenchError(f"method {method_name!r} has no stage {stage!r}; it has {[s.name for s in stages]}")
    results = []
    for s in chosen:
        r = time_stage(s, method=method_name, device=opts["device"], dtype=opts["dtype"], batch=opts["batch"],
                       iterations=opts["iterations"], warmup=opts["warmup"], compile=opts["compile"],
                       cuda_graphs=opts["cuda_graphs"])
        results.append(r.to_dict())
    return results


def print_table(results: list[dict[str, Any]], title: str = "latency") -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("method", "stage", "device", "dtype", "batch", "p50 ms/frame", "p95 ms/frame", "mean ms/frame",
                "frames/s", "peak MB", "params", "GFLOP/frame"):
        t.add_column(col, justify="right" if col not in ("method", "stage", "device", "dtype") else "left")
    for r in results:
        t.add_row(r["method"], r["stage"], r["device"], r["dtype"], str(r["batch"]), f"{r['p50_ms_per_frame']:.3f}",
                  f"{r['p95_ms_per_frame']:.3f}", f"{r['mean_ms_per_frame']:.3f}", f"{r['frames_per_s']:.1f}",
                  "—" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.1f}",
                  "—" if r["params"] is None else f"{r['params']:,}",
                  "—" if r["flops_per_frame"] is None else f"{r['flops_per_frame'] / 1e9:.3f}")
    Console().print(t)


def add_to_run(run_dir: Path, results: list[dict[str, Any]]) -> None:
    """Merge results into runs/ID/latency.json and summary.json['latency'] (atomic replace)."""
    from harness.core.fsutil import atomic_write_json

    lat_path = run_dir / "latency.json"
    current: dict[str, Any] = json.loads(lat_path.read_text()) if lat_path.exists() else {}
    for r in results:
        current.setdefault(r["method"], {})[r["stage"]] = r
    atomic_write_json(lat_path, current)
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        summary["latency"] = current
        atomic_write_json(summary_path, summary)


def check_budgets(path: Path, args: argparse.Namespace) -> int:
    from harness.budgets import load_budgets
    from harness.core.latency import device_name, reference_op_ms

    budgets = load_budgets(path)
    name = device_name(args.device)
    cls = budgets.device_class(args.device, name)
    classes = ", ".join(f"{k} (match {v!r})" for k, v in budgets.device_classes.items())
    problem = None
    if cls is None:
        problem = (f"device {args.device} is {name!r}, which matches no device class in {path} ({classes}); "
                   "add a class whose match is a substring of that name, with budgets for it")
    elif not any(b.device_class == cls for b in budgets.budgets):
        problem = f"device {args.device} ({name!r}) is device class {cls!r}, which has no budgets in {path}"
    if problem:
        if args.allow_unknown_device:
            print(f"note: {problem}; nothing checked (--allow-unknown-device)")
            return 0
        print(f"error: {problem}; nothing checked (exit 3; --allow-unknown-device to pass)", file=sys.stderr)
        return EXIT_UNKNOWN_DEVICE
    print(f"device class {cls!r} ({args.device}: {name}); reference op: conv block (harness.core.latency.reference_op_ms), "
          f"timed just before and after each stage")
    ref_all: list[float] = []
    failed = 0
    rows = []
    for b in budgets.budgets:
        if b.device_class != cls:
            continue
        opts = dict(device=args.device, batch=b.batch, dtype=b.dtype, compile=args.compile,
                    cuda_graphs=args.cuda_graphs, iterations=args.iterations, warmup=args.warmup)
        # the budget's own method_args (e.g. config: paper) win over --method-arg: the limit is for them
        method_kwargs = {**parse_method_args(args.method_arg), **(b.method_args or {})}
        ref_before = reference_op_ms(args.device) if b.ratio is not None else None
        res = measure(b.method, method_kwargs, b.stage, **opts)[0]
        # the machine's speed right around this stage: a shared CPU drifts within one run
        ref_ms = 0.5 * (ref_before + reference_op_ms(args.device)) if ref_before is not None else None
        if ref_ms is not None:
            ref_all.append(ref_ms)
            res["reference_op_ms"] = ref_ms
        limit = b.limit_ms(ref_ms)
        ok = res["p50_ms_per_frame"] <= limit
        failed += not ok
        res["budget_ms_per_frame"] = limit
        res["budget_ok"] = ok
        rows.append(res)
        how = f"{b.ratio} x ref {ref_ms:.2f} ms" if ref_ms is not None else "absolute"
        res["method_args"] = b.method_args or {}
        margs = "".join(f" {k}={v}" for k, v in (b.method_args or {}).items())
        print(f"{'OK  ' if ok else 'OVER'} {b.method}{margs}/{b.stage} batch {b.batch} {b.dtype}: "
              f"p50 {res['p50_ms_per_frame']:.3f} ms/frame, budget {limit:.3f} ms ({how})")
    if args.json:
        args.json.write_text(json.dumps({"device_class": cls, "device": args.device, "device_name": name,
                                         "reference_op_ms": ref_all, "results": rows}, indent=2))
    return EXIT_OVER_BUDGET if failed else EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Input errors exit 2 here (the CLI maps BenchError to 1, which --check reserves for 'over budget')."""
    try:
        return _run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT


def _run(args: argparse.Namespace) -> int:
    from harness.core.latency import cuda_available, resolve_device

    load_plugins(args.plugin)
    args.device = resolve_device(args.device)
    if args.cuda_graphs and not args.device.startswith("cuda"):
        raise BenchError("--cuda-graphs needs --device cuda")
    if args.device.startswith("cuda") and not cuda_available():
        raise BenchError("--device cuda but no CUDA device is visible (torch.cuda.is_available() is False)")
    if args.check:
        return check_budgets(args.check, args)
    opts = dict(device=args.device, batch=args.batch, dtype=args.dtype, compile=args.compile,
                cuda_graphs=args.cuda_graphs, iterations=args.iterations, warmup=args.warmup)
    results = measure(args.method, parse_method_args(args.method_arg), args.stage, **opts)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    if args.run:
        add_to_run(args.run, results)
    return 0
