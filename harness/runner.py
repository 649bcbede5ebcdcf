"""`realtalk-bench run`: methods x settings x clips of a split -> the run store (format: CONTRIBUTING.md).

Resumable: a clip whose record is on disk (same method fingerprint, same metric protocols) is not redone,
and the final tables are always rebuilt from the records on disk, so an interrupted-then-resumed run
gives exactly the numbers of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness.compare import N_BOOT, SEED, bootstrap_ci
from harness.core.errors import BenchError, ManifestError
from harness.core.faults import fault_point
from harness.evaluate import ClipIO, ClipTask, EvalSpec, Evaluator, metric_applies
from harness.core.methods import SETTINGS, Method
from harness.plugins import absolute_specs, plugins_info
from harness.store import RunStore, flatten_states
from metrics.base import FRAMES_TOTAL, FRAMES_USED, Metric, Protocol

GENERATED_NOTE = ("Videos in this folder come from research test material and show real people who did not "
                  "license it. Videos of talking-face methods are GENERATED (labelled in a black band added below the frame); "
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
    settings: list[str] | None = None  # None: the split's default (harness.core.splits.settings_for), resolved at start
    metrics: list[str] | str = "all"
    clips: list[str] | None = None
    role: str = "test"
    max_frames: int | None = None
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # --metric-arg METRIC.KEY=VALUE
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
    shard: str | None = None  # "I/N": this run evaluates shard I of N (harness.shards); merge combines them
    face_detector: str = "dlib"  # the ground truth's tracking detector (harness.core.faces.tracking.CHOICES)

    def identity(self) -> dict[str, Any]:
        """The parts that define the numbers: a run folder holds one of these (executor etc. may change).
        face_detector only when not the default, so folders written before the option keep their identity."""
        out = {k: getattr(self, k) for k in ("split", "methods", "settings", "metrics", "clips", "role",
                                              "max_frames", "method_args", "metric_args", "seed", "n_boot",
                                              "shard")}
        return out if self.face_detector == "dlib" else {**out, "face_detector": self.face_detector}


def parse_method_args(items: list[str] | None, flag: str = "--method-arg", what: str = "METHOD"
                      ) -> dict[str, dict[str, Any]]:
    """['realtalk.checkpoint=PATH', ...] -> {'realtalk': {'checkpoint': 'PATH'}} (YAML scalars typed).
    Also parses --metric-arg (flag/what name the option in errors)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise BenchError(f"{flag} {item!r}: expected {what}.KEY=VALUE")
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
    from harness.core.splits import load_split, materialize

    split = materialize(load_split(cfg.split), cfg.root)  # ids from an official list (voxceleb1), as `splits show`
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


def unpaired_clips(clips: list[Any]) -> list[str]:
    """Ids of the clips without a cross-audio pair (neither drive_audio nor drive_clip), sorted: cross_audio
    skips them and the summary lists them (settings.cross_audio.skipped_unpaired)."""
    return sorted(c.clip_id for c in clips if not (getattr(c, "drive_audio", None) or getattr(c, "drive_clip", None)))


def cross_audio_note(n_total: int, unpaired: list[str]) -> str:
    """The one line that says which clips cross_audio covers (on stderr at start, in reports and compare)."""
    shown = ", ".join(unpaired[:10]) + (f", ... ({len(unpaired)} in all)" if len(unpaired) > 10 else "")
    return (f"cross_audio: {n_total - len(unpaired)} of {n_total} clips ({len(unpaired)} without a drive pair, "
            f"reconstruction only: {shown})")


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


FOLDER_PREFIX = "folder:"


