"""How far each network runs from its compute floor (issue 16 item 4), as one printed table.

floor (s/frame) = counted FLOPs per frame / the machine's fp32 GEMM rate, measured in the same run right
before each row (a large square fp32 matmul, best of N, at the row's thread count): the time the network
would take if every FLOP ran at the speed of the best-tuned kernel on this machine. ratio = measured s/frame /
floor; 1.0 is unreachable in practice (im2col, memory traffic, elementwise ops that the counter skips).
FLOPs: torch.utils.flop_counter (harness.core.latency.count_flops: matmul/conv/attention, 2 per MAC);
networks that are not torch (dlib) are counted on a torch mirror of their published architecture.
Measured times are the best of `repeats` calls after warm-up: on a shared machine the minimum is the
least-disturbed estimate, and the GEMM rate is taken the same way, so both sides see the same conditions.
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
    import torch

    with torch_threads(threads):
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        a @ b  # warm-up: first call allocates and picks the kernel
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_seconds(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of one call of fn over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return min(_timed(fn) for _ in range(max(1, repeats)))


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
           f"{'GEMM GFLOP/s':>12s} {'floor ms':>9s} {'ratio':>6s} {'target':>6s} {'pass':>4s}  note"
    lines = [header] if header else []
    lines += [cols, "-" * len(cols)]
    for r in rows:
        lines.append(f"{r.network:34s} {r.batch:5d} {r.threads:3d} {r.flops_per_frame / 1e9:11.3f} "
                     f"{r.s_per_frame * 1e3:9.2f} {r.achieved_gflops:8.1f} {r.gemm_gflops:12.1f} "
                     f"{r.floor_s * 1e3:9.2f} {r.ratio:6.2f} {_target(r.target):>6s} {r.verdict:>4s}  {r.note}")
    judged = [r for r in rows if r.target is not None]
    if judged:
        failed = [r.network for r in judged if r.verdict == "FAIL"]
        lines.append(f"{len(judged) - len(failed)}/{len(judged)} networks within their target"
                     + (f"; over: {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)


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
    """Time one harness.floor_networks.Probe (best of `repeats` after a warm-up) and the GEMM rate at the
    same thread count right after it."""
    with torch_threads(probe.threads):
        best = best_seconds(probe.call, repeats=repeats, warmup=1)
    gemm = gemm_rate(gemm_n, repeats=max(3, repeats), threads=probe.threads)
    import torch

    threads = probe.threads or torch.get_num_threads()
    return FloorRow(probe.name, probe.batch, threads, probe.flops_per_call / probe.frames_per_call,
                    best / probe.frames_per_call, gemm, probe.note,
                    TARGET_RATIO if getattr(probe, "torch_network", True) else None)


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
                        "(no BLAS) has none: it runs one single-threaded process per core"])
    return rows, format_table(rows, header)
