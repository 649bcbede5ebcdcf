"""`realtalk-bench run`: methods x settings x clips of a split -> the run store (format: CONTRIBUTING.md).

Resumable: a clip whose record is on disk (same method fingerprint, same metric protocols) is not redone,
and the final tables are always rebuilt from the records on disk, so an interrupted-then-resumed run
gives exactly the numbers of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness.compare import N_BOOT, SEED, bootstrap_ci
from harness.errors import BenchError, ManifestError
from harness.evaluate import ClipIO, ClipTask, EvalSpec, Evaluator, metric_applies
from harness.methods import SETTINGS, Method
from harness.store import RunStore, flatten_states
from metrics.base import Metric

GENERATED_NOTE = ("Videos in this folder come from research test material and show real people who did not "
                  "license it. Videos of talking-face methods are GENERATED (a label is burnt into a corner); "
                  "those of reference methods (ground_truth, static_frame) replay real frames with the driving "
                  "audio. Keep them inside test and report folders.\n")
ENV_PREFIXES = ("REALTALK_BENCH", "TORCH_HOME", "XDG_CACHE_HOME", "INSIGHTFACE_HOME", "HF_HOME")


@dataclass
class RunConfig:
    """The run command's arguments (stored verbatim in summary.json's config)."""

    split: str
    out: str
    methods: list[str]
    root: str | None = None
    settings: list[str] = field(default_factory=lambda: list(SETTINGS))
    metrics: list[str] | str = "all"
    clips: list[str] | None = None
    role: str = "test"
    max_frames: int | None = None
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    executor: str = "local"
    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    workers: int | None = None  # processes executor: worker count (default: all cores, at most 8)
    device: str = "cpu"
    batch_size: int = 32
    seed: int = SEED
    n_boot: int = N_BOOT
    plugins: list[str] = field(default_factory=list)
    write_videos: bool = True
    retry_failed: bool = False

    def identity(self) -> dict[str, Any]:
        """The parts that define the numbers: a run folder holds one of these (executor etc. may change)."""
        return {k: getattr(self, k) for k in ("split", "methods", "settings", "metrics", "clips", "role",
                                               "max_frames", "method_args", "seed", "n_boot")}


def parse_method_args(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """['realtalk.checkpoint=PATH', ...] -> {'realtalk': {'checkpoint': 'PATH'}} (YAML scalars typed)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise BenchError(f"--method-arg {item!r}: expected METHOD.KEY=VALUE")
        lhs, value = item.split("=", 1)
        method, key = lhs.split(".", 1)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        out.setdefault(method, {})[key] = value if isinstance(parsed, (dict, list)) or parsed is None else parsed
    return out


def select_clips(cfg: RunConfig) -> tuple[Any, list[Any], dict[str, Any]]:
    """(split, clips to evaluate (frame_range capped by max_frames), all clips by id)."""
    from harness.splits import load_split

    split = load_split(cfg.split)
    by_id = {c.clip_id: c for c in split.clips}
    if cfg.clips:
        missing = [c for c in cfg.clips if c not in by_id]
        if missing:
            raise ManifestError(f"clips {missing} are not in split {split.name!r}", split.path)
        chosen = [by_id[c] for c in cfg.clips]
    else:
        chosen = split.clips if cfg.role == "all" else split.by_role(cfg.role)
    if not chosen:
        raise ManifestError(f"split {split.name!r} has no {cfg.role} clips", split.path)
    if cfg.max_frames:
        capped = []
        for c in chosen:
            start, end = c.frame_range if c.frame_range else (0, None)
            stop = start + cfg.max_frames if end is None else min(end, start + cfg.max_frames)
            capped.append(dataclasses.replace(c, frame_range=(start, stop)))
        chosen = capped
    all_clips = dict(by_id)
    all_clips.update({c.clip_id: c for c in chosen})
    return split, chosen, all_clips


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def build_methods(cfg: RunConfig) -> tuple[dict[str, Method], dict[str, str]]:
    from harness.methods import get_method

    methods, unavailable = {}, {}
    for name in cfg.methods:
        try:
            m = get_method(name, **cfg.method_args.get(name, {}))
            ok, why = m.availability()
        except KeyError as exc:
            raise BenchError(str(exc.args[0])) from None
        except BenchError as exc:
            ok, why = False, str(exc)
        if ok:
            methods[name] = m
        else:
            unavailable[name] = why
    return methods, unavailable