def method_entry(item: str, method_args: dict[str, dict[str, Any]] | None = None) -> tuple[str, str, dict[str, Any]]:
    """A --methods item -> (key used in the store and results, registry name, constructor kwargs).
    'folder:NAME=DIR' is the precomputed method reading DIR, keyed NAME (--method-arg NAME.KEY=... adds kwargs)."""
    if item.startswith(FOLDER_PREFIX):
        body = item[len(FOLDER_PREFIX):]
        name, _, folder = body.partition("=")
        if not name or not folder:
            raise BenchError(f"--methods {item!r}: expected folder:NAME=DIR")
        if not Path(folder).expanduser().is_dir():
            raise BenchError(f"--methods {item!r}: folder {folder} does not exist")
        return name, "precomputed", {"dir": folder, "name": name, **(method_args or {}).get(name, {})}
    return item, item, dict((method_args or {}).get(item, {}))


def method_specs(cfg: RunConfig, keys: Any = None) -> dict[str, dict[str, Any]]:
    """key -> constructor kwargs for EvalSpec ('_method' names the registry entry when it is not the key)."""
    out = {}
    for item in cfg.methods:
        key, reg, kw = method_entry(item, cfg.method_args)
        if keys is None or key in keys:
            out[key] = kw if reg == key else {"_method": reg, **kw}
    return out


def build_methods(cfg: RunConfig) -> tuple[dict[str, Method], dict[str, str]]:
    from harness.core.methods import get_method

    methods, unavailable = {}, {}
    for item in cfg.methods:
        name, reg, kwargs = method_entry(item, cfg.method_args)
        try:
            m = get_method(reg, **kwargs)
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
    stray = sorted(set(cfg.metric_args) - set(names))
    if stray:
        raise BenchError(f"--metric-arg for {', '.join(stray)}: not among the run's metrics ({', '.join(names)})")
    metrics, unavailable = {}, {}
    for name in names:
        kwargs = cfg.metric_args.get(name, {})
        try:
            m = get_metric(name, batch_size=cfg.batch_size, device=device, **kwargs)
            ok, why = m.availability()
            if ok:
                m.protocol()  # a protocol that cannot be stated is unavailable, not a crash later
        except KeyError as exc:
            raise BenchError(str(exc.args[0])) from None
        except TypeError as exc:  # an argument the metric does not take: the command line is wrong
            if kwargs:
                raise BenchError(f"--metric-arg {name}.{{{', '.join(kwargs)}}}: {exc}") from None
            ok, why = False, f"TypeError: {exc}"
        except Exception as exc:  # noqa: BLE001 - any metric problem makes it unavailable, with the reason
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if ok:
            metrics[name] = m
        else:
            unavailable[name] = why
    return metrics, unavailable


