"""Overlapped metric execution: dlib-bound metrics in one side worker process while torch runs in this one.

Why: dlib's networks (HOG detector, shape predictors, the face-recognition ResNet) are single-threaded C++ and
hold the GIL for most of their work, so in one process a pair's CSIM and landmark work (LMD, AV-sync, mouth_r on
the generated crops) runs after the torch metrics (Inception, LPIPS, SyncNet) and leaves a core idle. Here
those metrics run in one spawn worker (harness.core.pool.process_pool, 1 thread) on the same arrays while this
process runs the rest with its usual thread count, so the values are those of the serial path bit for bit:
the same code on the same bytes, dlib being single-threaded either way and torch keeping its threads.

Which metrics go to the side (`runs_on_side`): built-in metrics whose backend is dlib (SIDE_BACKENDS) and whose
constructor arguments pickle. The worker builds each from the same registry name and arguments, evaluates it
with the same function as the serial path (`evaluate`), and sends back values, extra, protocol, the warnings it
raised and its network-pass log (merged into metrics.passes.PASSES, so zero-ground-truth-pass checks still see
every pass). A metric that raises there is that metric's error (same text as serially); a worker that dies is
retried once in a fresh worker, then each of its metrics gets a one-line error; the other metrics are kept.
"""
from __future__ import annotations

import pickle
import warnings
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any

from metrics.base import ClipInput, Metric, Protocol

# metric name -> backends whose work is dlib's single-threaded C++ (FAN / ArcFace run multi-threaded: not here)
SIDE_BACKENDS: dict[str, frozenset[str]] = {
    "csim": frozenset({"dlib"}),
    "lmd": frozenset({"dlib"}),
    "av_sync": frozenset({"dlib"}),
    "mouth_r": frozenset({"dlib"}),
}
MIN_FRAMES = 50  # one version shorter than this: the worker's start (~3 s CPU) would eat the gain (break-even ~25)
MAX_BYTES = 2 << 30  # side inputs above this (pickled copies in the worker) run serially: memory over speed


@dataclass
class Outcome:
    """One metric's result on one pair, as compute_pair records it."""

    protocol: Protocol | None = None
    values: dict[str, float] | None = None
    extra: dict[str, Any] | None = None
    error: str | None = None


def evaluate(metric: Metric, clip: ClipInput) -> Outcome:
    """Protocol, then values (split-level: aggregated over this one clip's state): the serial path and the side
    worker both run this, so an exception reads the same wherever it was raised."""
    out = Outcome()
    try:
        out.protocol = metric.protocol()
        if metric.split_level:
            out.values = metric.aggregate([metric.clip_state(clip)])
        else:
            res = metric.compute_clip(clip)
            out.values, out.extra = res.values, res.extra
    except Exception as exc:  # noqa: BLE001 - one failing metric must not hide the others
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def runs_on_side(metric: Metric, kwargs: dict[str, Any]) -> bool:
    """True when `metric` is dlib-bound (SIDE_BACKENDS) and the worker can rebuild it: a built-in class (plugins
    loaded from a file are not in the worker's registry) and picklable constructor arguments."""
    from metrics import METRIC_MODULES

    backends = SIDE_BACKENDS.get(metric.name)
    if backends is None or getattr(metric, "backend", None) not in backends:
        return False
    if type(metric).__module__ not in METRIC_MODULES:
        return False
    try:
        pickle.dumps(kwargs)
    except Exception:  # noqa: BLE001 - e.g. a custom landmarks_fn lambda: it runs here
        return False
    return True


@dataclass
class SideJob:
    names: list[str]
    kwargs: dict[str, dict[str, Any]]
    batch_size: int
    device: str
    clip: ClipInput


@dataclass
class SideResult:
    outcomes: dict[str, Outcome]
    passes: tuple[dict, dict, dict] = ({}, {}, {})  # PASSES.frames, .loads, .keys of the job
    warnings: list[tuple[type, str]] = field(default_factory=list)


def run_side(job: SideJob) -> SideResult:
    """In the worker: build and evaluate each metric of the job, recording passes and warnings."""
    from harness.core.faults import fault_point
    from metrics.base import load_all
    from metrics.passes import PASSES

    fault_point("side-metric")
    registry = load_all()
    PASSES.reset()
    outcomes: dict[str, Outcome] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in job.names:
            try:
                metric = registry[name](batch_size=job.batch_size, device=job.device, **job.kwargs.get(name, {}))
            except Exception as exc:  # noqa: BLE001 - built in the parent already: should not happen here
                outcomes[name] = Outcome(error=f"{type(exc).__name__}: {exc}")
                continue
            outcomes[name] = evaluate(metric, job.clip)
    passes = (dict(PASSES.frames), dict(PASSES.loads), {k: dict(v) for k, v in PASSES.keys.items()})
    return SideResult(outcomes, passes, [(_picklable(w.category), str(w.message)) for w in caught])