def build_metrics(cfg: RunConfig, device: str) -> tuple[dict[str, Metric], dict[str, str]]:
    from metrics.base import get_metric, load_all

    names = sorted(load_all()) if cfg.metrics == "all" else list(cfg.metrics)
    metrics, unavailable = {}, {}
    for name in names:
        try:
            m = get_metric(name, batch_size=cfg.batch_size, device=device)
            ok, why = m.availability()
            if ok:
                m.protocol()  # a protocol that cannot be stated is unavailable, not a crash later
        except KeyError as exc:
            raise BenchError(str(exc.args[0])) from None
        except Exception as exc:  # noqa: BLE001 - any metric problem makes it unavailable, with the reason
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if ok:
            metrics[name] = m
        else:
            unavailable[name] = why
    return metrics, unavailable


def record_done(rec: dict[str, Any] | None, method: Method, metrics: dict[str, Metric], setting: str,
                retry_failed: bool, protocols: dict[str, str]) -> bool:
    """A record counts as finished when it was made by the same model with the same metric protocols."""
    if rec is None:
        return False
    if rec.get("status") == "failed":
        return not retry_failed and rec.get("method_fingerprint") in (None, method.fingerprint())
    if rec.get("method_fingerprint") != method.fingerprint():
        return False
    for name, m in metrics.items():
        if not metric_applies(m, setting):
            continue
        if name in rec.get("metric_errors", {}):
            continue
        if rec.get("protocols", {}).get(name) != protocols[name]:
            return False
    return True


def run_benchmark(cfg: RunConfig, io_: ClipIO | None = None, progress: bool = True, console: Any = None) -> dict[str, Any]:
    """Evaluate, write records as clips finish, then per_clip.csv and summary.json. Returns the summary."""
    t_start = time.time()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for mod in cfg.plugins:
        importlib.import_module(mod)
    for s in cfg.settings:
        if s not in SETTINGS:
            raise BenchError(f"unknown setting {s!r}; known: {', '.join(SETTINGS)}")
    split, clips, all_clips = select_clips(cfg)
    device = resolve_device(cfg.device)
    methods, unavailable_methods = build_methods(cfg)
    metrics, unavailable_metrics = build_metrics(cfg, device)
    if not methods:
        raise BenchError("no method can run here: " + "; ".join(f"{k}: {v}" for k, v in unavailable_methods.items()))
    store = RunStore(cfg.out)
    _check_same_run(store, cfg)
    from harness.fsutil import atomic_write_text
    from harness.store import atomic_write_json

    prior = store.read_run_config() or {}
    atomic_write_json(store.run_config_path, {"identity": cfg.identity(), "config": dataclasses.asdict(cfg),
                                              "first_started": prior.get("first_started", started)})
    if cfg.write_videos:
        atomic_write_text(store.root / "videos" / "LABEL.txt", GENERATED_NOTE)

    protocols = {n: m.protocol().fingerprint() for n, m in metrics.items()}
    tasks: list[ClipTask] = []
    n_skipped = 0
    for c in clips:
        for s in cfg.settings:
            for mname, m in methods.items():
                if record_done(store.read_record(mname, s, c.clip_id), m, metrics, s, cfg.retry_failed, protocols):
                    n_skipped += 1
                else:
                    tasks.append(ClipTask(mname, s, c.clip_id))
    spec = EvalSpec(methods={n: cfg.method_args.get(n, {}) for n in methods}, metrics=list(metrics),
                    clips=all_clips, root=str(cfg.root) if cfg.root else "", fps=25.0, sample_rate=16000,
                    device=device, batch_size=cfg.batch_size, write_videos=cfg.write_videos, plugins=list(cfg.plugins),
                    env={k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)})
    _say(console, f"run {store.run_id}: {len(clips)} clip(s) x {len(cfg.settings)} setting(s) x {len(methods)} method(s); "
                  f"{n_skipped} finished earlier, {len(tasks)} to do ({cfg.executor})")
    if tasks:
        from harness.executors import make_executor

        ex = make_executor(cfg.executor, cfg.address, cfg.num_cpus, cfg.num_gpus, io_=io_, workers=cfg.workers)
        evaluator = None
        if cfg.executor == "local":
            evaluator = Evaluator(methods, metrics, all_clips, spec.root, io_=io_, write_videos=cfg.write_videos)
        try:
            bar = _progress(len(tasks), progress)
            for outcome in ex.run(spec, tasks, evaluator=evaluator):
                store.write_record(outcome.record, flatten_states(outcome.states) if outcome.states else None,
                                   outcome.video)
                r = outcome.record
                if bar is not None:
                    bar.set_postfix_str(f"{r['method']}/{r['setting']}/{r['clip_id']} {r['status']}")
                    bar.update(1)
                if r["status"] != "ok":
                    _say(console, f"[failed] {r['method']}/{r['setting']}/{r['clip_id']}: {r.get('error')}")
            if bar is not None:
                bar.close()
        finally:
            ex.close()
    summary = finalize(store, cfg, split, clips, methods, metrics, unavailable_metrics, unavailable_methods)
    summary["started"] = started
    summary["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary["wall_s"] = round(time.time() - t_start, 3)
    summary["first_started"] = prior.get("first_started", started)
    store.write_summary(summary)
    return summary


def _check_same_run(store: RunStore, cfg: RunConfig) -> None:
    prior = store.read_run_config()
    if prior is None:
        return
    import json

    old = json.loads(json.dumps(prior.get("identity", {}), default=str))
    new = json.loads(json.dumps(cfg.identity(), default=str))
    if old != new:
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        raise BenchError(f"this folder holds a different run (differs in: {', '.join(diff)})", store.root,
                         hint="use a new --out, or repeat the original command to resume")


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="clips", unit="clip", dynamic_ncols=True)