def metric_configs(metrics: dict[str, Metric], cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Resolved constructor kwargs per metric: the user's --metric-arg values with every 'auto' replaced
    by Metric.config(); workers build their metrics from exactly these."""
    return {n: {**cfg.metric_args.get(n, {}), **m.config()} for n, m in metrics.items()}


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


def run_benchmark(cfg: RunConfig, io_: ClipIO | None = None, progress: bool = True, console: Any = None,
                  prefetch: int | None = None) -> dict[str, Any]:
    """Evaluate, write records as clips finish, then per_clip.csv and summary.json. Returns the summary.
    Holds the folder's run.lock throughout: a second run into the same folder refuses (harness.store.RunLock).
    prefetch: clips whose ground truth the local executor prepares ahead in a thread (None: 1 on a GPU, else
    0); a scheduling choice like the progress bar, so not part of the config: the files are the same."""
    from harness.shards import parse_shard
    from harness.store import RunLock

    parse_shard(cfg.shard)  # a bad --shard fails before anything is written
    from harness.devices import check_device

    check_device(cfg.device)  # ... and a GPU that is not there (DeviceError: one line, exit 2)
    from harness.core.faces.tracking import check_tracking_detector

    check_tracking_detector(cfg.face_detector)  # ... and an unknown detector or s3fd without its file (exit 2)
    out = Path(cfg.out)
    created = not out.exists()
    lock = RunLock(out).acquire()
    try:
        if lock.took_over:
            _say(console, f"took over a stale run.lock of pid {lock.took_over.get('pid')} on "
                          f"{lock.took_over.get('host')} (that run is gone)")
        return _run_benchmark(cfg, io_, progress, console, prefetch)
    finally:
        lock.release()
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run refused before writing anything leaves no empty folder behind


def _run_benchmark(cfg: RunConfig, io_: ClipIO | None, progress: bool, console: Any,
                   prefetch: int | None = None) -> dict[str, Any]:
    from harness.devices import check_device, full_precision

    device = check_device(cfg.device)
    full_precision(device)
    if prefetch is not None and prefetch < 0:
        raise BenchError(f"--prefetch {prefetch}: expected a clip count >= 0")
    t_start = time.time()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from harness.plugins import load_plugins

    load_plugins(cfg.plugins)  # module names or .py files; a broken one is a one-line PluginError
    split, clips, all_clips = select_clips(cfg)
    from harness.core.splits import settings_for

    settings, note = settings_for(split, clips, cfg.settings, SETTINGS)
    cfg = dataclasses.replace(cfg, settings=settings)  # the resolved list is the run's identity
    if note:
        _say(console, note)
    from harness.shards import shard_clips

    unpaired = unpaired_clips(clips) if "cross_audio" in settings else []
    if unpaired:  # some clips have no drive pair: cross_audio runs the others, said once (not a failure per clip)
        print(cross_audio_note(len(clips), unpaired), file=sys.stderr, flush=True)
    skip = set(unpaired)
    clips = shard_clips(clips, cfg.shard)  # after settings_for: a shard runs the settings of the whole run
    methods, unavailable_methods = build_methods(cfg)
    metrics, unavailable_metrics = build_metrics(cfg, device)
    if not methods:
        raise BenchError("no method can run here: " + "; ".join(f"{k}: {v}" for k, v in unavailable_methods.items()))
    store = RunStore(cfg.out)
    check_same_run(store, cfg)
    from harness.core.fsutil import atomic_write_text
    from harness.store import atomic_write_json

    prior = store.read_run_config() or {}
    atomic_write_json(store.run_config_path, {"identity": cfg.identity(), "config": dataclasses.asdict(cfg),
                                              "first_started": prior.get("first_started", started)})
    if cfg.write_videos:
        atomic_write_text(store.root / "videos" / "LABEL.txt", GENERATED_NOTE)

    from harness.core.faces.tracking import with_tracking

    stated = {n: with_tracking(m.protocol(), cfg.face_detector) for n, m in metrics.items()}
    protocols = {n: p.fingerprint() for n, p in stated.items()}
    for line in unpinned_warnings(stated):
        _say(console, line)
    tasks: list[ClipTask] = []
    n_skipped = 0
    for c in clips:
        for s in cfg.settings:
            if s == "cross_audio" and c.clip_id in skip:
                continue
            for mname, m in methods.items():
                if record_done(store.read_record(mname, s, c.clip_id), m, metrics, s, cfg.retry_failed, protocols):
                    n_skipped += 1
                else:
                    tasks.append(ClipTask(mname, s, c.clip_id))
    spec = EvalSpec(methods=method_specs(cfg, methods), metrics=metric_configs(metrics, cfg),
                    clips=all_clips, root=str(cfg.root) if cfg.root else "", fps=25.0, sample_rate=16000,
                    device=device, batch_size=cfg.batch_size, write_videos=cfg.write_videos, plugins=absolute_specs(cfg.plugins),
                    face_detector=cfg.face_detector,
                    env={k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)})
    _say(console, f"run {store.run_id}: {len(clips)} clip(s) x {len(cfg.settings)} setting(s) x {len(methods)} method(s); "
                  f"{n_skipped} finished earlier, {len(tasks)} to do ({cfg.executor})")
    if tasks:
        from harness.executors import make_executor

        depth = (1 if device.startswith("cuda") else 0) if prefetch is None else prefetch
        if prefetch and cfg.executor != "local":
            _say(console, f"note: --prefetch applies to the local executor; the {cfg.executor} executor overlaps "
                          "clips through its workers")
        ex = make_executor(cfg.executor, cfg.address, cfg.num_cpus, cfg.num_gpus, io_=io_, workers=cfg.workers,
                           prefetch=depth)
        evaluator = None
        if cfg.executor == "local":
            io_ = io_ or ClipIO()
            io_.face_detector, io_.device = cfg.face_detector, device  # read by ClipIO.faces and the protocols
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
    fault_point("finalize")  # every record on disk, no tables yet (tests/test_crash_points.py)
    summary = finalize(store, cfg, split, clips, methods, metrics, unavailable_metrics, unavailable_methods)
    summary["started"] = started
    summary["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary["wall_s"] = round(time.time() - t_start, 3)
    summary["first_started"] = prior.get("first_started", started)
    store.write_summary(summary)
    return summary


def unpinned_warnings(protocols: dict[str, Protocol]) -> list[str]:
    """One warning per metric whose protocol records a model file without a pinned sha256: its values
    cannot be tied to a published file, so the run says so at start (and the protocol keeps the mark)."""
    out = []
    for name, p in protocols.items():
        state = str(p.settings.get("weights_state", ""))
        if "unpinned" in state or state == "unverified":
            out.append(f"WARNING: metric {name} uses a model file that is {state}: its values are marked so in "
                       f"the protocol (realtalk-bench weights status)")
    return out


def check_same_run(store: RunStore, cfg: RunConfig) -> None:
    prior = store.read_run_config()
    if prior is None:
        return
    import json

    old = json.loads(json.dumps(prior.get("identity", {}), default=str))
    old.setdefault("metric_args", {})  # folders written before --metric-arg existed
    old.setdefault("shard", None)  # ... and before --shard
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
    """Build per_clip.csv and summary.json from the records on disk (never from memory: resume-exact).

    Per setting, every method's split-level values are computed on one clip set: the clips that every
    method finished (status ok), so methods are compared on the same clips and FID on the same reference."""
    from harness.core.environment import environment

    from harness.core.faces.tracking import with_tracking

    protocols = {n: with_tracking(m.protocol(), cfg.face_detector) for n, m in metrics.items()}
    pfp = {n: p.fingerprint() for n, p in protocols.items()}
    clip_ids = sorted(c.clip_id for c in clips)
    rows: list[dict[str, Any]] = []
    results: dict[str, dict[str, dict[str, Any]]] = {}
    failures: list[dict[str, Any]] = []
    timings: dict[str, dict[str, Any]] = {}
    clip_sets: dict[str, dict[str, Any]] = {}
    unpaired = unpaired_clips(clips) if "cross_audio" in cfg.settings else []
    skip = set(unpaired)
    for setting in cfg.settings:
        ids = [c for c in clip_ids if c not in skip] if setting == "cross_audio" else clip_ids
        recs = {m: {cid: store.read_record(m, setting, cid) for cid in ids} for m in methods}
        common, excluded = common_clip_set(recs, ids)
        clip_sets[setting] = {"common": common, "excluded": excluded}
        for mname in methods:
            failures += _failures(mname, setting, recs[mname], metrics)
            ok = {cid: r for cid, r in recs[mname].items() if r is not None and r["status"] == "ok"}
            timings.setdefault(mname, {})[setting] = _timings(ok)
            out: dict[str, Any] = {}
            for name, metric in metrics.items():
                if not metric_applies(metric, setting):
                    continue
                if metric.split_level:
                    _split_level(store, mname, setting, name, metric, ok, common, pfp[name], out, failures)
                else:
                    _per_clip_level(mname, setting, name, metric, ok, ids, common, pfp[name], cfg, rows, out)
            results.setdefault(setting, {})[mname] = out
    store.write_per_clip(rows)
    env = environment()
    summary: dict[str, Any] = {
        "run_id": store.run_id,
        "config": {**dataclasses.asdict(cfg), "clips_selected": clip_ids, "split_path": str(getattr(split, "path", "")),
                   "split_sha256": manifest_sha256(getattr(split, "path", None)),
                   "data_root": str(_root_str(cfg.root))},
        **env,
        "started": None, "finished": None, "wall_s": None,
        "protocols": {n: p.to_dict() for n, p in protocols.items()},
        "metric_config": metric_configs(metrics, cfg),
        "devices": _devices(cfg, metrics),
        "unavailable": dict(unavailable_metrics),
        "unavailable_values": unavailable_values(unavailable_metrics, cfg.settings),
        "methods": {n: method_info(m) for n, m in methods.items()},
        "unavailable_methods": dict(unavailable_methods),
        "plugins": plugins_info(cfg.plugins),
        "results": results,
        "clip_set": clip_sets,
        "settings": setting_coverage(cfg.settings, clip_ids, unpaired),
        "failures": failures,
        "timings": timings,
    }
    return summary


def _devices(cfg: RunConfig, metrics: dict[str, Metric]) -> dict[str, Any]:
    """summary.json's "devices" (harness.devices.devices_record): --device as given, as resolved, per metric."""
    from harness.devices import devices_record

    used = sorted({str(m.device) for m in metrics.values()})
    return devices_record(cfg.device, used[0] if len(used) == 1 else cfg.device, metric_configs(metrics, cfg))


def unavailable_values(unavailable: dict[str, str], settings: list[str]) -> dict[str, dict[str, Any]]:
    """metric -> {"values", "settings" (where it would apply), "higher_is_better"} of each unavailable metric, from
    the registry, so reports and compare show its columns as "—" with the reason (and a report needs no --plugin
    for them); a metric the registry does not know is one value named after itself."""
    from metrics.base import load_all

    reg = load_all()
    out: dict[str, dict[str, Any]] = {}
    for name in unavailable:
        cls = reg.get(name)
        values = list(getattr(cls, "outputs", ()) or (name,))
        where = [s for s in settings if cls is None or metric_applies(cls, s)]
        hib = dict(getattr(cls, "higher_is_better", None) or {})
        out[name] = {"values": values, "settings": where, "higher_is_better": {v: hib.get(v) for v in values if v in hib}}
    return out


def setting_coverage(settings: list[str], clip_ids: list[str], unpaired: list[str]) -> dict[str, Any]:
    """Per setting: the clips it covers of the selection; cross_audio skips (and lists) the unpaired clips."""
    out: dict[str, Any] = {}
    for s in settings:
        skipped = unpaired if s == "cross_audio" else []
        out[s] = {"clips": len(clip_ids) - len(skipped), "of": len(clip_ids)}
        if s == "cross_audio":
            out[s]["skipped_unpaired"] = list(skipped)
            if skipped:
                out[s]["note"] = cross_audio_note(len(clip_ids), skipped)
    return out


def manifest_sha256(path: Any) -> str | None:
    """sha256 of the manifest file the clips came from (None for a split not read from a file)."""
    import hashlib

    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def method_info(m: Method) -> dict[str, Any]:
    """Method.describe(), plus for a method run from its own repository (subprocess baselines expose
    `repo()`) the repository path and its git commit, so a stored number names the code that made it."""
    info = dict(m.describe())
    repo_fn = getattr(m, "repo", None)
    if callable(repo_fn):
        repo = Path(repo_fn())
        info["repo"] = str(repo)
        info["repo_commit"] = git_commit(repo)
    return info


def git_commit(repo: Path) -> str | None:
    """`git -C REPO rev-parse HEAD`, None when REPO is not (the top of) a git checkout or git is absent."""
    import subprocess

    if not repo.is_dir():
        return None
    try:
        top = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = top.stdout.split()
    if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != repo.resolve():
        return None  # not a checkout, or a plain folder inside someone else's checkout
    return lines[1]


def common_clip_set(recs: dict[str, dict[str, dict | None]], clip_ids: list[str]
                    ) -> tuple[list[str], dict[str, list[str]]]:
    """(clips every method finished, {clip_id: methods that failed or lack it}) for one setting."""
    common, excluded = [], {}
    for cid in clip_ids:
        bad = sorted(m for m, by_clip in recs.items() if (by_clip.get(cid) or {}).get("status") != "ok")
        if bad:
            excluded[cid] = bad
        else:
            common.append(cid)
    return common, excluded


def _failures(mname: str, setting: str, recs: dict[str, dict | None], metrics: dict[str, Metric]) -> list[dict]:
    out = []
    for cid, rec in recs.items():
        if rec is None:
            out.append({"method": mname, "setting": setting, "clip_id": cid, "error": "no record (not run)"})
        elif rec["status"] != "ok":
            out.append({"method": mname, "setting": setting, "clip_id": cid, "error": rec.get("error")})
        else:
            for metric, err in sorted(rec.get("metric_errors", {}).items()):
                if metric in metrics:
                    out.append({"method": mname, "setting": setting, "clip_id": cid, "error": f"metric {metric}: {err}"})
    return out


def _timings(ok: dict[str, dict]) -> dict[str, Any]:
    fresh = [r for r in ok.values() if not r.get("generated_from_cache") and r["timings"].get("generate_s") is not None]
    gen = [r["timings"]["generate_s"] for r in fresh]
    gen_frames = sum(int(r.get("n_frames") or 0) for r in fresh)
    return {"generate_s_mean": float(np.mean(gen)) if gen else None, "n_generated": len(gen),
            # wall time of generate() per output frame (whole method on this machine), fresh clips only
            "generate_ms_per_frame": 1000.0 * float(sum(gen)) / gen_frames if gen_frames else None,
            "total_s_sum": float(sum(r["timings"].get("total_s", 0.0) for r in ok.values()))}


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _mean_ci(vals: list[float], cfg: RunConfig) -> tuple[float | None, float | None, float | None]:
    """Mean over the clips, with a bootstrap CI when every value is finite (an inf value makes the mean
    inf and leaves no interval)."""
    if not vals:
        return None, None, None
    mean = float(np.mean(vals))
    if math.isnan(mean):  # +inf and -inf together: no mean to state
        return None, None, None
    if not all(math.isfinite(v) for v in vals):
        return mean, None, None
    lo, hi = bootstrap_ci(vals, n_boot=cfg.n_boot, seed=cfg.seed)
    return mean, lo, hi


def _entry(metric: Metric, name: str, vname: str, mean: float | None, lo: float | None, hi: float | None,
           used: list[str], common: list[str], missing: list[str]) -> dict[str, Any]:
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "n_clips": len(used), "n_common": len(common),
            "n_missing": len(missing), "missing_clips": list(missing),
            "higher_is_better": metric.higher_is_better.get(vname), "metric": name}


