"""Where clip tasks run: in this process (local), in a pool of local worker processes (processes), or as
Ray tasks (one clip per task, with CPU/GPU requests). Either way the outcomes come back to the driver,
which alone writes the run store."""
from __future__ import annotations

import os
from typing import Any, Iterator

from harness.errors import BenchError
from harness.evaluate import ClipIO, ClipOutcome, ClipTask, EvalSpec, Evaluator


class LocalExecutor:
    """Runs tasks one after another here, in the order given (clip-major, so ground truth is reused)."""

    name = "local"

    def __init__(self, io_: ClipIO | None = None):
        self.io = io_

    def run(self, spec: EvalSpec, tasks: list[ClipTask], evaluator: Evaluator | None = None) -> Iterator[ClipOutcome]:
        ev = evaluator or Evaluator.from_spec(spec, io_=self.io)
        for t in tasks:
            yield ev.run(t)

    def close(self) -> None:
        pass


# One evaluator per worker process and spec: models load once per worker, not once per clip.
_WORKER_EVALUATORS: dict[str, Evaluator] = {}


def threads_per_worker(workers: int) -> int:
    """Intra-op threads per worker process so that workers x threads = the cores."""
    return max(1, (os.cpu_count() or 1) // workers)


def process_pool(workers: int, threads: int | None = None) -> Any:
    """A spawn-context ProcessPoolExecutor whose workers use `threads` intra-op threads each (default:
    cores // workers) and exit when this process dies. Spawn, not fork: torch and dlib state are not
    fork-safe."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = threads or threads_per_worker(workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(threads, os.getpid()))


def _worker_evaluate(spec: EvalSpec, tasks: list[ClipTask]) -> list[ClipOutcome]:
    """Ray / process-pool task body: evaluate a group of one clip's tasks in a worker."""
    tok = spec.token()
    ev = _WORKER_EVALUATORS.get(tok)
    if ev is None:
        _WORKER_EVALUATORS.clear()
        ev = _WORKER_EVALUATORS[tok] = Evaluator.from_spec(spec)
    return [ev.run(t) for t in tasks]


class RayExecutor:
    """Each clip (all its method x setting tasks, so the ground truth is computed once) is one Ray task
    with num_cpus / num_gpus requests. Connects to `address` (a running cluster, e.g. "auto" or
    "ray://host:10001"), else starts a local instance; an already initialised Ray is used as is."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 local_cpus: int | None = None, max_in_flight: int | None = None):
        try:
            import ray
        except ImportError as exc:
            raise BenchError("the ray executor needs ray: pip install 'ray[default]'") from exc
        self.ray = ray
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self._started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=local_cpus or os.cpu_count() or 1, **kw)
            self._started = True
        self.max_in_flight = max_in_flight

    def run(self, spec: EvalSpec, tasks: list[ClipTask], evaluator: Evaluator | None = None) -> Iterator[ClipOutcome]:
        ray = self.ray
        remote = ray.remote(_worker_evaluate).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=1,
            runtime_env={"env_vars": dict(spec.env)} if spec.env else None,
        )
        by_clip: dict[str, list[ClipTask]] = {}
        for t in tasks:
            by_clip.setdefault(t.clip_id, []).append(t)
        spec_ref = ray.put(spec)
        pending = {remote.remote(spec_ref, group): group for group in by_clip.values()}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                group = pending.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a lost worker fails its clips, not the run
                    outcomes = _failed(group, f"ray task failed: {type(exc).__name__}: {exc}")
                yield from outcomes

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


def _failed(tasks: list[ClipTask], why: str) -> list[ClipOutcome]:
    return [ClipOutcome({"method": t.method, "setting": t.setting, "clip_id": t.clip_id, "status": "failed",
                         "error": why, "values": {}, "extra": {}, "protocols": {}, "timings": {}}) for t in tasks]


def _worker_init(threads: int, parent_pid: int) -> None:
    """Per worker process: `threads` intra-op threads (workers x threads = the cores), and exit when the
    driver is gone (a kill -9 of the driver must not leave workers behind)."""
    import threading
    import time

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


def default_workers() -> int:
    """All cores, at most 8 (each worker holds its own copy of every network)."""
    return max(1, min(8, os.cpu_count() or 1))


class ProcessExecutor:
    """Clips in `workers` local processes, for a multi-core machine without Ray. Work units are
    (clip, setting) groups, reconstruction first: each carries all methods of that clip and setting, so
    ground truth is computed once per unit, and 10 units of a 5-clip split keep 2 workers evenly busy.
    Each worker gets cores // workers intra-op threads, so single-threaded stages (dlib, scikit-image,
    video encoding) run side by side. Float results can differ from a local run with another thread count
    in the last bits (reductions split differently); the protocol is the same."""

    name = "processes"

    def __init__(self, workers: int | None = None):
        self.workers = workers or default_workers()
        self.threads = threads_per_worker(self.workers)
        self._pool: Any = None

    def run(self, spec: EvalSpec, tasks: list[ClipTask], evaluator: Evaluator | None = None) -> Iterator[ClipOutcome]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        from harness.methods import SETTINGS

        groups: dict[tuple[str, str], list[ClipTask]] = {}
        for t in tasks:
            groups.setdefault((t.clip_id, t.setting), []).append(t)
        order = sorted(groups, key=lambda k: SETTINGS.index(k[1]) if k[1] in SETTINGS else len(SETTINGS))
        self._pool = process_pool(min(self.workers, len(order)) or 1, self.threads)
        futures = {self._pool.submit(_worker_evaluate, spec, groups[k]): groups[k] for k in order}
        for fut in as_completed(futures):
            group = futures[fut]
            try:
                outcomes = fut.result()
            except BrokenProcessPool as exc:
                outcomes = _failed(group, f"worker process died: {exc}")
            except Exception as exc:  # noqa: BLE001 - a failed unit fails its clips, not the run
                outcomes = _failed(group, f"worker task failed: {type(exc).__name__}: {exc}")
            yield from outcomes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


EXECUTORS = ("local", "processes", "ray")


def make_executor(name: str, address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                  io_: ClipIO | None = None, workers: int | None = None
                  ) -> LocalExecutor | ProcessExecutor | RayExecutor:
    if name == "local":
        return LocalExecutor(io_)
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    raise BenchError(f"unknown executor {name!r} ({' | '.join(EXECUTORS)})")