def _say(console: Any, msg: str) -> None:
    if console is not None:
        console.print(msg, markup=False, highlight=False)
    else:
        print(msg, flush=True)


def finalize(store: RunStore, cfg: RunConfig, split: Any, clips: list[Any], methods: dict[str, Method],
             metrics: dict[str, Metric], unavailable_metrics: dict[str, str],
             unavailable_methods: dict[str, str]) -> dict[str, Any]:
    """Build per_clip.csv and summary.json from the records on disk (never from memory: resume-exact)."""
    from harness.environment import environment

    protocols = {n: m.protocol() for n, m in metrics.items()}
    pfp = {n: p.fingerprint() for n, p in protocols.items()}
    clip_ids = sorted(c.clip_id for c in clips)
    rows: list[dict[str, Any]] = []
    results: dict[str, dict[str, dict[str, Any]]] = {}
    failures: list[dict[str, Any]] = []
    timings: dict[str, dict[str, Any]] = {}
    for setting in cfg.settings:
        for mname in methods:
            recs = {cid: store.read_record(mname, setting, cid) for cid in clip_ids}
            for cid, rec in recs.items():
                if rec is None:
                    failures.append({"method": mname, "setting": setting, "clip_id": cid, "error": "no record (not run)"})
                elif rec["status"] != "ok":
                    failures.append({"method": mname, "setting": setting, "clip_id": cid, "error": rec.get("error")})
                else:
                    for metric, err in sorted(rec.get("metric_errors", {}).items()):
                        if metric in metrics:
                            failures.append({"method": mname, "setting": setting, "clip_id": cid, "error": f"metric {metric}: {err}"})
            ok = {cid: r for cid, r in recs.items() if r is not None and r["status"] == "ok"}
            fresh = [r for r in ok.values() if not r.get("generated_from_cache")
                     and r["timings"].get("generate_s") is not None]
            gen = [r["timings"]["generate_s"] for r in fresh]
            gen_frames = sum(int(r.get("n_frames") or 0) for r in fresh)
            timings.setdefault(mname, {})[setting] = {
                "generate_s_mean": float(np.mean(gen)) if gen else None, "n_generated": len(gen),
                # wall time of generate() per output frame (whole method on this machine), fresh clips only
                "generate_ms_per_frame": 1000.0 * float(sum(gen)) / gen_frames if gen_frames else None,
                "total_s_sum": float(sum(r["timings"].get("total_s", 0.0) for r in ok.values()))}
            out: dict[str, Any] = {}
            for name, metric in metrics.items():
                if not metric_applies(metric, setting):
                    continue
                if metric.split_level:
                    _split_level(store, mname, setting, name, metric, ok, pfp[name], out, failures)
                    continue
                for vname in metric.outputs:
                    vals = []
                    for cid in clip_ids:
                        r = ok.get(cid)
                        if r is None or r.get("protocols", {}).get(name) != pfp[name]:
                            continue
                        v = r.get("values", {}).get(name, {}).get(vname)
                        rows.append({"method": mname, "setting": setting, "clip_id": cid, "metric": name,
                                     "value_name": vname, "value": v, "protocol": pfp[name]})
                        if v is not None and math.isfinite(v):
                            vals.append(v)
                    lo, hi = bootstrap_ci(vals, n_boot=cfg.n_boot, seed=cfg.seed)
                    key = vname if vname not in out else f"{name}:{vname}"
                    out[key] = {"mean": float(np.mean(vals)) if vals else None, "ci_low": lo, "ci_high": hi,
                                "n_clips": len(vals), "higher_is_better": bool(metric.higher_is_better[vname]),
                                "metric": name}
            results.setdefault(setting, {})[mname] = out
    store.write_per_clip(rows)
    env = environment()
    summary: dict[str, Any] = {
        "run_id": store.run_id,
        "config": {**dataclasses.asdict(cfg), "clips_selected": clip_ids, "split_path": str(getattr(split, "path", "")),
                   "data_root": str(_root_str(cfg.root))},
        **env,
        "started": None, "finished": None, "wall_s": None,
        "protocols": {n: p.to_dict() for n, p in protocols.items()},
        "unavailable": dict(unavailable_metrics),
        "methods": {n: m.describe() for n, m in methods.items()},
        "unavailable_methods": dict(unavailable_methods),
        "results": results,
        "failures": failures,
        "timings": timings,
    }
    return summary