def _coverage(ok: dict[str, dict], name: str, used: list[str]) -> dict[str, int]:
    """frames_used / frames_total summed over the clips that entered the value (only if metrics record them)."""
    out: dict[str, int] = {}
    for key in (FRAMES_USED, FRAMES_TOTAL):
        got = [ok[c].get("extra", {}).get(name, {}).get(key) for c in used]
        if any(g is not None for g in got):
            out[key] = int(sum(int(g) for g in got if g is not None))
    return out


def _per_clip_level(mname: str, setting: str, name: str, metric: Metric, ok: dict[str, dict], clip_ids: list[str],
                    common: list[str], fp: str, cfg: RunConfig, rows: list[dict[str, Any]], out: dict[str, Any]) -> None:
    in_common = set(common)
    for vname in metric.outputs:
        vals, used, missing = [], [], []
        for cid in clip_ids:
            r = ok.get(cid)
            if r is None:
                continue
            same = r.get("protocols", {}).get(name) == fp
            v = r.get("values", {}).get(name, {}).get(vname) if same else None
            if same:
                rows.append({"method": mname, "setting": setting, "clip_id": cid, "metric": name,
                             "value_name": vname, "value": v, "protocol": fp})
            if cid not in in_common:
                continue
            if _is_missing(v):
                missing.append(cid)
            else:
                vals.append(float(v))
                used.append(cid)
        key = vname if vname not in out else f"{name}:{vname}"
        out[key] = {**_entry(metric, name, vname, *_mean_ci(vals, cfg), used, common, missing),
                    **_coverage(ok, name, used)}


