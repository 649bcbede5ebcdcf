"""Where clip tasks run: in this process (local), in a pool of local worker processes (processes), or as
Ray tasks (one clip per task, with CPU/GPU requests). Either way the outcomes come back to the driver,
which alone writes the run store.

On a GPU machine the processes executor pins one GPU per worker (CUDA_VISIBLE_DEVICES, round robin over the
driver's visible GPUs); Ray gives each task the GPUs it requested. A worker that was given a GPU runs the
metrics and every method that takes a `device` on it ("cuda" there is the given GPU, whatever index the
driver named). Ray tasks carry the code with them (runtime_env py_modules: this package and the plugins)
and the baseline environment variables (FORWARDED_ENV_PREFIXES), so a cluster needs only Python + deps."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from harness.core.errors import BenchError
from harness.core.pool import pinned_gpu, process_pool, threads_per_worker, visible_gpus
from harness.evaluate import ClipIO, ClipOutcome, ClipTask, EvalSpec, Evaluator


class LocalExecutor:
    """Runs tasks one after another here, in the order given (clip-major, so ground truth is reused).

    prefetch N > 0: while a clip's tasks run, the ground truth of the next N clips (decode, face tracking,
    crops, driving audio: Evaluator.ground_truth) is prepared in a background thread (harness.prefetch), so
    on a GPU the metric networks do not wait for CPU work. The records are the same as with prefetch 0."""

    name = "local"

    def __init__(self, io_: ClipIO | None = None, prefetch: int = 0):
        self.io = io_
        self.prefetch = int(prefetch)
        self.prefetcher: Any = None  # the last run's harness.prefetch.Prefetcher (instrumented), if any

    def run(self, spec: EvalSpec, tasks: list[ClipTask], evaluator: Evaluator | None = None) -> Iterator[ClipOutcome]:
        ev = evaluator or Evaluator.from_spec(spec, io_=self.io)
        if self.prefetch <= 0:
            for t in tasks:
                yield ev.run(t)
            return
        from harness.prefetch import Prefetcher, prepare_clip

        settings: dict[str, list[str]] = {}
        for t in tasks:
            if t.setting not in settings.setdefault(t.clip_id, []):
                settings[t.clip_id].append(t.setting)
        self.prefetcher = pf = Prefetcher(list(settings), prepare_clip(ev, settings), self.prefetch)
        with pf:
            taken: set[str] = set()
            for t in tasks:
                if t.clip_id not in taken:  # the clip's ground truth, prepared ahead, into the evaluator's memo
                    taken.add(t.clip_id)
                    for setting, gt in pf.take(t.clip_id).items():  # a failed one is missing: ev.run redoes it
                        ev.remember_ground_truth(t.clip_id, setting, gt)
                yield ev.run(t)

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close(wait=False)


# One evaluator per worker process and spec: models load once per worker, not once per clip.
_WORKER_EVALUATORS: dict[str, Evaluator] = {}




def accepts_device(method: str) -> bool:
    """Whether the registered method's constructor takes a `device` keyword."""
    import inspect

    from harness.core.methods import REGISTRY, load_all

    load_all()
    cls = REGISTRY.get(method)
    if cls is None:
        return False
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return "device" in params


def on_given_gpu(spec: EvalSpec) -> EvalSpec:
    """The spec for a worker that was given one GPU (made visible as its only one): metrics on "cuda", and
    every method that takes a `device` on "cuda" too (an index the driver named, cuda:N, means nothing here)."""
    from harness.plugins import load_plugins

    load_plugins(spec.plugins)  # plugin methods must be registered to see their constructor
    methods = {}
    for key, kw in spec.methods.items():
        kw = dict(kw)
        if "device" in kw or accepts_device(kw.get("_method", key)):
            kw["device"] = "cuda"
        methods[key] = kw
    return dataclasses.replace(spec, methods=methods, device="cuda")


def _worker_evaluate(spec: EvalSpec, tasks: list[ClipTask]) -> list[ClipOutcome]:
    """Process-pool task body: evaluate a group of one clip's tasks in a worker (on its pinned GPU when the
    run asked for cuda)."""
    if pinned_gpu() is not None and spec.device.startswith("cuda"):
        spec = on_given_gpu(spec)
    return _evaluate(spec, tasks)


def _ray_worker_evaluate(spec: EvalSpec, tasks: list[ClipTask]) -> list[ClipOutcome]:
    """Ray task body: Ray made the task's GPUs (num_gpus) the only visible ones; use them when there are any."""
    import ray

    if ray.get_gpu_ids():
        spec = on_given_gpu(spec)
    return _evaluate(spec, tasks)