def _root_str(root: str | None) -> Path:
    from harness.paths import data_root

    return data_root(root)


def _split_level(store: RunStore, mname: str, setting: str, name: str, metric: Metric, ok: dict[str, dict],
                 fp: str, out: dict[str, Any], failures: list[dict[str, Any]]) -> None:
    states = []
    for cid in sorted(ok):
        if ok[cid].get("protocols", {}).get(name) != fp:
            continue
        st = store.read_states(mname, setting, cid).get(name)
        if st:
            states.append(st)
    values: dict[str, float] = {}
    if states:
        try:
            values = metric.aggregate(states)
        except Exception as exc:  # noqa: BLE001 - recorded, the other values still stand
            failures.append({"method": mname, "setting": setting, "clip_id": None,
                             "error": f"metric {name} aggregate: {type(exc).__name__}: {exc}"})
    for vname in metric.outputs:
        v = values.get(vname)
        v = float(v) if v is not None and math.isfinite(float(v)) else None
        key = vname if vname not in out else f"{name}:{vname}"
        out[key] = {"mean": v, "ci_low": None, "ci_high": None, "n_clips": len(states),
                    "higher_is_better": bool(metric.higher_is_better[vname]), "metric": name, "split_level": True}


def render_summary(summary: dict[str, Any], console: Any = None) -> None:
    """One rich table per setting: methods x values, mean [95% CI]."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for setting, by_method in summary.get("results", {}).items():
        names: list[str] = []
        for vals in by_method.values():
            names += [v for v in vals if v not in names]
        t = Table(title=f"{summary.get('run_id')} — {setting}")
        t.add_column("method")
        for v in names:
            arrow = ""
            for vals in by_method.values():
                if v in vals:
                    arrow = " ↑" if vals[v]["higher_is_better"] else " ↓"
                    break
            t.add_column(v + arrow, justify="right")
        for method, vals in by_method.items():
            cells = []
            for v in names:
                e = vals.get(v)
                if e is None or e["mean"] is None:
                    cells.append("—")
                elif e.get("ci_low") is not None:
                    cells.append(f"{e['mean']:.4g} [{e['ci_low']:.3g}, {e['ci_high']:.3g}]")
                else:
                    cells.append(f"{e['mean']:.4g}")
            t.add_row(method, *cells)
        console.print(t)
    if summary.get("unavailable"):
        for k, v in summary["unavailable"].items():
            console.print(f"[yellow]metric {k} unavailable[/yellow]: {v}", highlight=False)
    if summary.get("unavailable_methods"):
        for k, v in summary["unavailable_methods"].items():
            console.print(f"[yellow]method {k} unavailable[/yellow]: {v}", highlight=False)
    if summary.get("failures"):
        console.print(f"[red]{len(summary['failures'])} failure(s)[/red]:", highlight=False)
        for f in summary["failures"][:20]:
            console.print(f"  {f['method']}/{f['setting']}/{f['clip_id']}: {f['error']}", markup=False, highlight=False)
