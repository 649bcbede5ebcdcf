"""Where clip tasks run: in this process (local) or as Ray tasks (one clip per task, with CPU/GPU
requests). Either way the outcomes come back to the driver, which alone writes the run store."""
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


def _ray_evaluate(spec: EvalSpec, tasks: list[ClipTask]) -> list[ClipOutcome]:
    """Ray task body: evaluate one clip's tasks (all its methods/settings) in a worker."""
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
        remote = ray.remote(_ray_evaluate).options(
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
                    outcomes = [ClipOutcome({"method": t.method, "setting": t.setting, "clip_id": t.clip_id,
                                             "status": "failed", "error": f"ray task failed: {type(exc).__name__}: {exc}",
                                             "values": {}, "extra": {}, "protocols": {}, "timings": {}})
                                for t in group]
                yield from outcomes

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


def make_executor(name: str, address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                  io_: ClipIO | None = None) -> LocalExecutor | RayExecutor:
    if name == "local":
        return LocalExecutor(io_)
    if name == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    raise BenchError(f"unknown executor {name!r} (local | ray)")