def _root_str(root: str | None) -> Path:
    from harness.core.paths import data_root

    return data_root(root)


def _split_level(store: RunStore, mname: str, setting: str, name: str, metric: Metric, ok: dict[str, dict],
                 common: list[str], fp: str, out: dict[str, Any], failures: list[dict[str, Any]]) -> None:
    """States pooled over the common clip set only (FID's reference = the ground truth of those clips)."""
    states, used, missing = [], [], []
    for cid in common:
        st = store.read_states(mname, setting, cid).get(name) if ok[cid].get("protocols", {}).get(name) == fp else None
        if st:
            states.append(st)
            used.append(cid)
        else:
            missing.append(cid)
    values: dict[str, float] = {}
    if states:
        try:
            values = metric.aggregate(states)
        except Exception as exc:  # noqa: BLE001 - recorded, the other values still stand
            failures.append({"method": mname, "setting": setting, "clip_id": None,
                             "error": f"metric {name} aggregate: {type(exc).__name__}: {exc}"})
    for vname in metric.outputs:
        v = values.get(vname)
        v = None if v is None or math.isnan(float(v)) else float(v)
        key = vname if vname not in out else f"{name}:{vname}"
        out[key] = {**_entry(metric, name, vname, v, None, None, used, common, missing), "split_level": True}