def _evaluate(spec: EvalSpec, tasks: list[ClipTask]) -> list[ClipOutcome]:
    tok = spec.token()
    ev = _WORKER_EVALUATORS.get(tok)
    if ev is None:
        _WORKER_EVALUATORS.clear()
        ev = _WORKER_EVALUATORS[tok] = Evaluator.from_spec(spec)
    return [ev.run(t) for t in tasks]


class RayExecutor:
    """Each clip (all its method x setting tasks, so the ground truth is computed once) is one Ray task
    with num_cpus / num_gpus requests. Connects to `address` (a running cluster, e.g. "auto" or
    "ray://host:10001"), else starts a local instance, in both cases with the job's runtime_env
    (ray_runtime_env: this package and the plugins as py_modules, the forwarded variables), so the cluster
    needs no copy of the code. Ray initialised by the caller is used as is: its runtime_env is the caller's
    (then only the variables travel, per task), and a note says so."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 local_cpus: int | None = None, max_in_flight: int | None = None, ship_code: bool = True):
        try:
            import ray
        except ImportError as exc:
            raise BenchError("the ray executor needs ray: pip install 'ray[default]'") from exc
        self.ray = ray
        self.address, self.local_cpus = address, local_cpus
        self.num_cpus, self.num_gpus, self.ship_code = num_cpus, num_gpus, ship_code
        self._started = False
        self.shipped = False  # whether the running job carries our py_modules
        self.max_in_flight = max_in_flight

    def start(self, spec: EvalSpec) -> None:
        """ray.init with the job runtime_env for this spec (once; a Ray initialised elsewhere is left alone)."""
        ray = self.ray
        if ray.is_initialized():
            if self.ship_code and not self._started:
                print("note: Ray was initialised before the run: the code and plugins are not shipped (workers "
                      "import what their nodes have; pass harness.executors.ray_runtime_env(...) to ray.init "
                      "to ship them)", file=sys.stderr)
            return
        job_env, _ = ray_runtime_env(spec, ship_code=self.ship_code)
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "runtime_env": job_env or None}
        if self.address:
            ray.init(address=self.address, **kw)
        else:
            ray.init(num_cpus=self.local_cpus or os.cpu_count() or 1, **kw)
        self._started, self.shipped = True, self.ship_code

    def run(self, spec: EvalSpec, tasks: list[ClipTask], evaluator: Evaluator | None = None) -> Iterator[ClipOutcome]:
        ray = self.ray
        self.start(spec)
        spec, options = ray_task(spec, self.num_cpus, self.num_gpus, shipped=self.shipped)
        remote = ray.remote(_ray_worker_evaluate).options(**options)
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
            self._started = self.shipped = False


# Environment variables a Ray task gets from the driver: the baselines' repository / checkpoint settings and
# the harness's own. (Local process-pool workers inherit the whole environment.)
FORWARDED_ENV_PREFIXES = ("DINET_", "TALKLIP_", "WAV2LIP_", "PCAVS_", "STYLETALK_", "IPLAP_", "REALTALK_BENCH_")
CODE_PACKAGES = ("harness", "metrics", "realtalk", "baselines")  # shipped to Ray workers as py_modules
SHIP_EXCLUDES = ["__pycache__", "*.pyc", ".pytest_cache"]


def forwarded_env(spec_env: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The spec's variables plus every driver variable with a FORWARDED_ENV_PREFIXES prefix (driver wins)."""
    environ = os.environ if environ is None else environ
    out = {k: str(v) for k, v in spec_env.items()}
    out.update({k: str(v) for k, v in environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)})
    return out


def _package_dir(name: str) -> Path:
    import importlib

    mod = importlib.import_module(name)
    return Path(next(iter(mod.__path__))).resolve()


def _is_installed(path: Path) -> bool:
    """Under site-packages / dist-packages: installed into the environment, expected on the cluster too."""
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def plugin_shipment(plugins: list[str]) -> tuple[list[str], list[str]]:
    """(paths to ship as py_modules, the plugin specs the worker loads). A .py plugin file is shipped and
    loaded there by its module name; a module plugin ships its top-level package (or single file) unless it
    is installed in site-packages; a file whose stem is no module name keeps its absolute path (then it must
    exist on the workers: shared storage)."""
    import importlib.util

    paths: list[str] = []
    remote: list[str] = []
    for spec in plugins:
        from harness.plugins import is_file_spec

        if is_file_spec(spec):
            path = Path(spec).expanduser().resolve()
            if path.suffix == ".py" and path.stem.isidentifier() and path.is_file():
                paths.append(str(path))
                remote.append(path.stem)
            else:
                remote.append(str(path))
            continue
        from harness.plugins import split_module_at

        at = split_module_at(spec)  # MODULE@DIR: ship DIR's top-level package (or file); workers import by name
        if at is not None:
            top_path = Path(at[1]).expanduser().resolve() / at[0].split(".")[0]
            paths.append(str(top_path if top_path.is_dir() else top_path.with_suffix(".py")))
            remote.append(at[0])
            continue
        remote.append(spec)
        top = spec.split(".")[0]
        try:
            found = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            found = None
        if found is None:
            continue
        if found.submodule_search_locations:  # a package (regular or namespace)
            locs = list(dict.fromkeys(Path(p).resolve() for p in found.submodule_search_locations))
            where = locs[0] if len(locs) == 1 else None
        else:
            where = Path(found.origin).resolve() if found.origin and found.origin.endswith(".py") else None
        if where is not None and not _is_installed(where) and top not in CODE_PACKAGES:
            paths.append(str(where))
    return list(dict.fromkeys(paths)), remote