def _warm() -> int:
    """In the worker at start: import the metric modules while the parent decodes (no models loaded)."""
    from metrics.base import load_all

    return len(load_all())


def _picklable(category: type) -> type:
    try:
        pickle.loads(pickle.dumps(category))
        return category
    except Exception:  # noqa: BLE001 - a warning class defined where the parent cannot import it
        return UserWarning


def _merge_passes(passes: tuple[dict, dict, dict]) -> None:
    from metrics.passes import MAX_KEYS, PASSES

    frames, loads, keys = passes
    PASSES.frames.update(frames)
    PASSES.loads.update(loads)
    for net, counts in keys.items():
        if len(PASSES.keys[net]) < MAX_KEYS:
            PASSES.keys[net].update(counts)


class SideWorker:
    """One side worker process for the pairs of a session (a `metrics --gen A B C` call): started on first use
    (or by start()), kept across pairs so dlib's models load once, ended by close() / the context manager.
    versions: how many pairs the session will score (with one short pair, auto mode runs serially)."""

    def __init__(self, versions: int = 1, force: bool = False) -> None:
        self.versions, self.force = versions, force
        self._pool: Any = None
        self.jobs = 0  # jobs submitted (tests: proof the side path ran)

    def __enter__(self) -> SideWorker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(kill=exc[0] is not None)

    def wanted(self, n_frames: int, nbytes: int) -> bool:
        """Whether a pair of n_frames (side inputs of nbytes) should use the worker (forced: always)."""
        if nbytes > MAX_BYTES:
            return False
        return self.force or self._pool is not None or self.versions > 1 or n_frames >= MIN_FRAMES

    def start(self) -> None:
        """Spawn the worker now (its imports overlap with the caller's decoding)."""
        if self._pool is None:
            from harness.core.pool import process_pool

            self._pool = process_pool(1, threads=1)
            self._pool.submit(_warm)

    def submit(self, job: SideJob) -> PendingSide:
        self.start()
        self.jobs += 1
        try:
            future = self._pool.submit(run_side, job)
        except BrokenProcessPool:  # died after its last job: a fresh one
            self.restart()
            future = self._pool.submit(run_side, job)
        return PendingSide(self, job, self._pool, future)

    def restart(self) -> None:
        self.close(kill=True)
        self.start()

    def close(self, kill: bool = False) -> None:
        """End the worker; kill=True (an exception in the caller) terminates it instead of waiting."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            for p in list(getattr(pool, "_processes", {}).values()):  # 3.11 has no public terminate
                p.terminate()
        pool.shutdown(wait=True, cancel_futures=kill)


class PendingSide:
    """A submitted side job; result() waits for it (retried once in a fresh worker if the worker died)."""

    def __init__(self, worker: SideWorker, job: SideJob, pool: Any, future: Future) -> None:
        self.worker, self.job, self.pool, self.future = worker, job, pool, future

    def result(self) -> dict[str, Outcome]:
        for attempt in (1, 2):
            try:
                res: SideResult = self.future.result()
                break
            except BrokenProcessPool as exc:
                if attempt == 2:
                    why = f"metric worker process died twice ({type(exc).__name__}: {exc})".replace("\n", " ")
                    return {n: Outcome(error=why) for n in self.job.names}
                # what died may be another job queued before this one: run it again in a fresh worker
                if self.worker._pool is self.pool:
                    self.worker.restart()
                try:
                    self.worker.start()
                    self.pool = self.worker._pool
                    self.future = self.pool.submit(run_side, self.job)
                except Exception as again:  # noqa: BLE001 - no worker to be had: the metrics' error
                    why = f"metric worker could not start ({type(again).__name__}: {again})".replace("\n", " ")
                    return {n: Outcome(error=why) for n in self.job.names}
            except Exception as exc:  # noqa: BLE001 - e.g. a result that does not unpickle
                why = f"metric worker failed: {type(exc).__name__}: {exc}".replace("\n", " ")
                return {n: Outcome(error=why) for n in self.job.names}
        _merge_passes(res.passes)
        for category, message in res.warnings:
            warnings.warn(message, category, stacklevel=2)
        return res.outcomes


def side_clip(clip: ClipInput) -> ClipInput:
    """What the worker gets: the clip without the full frames (no side metric needs them)."""
    return replace(clip, generated_full=None, face_boxes=None)


def side_bytes(clip: ClipInput) -> int:
    return sum(int(getattr(a, "nbytes", 0)) for a in (clip.generated, clip.ground_truth, clip.identity, clip.audio)
               if a is not None)