def _n_cell(vals: dict[str, Any]) -> str:
    """'used/common' clips of a method's values ('4-5/5' when values used different counts)."""
    used = sorted({e.get("n_clips", 0) for e in vals.values()})
    common = max((e.get("n_common", 0) for e in vals.values()), default=0)
    if not used:
        return "—"
    u = str(used[0]) if len(used) == 1 else f"{used[0]}-{used[-1]}"
    return f"{u}/{common}"


def _arrow(by_method: dict[str, dict[str, Any]], value: str) -> str:
    for vals in by_method.values():
        if value in vals:
            hib = vals[value].get("higher_is_better")
            return "" if hib is None else (" ↑" if hib else " ↓")
    return ""


def render_summary(summary: dict[str, Any], console: Any = None) -> None:
    """One rich table per setting: methods x values, mean [95% CI], and n = clips used / common clip set."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for setting, by_method in summary.get("results", {}).items():
        names: list[str] = []
        for vals in by_method.values():
            names += [v for v in vals if v not in names]
        t = Table(title=f"{summary.get('run_id')} — {setting}")
        t.add_column("method")
        t.add_column("n", justify="right")
        for v in names:
            t.add_column(v + _arrow(by_method, v), justify="right")
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
                if e is not None and e.get("n_missing"):
                    cells[-1] += f" ({e['n_missing']} missing)"
            t.add_row(method, _n_cell(vals), *cells)
        console.print(t)
        note = ((summary.get("settings") or {}).get(setting) or {}).get("note")
        if note:
            console.print(note, style="yellow", markup=False, highlight=False)
        excluded = summary.get("clip_set", {}).get(setting, {}).get("excluded", {})
        if excluded:
            console.print(f"[yellow]{setting}: {len(excluded)} clip(s) left out of every method's values[/yellow] "
                          "(failed by: " + "; ".join(f"{c}: {', '.join(ms)}" for c, ms in excluded.items()) + ")",
                          highlight=False)
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