def ray_runtime_env(spec: EvalSpec, ship_code: bool = True, environ: Mapping[str, str] | None = None
                    ) -> tuple[dict[str, Any], list[str]]:
    """(the job's runtime_env, for ray.init; the plugin specs workers of that job load). py_modules: this
    package's code (workers run the driver's version, not whatever a node has installed) and the plugins;
    env_vars: forwarded_env. Ray uploads local py_modules only at the job level, hence ray.init.
    CUDA_VISIBLE_DEVICES is never forwarded: Ray sets it to each task's GPUs."""
    env: dict[str, Any] = {}
    env_vars = _task_env(spec, environ)
    if env_vars:
        env["env_vars"] = env_vars
    remote_plugins = list(spec.plugins)
    if ship_code:
        plugin_paths, remote_plugins = plugin_shipment(list(spec.plugins))
        env["py_modules"] = [str(_package_dir(n)) for n in CODE_PACKAGES] + plugin_paths
        env["excludes"] = list(SHIP_EXCLUDES)
    return env, remote_plugins


def _task_env(spec: EvalSpec, environ: Mapping[str, str] | None) -> dict[str, str]:
    env_vars = forwarded_env(spec.env, environ)
    env_vars.pop("CUDA_VISIBLE_DEVICES", None)
    return env_vars


def ray_task(spec: EvalSpec, num_cpus: float = 1.0, num_gpus: float = 0.0, shipped: bool = False,
             environ: Mapping[str, str] | None = None) -> tuple[EvalSpec, dict[str, Any]]:
    """(the spec as the workers see it, the .options() of each clip task). The variables also travel per task
    (they then reach a job whose runtime_env is the caller's). A run on cuda with no GPU request asks for one
    GPU per task: otherwise the task would land where no GPU was reserved for it. `shipped`: the job carries
    ray_runtime_env's py_modules, so plugins load by their shipped module names."""
    from harness.core.paths import data_root

    env_vars = _task_env(spec, environ)
    plugins = plugin_shipment(list(spec.plugins))[1] if shipped else list(spec.plugins)
    gpus = num_gpus if num_gpus and num_gpus > 0 else (1.0 if spec.device.startswith("cuda") else 0.0)
    # root "" means the default data root: resolve it here, a shipped copy of the code lives elsewhere
    remote_spec = dataclasses.replace(spec, plugins=plugins, env=env_vars, root=spec.root or str(data_root()))
    return remote_spec, {"num_cpus": num_cpus, "num_gpus": gpus, "max_retries": 1,
                         "runtime_env": {"env_vars": env_vars} if env_vars else None}




def _failed(tasks: list[ClipTask], why: str) -> list[ClipOutcome]:
    return [ClipOutcome({"method": t.method, "setting": t.setting, "clip_id": t.clip_id, "status": "failed",
                         "error": why, "values": {}, "extra": {}, "protocols": {}, "timings": {}}) for t in tasks]




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
        self.gpus: list[str] = []  # the CUDA ids the workers are pinned to (round robin), set by run
        self._pool: Any = None

    def run(self, spec: EvalSpec, tasks: list[ClipTask], evaluator: Evaluator | None = None) -> Iterator[ClipOutcome]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        from harness.core.methods import SETTINGS

        groups: dict[tuple[str, str], list[ClipTask]] = {}
        for t in tasks:
            groups.setdefault((t.clip_id, t.setting), []).append(t)
        order = sorted(groups, key=lambda k: SETTINGS.index(k[1]) if k[1] in SETTINGS else len(SETTINGS))
        self.gpus = visible_gpus()
        self._pool = process_pool(min(self.workers, len(order)) or 1, self.threads, self.gpus)
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
                  io_: ClipIO | None = None, workers: int | None = None, prefetch: int = 0
                  ) -> LocalExecutor | ProcessExecutor | RayExecutor:
    if name == "local":
        return LocalExecutor(io_, prefetch=prefetch)
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    raise BenchError(f"unknown executor {name!r} ({' | '.join(EXECUTORS)})")
