"""Latency measurement: warm-up excluded, CUDA events on GPU (synchronised), perf_counter on CPU.

A method exposes its timed regions as `LatencyStage`s (see `stages_for`); this module times them and
reports p50/p95/mean ms per frame, frames/s, peak memory, parameter count and counted FLOPs per frame.
"""
from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class LatencyStage:
    """One timed region. `run(inputs)` is called repeatedly on the same inputs; it processes
    `frames_per_call` frames. `module` (optional) is used for the parameter count."""

    name: str
    make_inputs: Callable[[], Any]
    run: Callable[[Any], Any]
    frames_per_call: int
    module: torch.nn.Module | None = None
    flops_per_call: Callable[[Any], int] | None = None  # override for non-torch stages
    notes: str = ""


@dataclass
class LatencyResult:
    method: str
    stage: str
    device: str
    device_name: str
    dtype: str
    batch: int
    frames_per_call: int
    iterations: int
    warmup: int
    p50_ms_per_frame: float
    p95_ms_per_frame: float
    mean_ms_per_frame: float
    frames_per_s: float
    peak_memory_mb: float | None
    params: int | None
    flops_per_frame: float | None
    compile: bool = False
    cuda_graphs: bool = False
    timer: str = "perf_counter"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cuda_available() -> bool:
    """The GPU probe (one place, so tests can simulate a GPU on a CPU machine)."""
    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else unchanged."""
    if device != "auto":
        return device
    return "cuda" if cuda_available() else "cpu"


def device_name(device: str) -> str:
    """torch.cuda.get_device_name for a GPU (what budget device classes match), a CPU description otherwise."""
    if device.startswith("cuda") and cuda_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()} (torch threads {torch.get_num_threads()})"


def count_params(module: torch.nn.Module | None) -> int | None:
    return None if module is None else sum(p.numel() for p in module.parameters())


def count_flops(fn: Callable[[], Any]) -> int | None:
    """FLOPs of one call (matmul/conv/attention; elementwise ops not counted): harness.core.flops, which also
    counts CPU attention and the fused inference transformer kernels that torch's counter cannot see."""
    from harness.core.flops import count_flops as counted

    return counted(fn)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_peak_rss_mb(fn: Callable[[], Any], interval_s: float = 0.0005) -> float | None:
    """Peak resident memory of the whole process (model, inputs, interpreter) during one call of fn, sampled
    by a thread; torch's CPU allocations are invisible to tracemalloc and reuse warm-up memory, so growth
    alone reads ~0. An upper bound on what the stage needs. None where /proc is absent."""
    import threading

    try:
        gc.collect()
        base = _rss_bytes()
    except (OSError, ValueError):
        fn()
        return None
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval_s)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    peak[0] = max(peak[0], _rss_bytes())
    return peak[0] / 2**20


def _percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def time_stage(
    stage: LatencyStage,
    *,
    method: str,
    device: str = "cpu",
    dtype: str = "fp32",
    batch: int = 1,
    iterations: int = 20,
    warmup: int = 3,
    compile: bool = False,
    cuda_graphs: bool = False,
) -> LatencyResult:
    """Time one stage: `warmup` untimed calls, then `iterations` timed ones (each synchronised on GPU)."""
    inputs = stage.make_inputs()
    on_cuda = device.startswith("cuda")
    with torch.inference_mode():
        flops = stage.flops_per_call(inputs) if stage.flops_per_call else count_flops(lambda: stage.run(inputs))
        for _ in range(warmup):
            stage.run(inputs)
        if on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times_ms: list[float] = []
        for _ in range(iterations):
            if on_cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                stage.run(inputs)
                end.record()
                torch.cuda.synchronize()
                times_ms.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                stage.run(inputs)
                times_ms.append((time.perf_counter() - t0) * 1e3)
        if on_cuda:
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = cpu_peak_rss_mb(lambda: stage.run(inputs))
    per_frame = [t / stage.frames_per_call for t in times_ms]
    mean = statistics.fmean(per_frame)
    return LatencyResult(
        method=method, stage=stage.name, device=device, device_name=device_name(device), dtype=dtype, batch=batch,
        frames_per_call=stage.frames_per_call, iterations=iterations, warmup=warmup,
        p50_ms_per_frame=_percentile(per_frame, 50), p95_ms_per_frame=_percentile(per_frame, 95),
        mean_ms_per_frame=mean, frames_per_s=1000.0 / mean if mean > 0 else float("inf"),
        peak_memory_mb=peak, params=count_params(stage.module),
        flops_per_frame=(flops / stage.frames_per_call) if flops else None,
        compile=compile, cuda_graphs=cuda_graphs, timer="cuda events" if on_cuda else "perf_counter",
        notes=stage.notes + ("" if on_cuda else " (CPU peak memory: process resident set during one untimed call)"),
    )


def reference_op_ms(device: str = "cpu", n: int = 128, iterations: int = 20) -> float:
    """Median time of a fixed conv block in this run: GroupNorm -> LeakyReLU -> 3x3 conv, 32 channels,
    batch 4 at n x n, fp32. It is the yardstick for CPU budgets, which are ratios to it because shared CPUs
    drift. A conv block tracks the renderer under contention and clock changes far better than the 512x512
    matmul used before (measured: the matmul moved 10x between a busy and an idle run, the renderer 2.5x)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, n, n, generator=g).to(device)
    w = (torch.randn(32, 32, 3, 3, generator=g) * 0.05).to(device)

    def block() -> torch.Tensor:
        h = torch.nn.functional.leaky_relu(torch.nn.functional.group_norm(x, 8), 0.2)
        return torch.nn.functional.conv2d(h, w, padding=1)

    with torch.inference_mode():
        for _ in range(3):
            block()
        times = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            block()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


@contextlib.contextmanager
def autocast_for(device: str, dtype: str):
    """bf16/fp16 autocast on the device, nothing for fp32."""
    if dtype == "fp32":
        yield
        return
    with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=DTYPES[dtype]):
        yield
