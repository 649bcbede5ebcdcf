"""Local worker processes: a spawn pool whose workers split the cores, optionally one GPU each, and exit
when their parent dies. Shared by the run's processes executor and RealTalk's demo training."""
from __future__ import annotations

import os
from typing import Any

def threads_per_worker(workers: int) -> int:
    """Intra-op threads per worker process so that workers x threads = the cores."""
    return max(1, (os.cpu_count() or 1) // workers)


def process_pool(workers: int, threads: int | None = None, gpus: list[str] | None = None) -> Any:
    """A spawn-context ProcessPoolExecutor whose workers use `threads` intra-op threads each (default:
    cores // workers) and exit when this process dies. With `gpus` (CUDA device ids as the driver sees them),
    worker k is pinned to gpus[k % len(gpus)] through CUDA_VISIBLE_DEVICES. Spawn, not fork: torch and dlib
    state are not fork-safe (and CUDA_VISIBLE_DEVICES must be set before CUDA starts in the worker)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = threads or threads_per_worker(workers)
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("i", 0)  # the k of each starting worker
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(threads, os.getpid(), list(gpus or []), counter))


def visible_gpus() -> list[str]:
    """CUDA device ids this process may use, as CUDA_VISIBLE_DEVICES names them (its own list when set, else
    0..device_count-1); [] without torch or GPUs."""
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch / broken driver: no GPUs
        return []
    if n <= 0:
        return []
    own = os.environ.get("CUDA_VISIBLE_DEVICES")
    if own is not None and own.strip():
        ids = [x.strip() for x in own.split(",") if x.strip()]
        return ids[:n]
    return [str(i) for i in range(n)]


_PINNED_GPU: str | None = None  # in a process-pool worker: the CUDA device id it was pinned to


def worker_placement() -> tuple[int, str | None, str | None]:
    """(pid, CUDA_VISIBLE_DEVICES, pinned GPU) of the calling worker: what a pool worker was given."""
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), _PINNED_GPU


def _worker_init(threads: int, parent_pid: int, gpus: list[str] | None = None, counter: Any = None) -> None:
    """Per worker process: its GPU (gpus[k % len], k = the worker's start order) as the only visible one,
    `threads` intra-op threads (workers x threads = the cores), and exit when the driver is gone (a kill -9
    of the driver must not leave workers behind)."""
    import threading
    import time

    global _PINNED_GPU
    if gpus:
        with counter.get_lock():
            k = counter.value
            counter.value += 1
        _PINNED_GPU = gpus[k % len(gpus)]
        os.environ["CUDA_VISIBLE_DEVICES"] = _PINNED_GPU  # before anything in this process starts CUDA
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def pinned_gpu() -> str | None:
    """The CUDA device id this pool worker was pinned to (None outside a pinned worker)."""
    return _PINNED_GPU
