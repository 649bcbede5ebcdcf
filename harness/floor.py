"""How far each network runs from its compute floor (issue 16 item 4), as one printed table.

floor (s/frame) = counted FLOPs per frame / the machine's fp32 GEMM rate, measured in the same run right
before each row (a large square fp32 matmul, best of N, at the row's thread count): the time the network
would take if every FLOP ran at the speed of the best-tuned kernel on this machine. ratio = measured s/frame /
floor; 1.0 is unreachable in practice (im2col, memory traffic, elementwise ops that the counter skips).
FLOPs: torch.utils.flop_counter (harness.core.flops.count_flops: matmul/conv/attention, 2 per MAC, CPU attention
and the fused inference transformer kernels included);
networks that are not torch (dlib) are counted on a torch mirror of their published architecture.
Measured times are the best of `repeats` calls after warm-up: on a shared machine the minimum is the
least-disturbed estimate, and the GEMM rate is taken the same way, so both sides see the same conditions.

cpu ratio (not the target): the same ratio in process CPU seconds (all threads), network and GEMM both: on a
machine shared with other processes the wall clock of a long call counts the time it waited for a core, while
CPU time counts only the time it ran (idle OpenMP threads spinning still count). At one thread on a loaded
machine it is the best estimate of the idle machine's wall ratio.

The roofline side (not the target): MB/frame = the bytes eager torch moves (harness.core.flops.count_bytes:
every kernel reads its inputs and writes its outputs once; composite ops such as instance_norm counted through
their decomposition, the kernels eager runs), mem ms = that over the memory bandwidth measured in the
same run (a large tensor copy, best of N, in CPU time). A network whose mem ms is near or above its floor ms is memory-bound:
its FLOP ratio cannot reach 1 however good the GEMMs are, and only fusing or shrinking activations helps.
roof ms = max(floor ms, mem ms) is that roofline floor and roof ratio = ms/frame over it: printed next to the
FLOP-floor ratio, never instead of it (the pass column judges the FLOP-floor ratio only).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable


TARGET_RATIO = 1.5  # issue 16 item 4: every torch network within 1.5x its FLOP floor on CPU


@dataclass
class FloorRow:
    """One network: FLOPs and best measured seconds per frame at `batch`, against `gemm_gflops`."""

    network: str
    batch: int
    threads: int
    flops_per_frame: float
    s_per_frame: float
    gemm_gflops: float
    note: str = ""
    target: float | None = None  # the ratio to reach (TARGET_RATIO for torch networks); None: no ratio target
    bytes_per_frame: float | None = None  # memory traffic of eager execution (harness.core.flops.count_bytes)
    mem_gbs: float | None = None  # memory bandwidth (GB/s) measured with the row
    cpu_s_per_frame: float | None = None  # best process CPU seconds per frame (all threads)
    gemm_cpu_gflops: float | None = None  # the GEMM rate in process CPU seconds

    @property
    def cpu_ratio(self) -> float | None:
        """CPU seconds per frame over FLOPs / (GEMM FLOPs per CPU second)."""
        if not self.cpu_s_per_frame or not self.gemm_cpu_gflops:
            return None
        return self.cpu_s_per_frame / (self.flops_per_frame / (self.gemm_cpu_gflops * 1e9))

    @property
    def mem_s(self) -> float | None:
        """Seconds per frame to move bytes_per_frame at the measured bandwidth (the roofline's memory side)."""
        if not self.bytes_per_frame or not self.mem_gbs:
            return None
        return self.bytes_per_frame / (self.mem_gbs * 1e9)

    @property
    def roof_s(self) -> float | None:
        """The roofline floor (s/frame): max(FLOP floor, mem_s), the time the frame takes at the GEMM rate
        or at the memory bandwidth, whichever binds; None without a byte count."""
        mem = self.mem_s
        return None if mem is None else max(self.floor_s, mem)

    @property
    def roof_ratio(self) -> float | None:
        """s_per_frame / roof_s (not judged: the target stays on the FLOP-floor ratio)."""
        roof = self.roof_s
        return None if roof is None else self.s_per_frame / roof

    @property
    def achieved_gflops(self) -> float:
        return self.flops_per_frame / self.s_per_frame / 1e9

    @property
    def floor_s(self) -> float:
        """Seconds per frame at the measured GEMM rate."""
        return self.flops_per_frame / (self.gemm_gflops * 1e9)

    @property
    def ratio(self) -> float:
        return self.s_per_frame / self.floor_s

    @property
    def verdict(self) -> str:
        """'pass' when the ratio is within the target, 'FAIL' when not, '-' for rows without a target."""
        if self.target is None:
            return "-"
        return "pass" if self.ratio <= self.target else "FAIL"


def gemm_rate(n: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """Best-of-`repeats` fp32 GFLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs) at `threads` intra-op threads."""
    return gemm_rates(n, repeats, threads)[0]


def gemm_rates(n: int = 2048, repeats: int = 5, threads: int | None = None) -> tuple[float, float]:
    """gemm_rate in wall seconds and in process CPU seconds (GFLOP per CPU second), from the same calls."""
    import torch

    with torch_threads(threads):
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        wall, cpu = best_times(lambda: a @ b, repeats=repeats, warmup=1)  # warm-up: allocates, picks the kernel
    return 2.0 * n ** 3 / wall / 1e9, 2.0 * n ** 3 / cpu / 1e9


def memory_bandwidth(mb: int = 256, repeats: int = 5, threads: int | None = None) -> float:
    """Best-of-`repeats` GB/s of copying an `mb` MB fp32 tensor into another (read + write counted), far
    larger than the caches, at `threads` intra-op threads; per CPU second (time waiting for a core excluded)."""
    import torch

    with torch_threads(threads):
        a = torch.rand(mb * 2 ** 20 // 4)
        b = torch.empty_like(a)
        _, best = best_times(lambda: b.copy_(a), repeats=repeats, warmup=1)  # warm-up: first touch of the pages
    return 2.0 * a.numel() * 4 / best / 1e9


def best_seconds(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of one call of fn over `repeats` calls, after `warmup` untimed calls."""
    return best_times(fn, repeats, warmup)[0]


def best_times(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> tuple[float, float]:
    """(best wall seconds, best process CPU seconds) of one call of fn over `repeats` calls, after `warmup`."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(max(1, repeats)):
        c, t = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


class torch_threads:
    """Context manager: torch intra-op threads set to `n` (None: unchanged), restored on exit."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.old = 0

    def __enter__(self) -> "torch_threads":
        import torch

        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch.set_num_threads(self.old)


def format_table(rows: list[FloorRow], header: str = "") -> str:
    """The printed table: one line per network, ratio = measured / floor, against its target."""
    cols = f"{'network':34s} {'batch':>5s} {'thr':>3s} {'GFLOP/frame':>11s} {'ms/frame':>9s} {'GFLOP/s':>8s} " \
           f"{'GEMM GFLOP/s':>12s} {'floor ms':>9s} {'ratio':>6s} {'target':>6s} {'pass':>4s} " \
           f"{'cpu ratio':>9s} {'MB/frame':>9s} {'mem GB/s':>8s} {'mem ms':>8s} {'roof ms':>8s} {'roof ratio':>10s}  note"
    lines = [header] if header else []
    lines += [cols, "-" * len(cols)]
    for r in rows:
        lines.append(f"{r.network:34s} {r.batch:5d} {r.threads:3d} {r.flops_per_frame / 1e9:11.3f} "
                     f"{r.s_per_frame * 1e3:9.2f} {r.achieved_gflops:8.1f} {r.gemm_gflops:12.1f} "
                     f"{r.floor_s * 1e3:9.2f} {r.ratio:6.2f} {_target(r.target):>6s} {r.verdict:>4s} "
                     f"{_num(r.cpu_ratio, 1, 9, 2)} {_num(r.bytes_per_frame, 1e6, 9, 1)} {_num(r.mem_gbs, 1, 8, 1)} {_num(r.mem_s, 1e-3, 8, 2)}"
                     f" {_num(r.roof_s, 1e-3, 8, 2)} {_num(r.roof_ratio, 1, 10, 2)}"
                     f"  {r.note}")
    judged = [r for r in rows if r.target is not None]
    if judged:
        failed = [r.network for r in judged if r.verdict == "FAIL"]
        lines.append(f"{len(judged) - len(failed)}/{len(judged)} networks within their target"
                     + (f"; over: {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)


def _num(v: float | None, unit: float, width: int, digits: int) -> str:
    return f"{'-':>{width}s}" if v is None else f"{v / unit:{width}.{digits}f}"


def _target(t: float | None) -> str:
    return "-" if t is None else f"<={t:g}"


def machine_line() -> str:
    """CPU, cores and the load average: on a shared machine the reader must see how busy it was."""
    import platform

    import torch

    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), load average {load_average()}")


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def measure_probe(probe: Any, repeats: int = 3, gemm_n: int = 2048) -> FloorRow:
    """Time one harness.floor_networks.Probe (best of `repeats` after a warm-up), then the GEMM rate and the
    memory bandwidth at the same thread count right after it."""
    with torch_threads(probe.threads):
        best, best_cpu = best_times(probe.call, repeats=repeats, warmup=1)
    gemm, gemm_cpu = gemm_rates(gemm_n, repeats=max(3, repeats), threads=probe.threads)
    bytes_call = getattr(probe, "bytes_per_call", None)
    bw = memory_bandwidth(repeats=max(3, repeats), threads=probe.threads) if bytes_call else None
    import torch

    threads = probe.threads or torch.get_num_threads()
    return FloorRow(probe.name, probe.batch, threads, probe.flops_per_call / probe.frames_per_call,
                    best / probe.frames_per_call, gemm, probe.note,
                    TARGET_RATIO if getattr(probe, "torch_network", True) else None,
                    bytes_call / probe.frames_per_call if bytes_call else None, bw,
                    best_cpu / probe.frames_per_call, gemm_cpu)


def floor_table(names: list[str] | None = None, repeats: int = 3, dlib_workers: int = 0,
                gemm_n: int = 2048, on_row: Callable[[FloorRow], Any] | None = None,
                threads: int | None = None) -> tuple[list[FloorRow], str]:
    """Build, time and tabulate every network (or those named). dlib_workers > 1 adds a row for that many
    single-threaded dlib processes embedding at the same time (one per core), against the all-core GEMM rate.
    on_row: called with each row as soon as it is measured (progress on a slow machine).
    threads: intra-op threads of the torch rows (None: torch's default; 1 on a crowded machine, where
    multi-threaded small ops suffer more from other processes than the GEMM does); dlib stays at 1."""
    from harness import floor_networks as fn

    rows: list[FloorRow] = []
    start = machine_line()
    for probe in fn.all_probes(names):
        if threads and probe.threads is None:
            probe.threads = threads
        rows.append(measure_probe(probe, repeats, gemm_n))
        if on_row:
            on_row(rows[-1])
        if dlib_workers > 1 and probe.name.startswith("identity"):
            s, _ = fn.dlib_per_core(dlib_workers, probe.batch, repeats)
            rows.append(FloorRow(f"identity (dlib, {dlib_workers} procs x 1 thr)", probe.batch, dlib_workers,
                                 probe.flops_per_call / probe.frames_per_call, s,
                                 gemm_rate(gemm_n, repeats=max(3, repeats), threads=dlib_workers),
                                 "aggregate of concurrent processes (harness.core.pool)"))
            if on_row:
                on_row(rows[-1])
    header = "\n".join([start, f"load average at the end: {load_average()}",
                        "floor = FLOPs/frame / GEMM rate (fp32 matmul best of N, same threads, measured after each "
                        "row); ratio = ms/frame / floor ms",
                        f"target (issue 16 item 4): ratio <= {TARGET_RATIO:g} for the torch networks on CPU; dlib "
                        "(no BLAS) has none: it runs one single-threaded process per core",
                        "cpu ratio (not judged) = the ratio in process CPU seconds, network and GEMM (waiting for a "
                        "core excluded: the estimate that holds on a loaded machine, at 1 thread)",
                        "roofline (not judged): MB/frame = bytes eager torch reads + writes per frame "
                        "(harness.core.flops.count_bytes), mem ms = MB/frame / mem GB/s (tensor copy per CPU second, "
                        "same threads, measured after each row); mem ms near floor ms = memory-bound",
                        "roof ms (not judged) = max(floor ms, mem ms), the roofline floor; roof ratio = ms/frame / "
                        "roof ms (the target stays on ratio)"])
    return rows, format_table(rows, header)
