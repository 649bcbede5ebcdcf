"""`realtalk-bench merge SHARD_DIR... --out DIR`: the stores of `run --shard I/N` -> one store.

The shards' clip records (and states, videos) are linked or copied into DIR, and per_clip.csv and
summary.json are rebuilt from them by the runner's own finalize over the whole clip selection: the common
clip set, bootstrap CIs and split-level values (FID) are those of one unsharded run. Only shards of one run
merge: the same run identity apart from the shard, the same manifest bytes, method fingerprints and metric
protocols; anything else is refused, since the numbers would not be one run's. A missing shard is not
refused: its clips appear as failures ("no record (not run)"), as in an unfinished run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness.core.errors import BenchError
from harness.runner import (RunConfig, check_same_run, build_metrics, finalize, manifest_sha256, resolve_device,
                            select_clips)
from harness.shards import parse_shard
from harness.store import RunLock, RunStore, atomic_write_json

# Summary parts every shard must agree on (beyond the run identity in run.json).
SAME_IN_EVERY_SHARD = ("methods", "protocols", "metric_config", "unavailable", "unavailable_methods")


class StoredMethod:
    """A method as the shards described it: finalize needs only its name and description, so a merge
    does not need the method's repository or weights on the merging machine."""

    def __init__(self, info: dict[str, Any]):
        self.info = info

    def describe(self) -> dict[str, Any]:
        return dict(self.info)


def _read_shard(d: str) -> tuple[RunStore, dict[str, Any], dict[str, Any]]:
    store = RunStore(d)
    rc = store.read_run_config()
    if rc is None:
        raise BenchError("not a run store (no readable run.json)", store.root)
    try:
        summary = store.read_summary()  # with timings.json (started, finished, wall_s)
    except (OSError, ValueError):
        raise BenchError("not a finished run (no readable summary.json): finish it with its own run command",
                         store.root) from None
    return store, rc, summary


def _identity(rc: dict[str, Any]) -> dict[str, Any]:
    ident = json.loads(json.dumps(rc.get("identity", {}), default=str))
    ident.pop("shard", None)
    ident.setdefault("metric_args", {})
    return ident


def _check_shards(shards: list[tuple[RunStore, dict[str, Any], dict[str, Any]]]) -> tuple[int, list[int]]:
    """(N, missing shard numbers); BenchError when the stores are not shards of one run."""
    first_store, first_rc, first_sum = shards[0]
    base = _identity(first_rc)
    seen: dict[int, Path] = {}
    n_all = None
    for store, rc, summary in shards:
        ident = _identity(rc)
        if ident != base:
            diff = [k for k in sorted(set(base) | set(ident)) if base.get(k) != ident.get(k)]
            raise BenchError(f"holds a different run than {first_store.root} (differs in: {', '.join(diff)}); "
                             f"only shards of one run merge", store.root)
        for key in SAME_IN_EVERY_SHARD + ("config.split_sha256",):
            a = _get(first_sum, key)
            b = _get(summary, key)
            if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
                raise BenchError(f"differs from {first_store.root} in summary {key} (other models, manifest or "
                                 f"metric versions on that machine); only shards of one run merge", store.root)
        parsed = parse_shard(rc.get("identity", {}).get("shard"))
        if parsed is None:
            raise BenchError("is not a shard (it was run without --shard); merge combines `run --shard I/N` stores",
                             store.root)
        i, n = parsed
        if n_all is not None and n != n_all:
            raise BenchError(f"is shard {i}/{n}, the others are of {n_all}; only shards of one split merge", store.root)
        n_all = n
        if i in seen:
            raise BenchError(f"is shard {i}/{n} again (also {seen[i]})", store.root)
        seen[i] = store.root
    assert n_all is not None
    return n_all, [i for i in range(1, n_all + 1) if i not in seen]


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _place(src: Path, dst: Path) -> None:
    """dst = src's bytes, atomically; a hard link when both are on one filesystem (records are never
    modified in place, only replaced, so a link cannot change the shard behind its back)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".tmp-merge-{os.getpid()}-{dst.name}"
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def copy_records(shards: list[RunStore], out: RunStore) -> int:
    """Every record, states file and video of the shards into out; the same file from two shards with
    different bytes is refused (two shards evaluated one clip differently)."""
    origin: dict[Path, Path] = {}
    n = 0
    for store in shards:
        for sub in ("clips", "videos"):
            base = store.root / sub
            if not base.is_dir():
                continue
            for src in sorted(base.rglob("*")):
                if not src.is_file() or src.name.startswith(".tmp-"):
                    continue
                rel = src.relative_to(store.root)
                dst = out.root / rel
                if rel in origin:
                    if not _same_bytes(origin[rel], src):
                        raise BenchError(f"{rel} differs between {origin[rel].parents[len(rel.parts) - 1]} and "
                                         f"{store.root}: a clip evaluated in two shards", src)
                    continue
                origin[rel] = src
                if not (dst.exists() and _same_bytes(dst, src)):
                    _place(src, dst)
                n += rel.parts[0] == "clips" and src.suffix == ".json"
    return n


def merge_runs(run_dirs: list[str], out: str, console: Any = None) -> dict[str, Any]:
    """Merge shard stores into out; returns the merged summary (written to out/summary.json)."""
    from harness.plugins import load_plugins
    from harness.runner import _say

    if not run_dirs:
        raise BenchError("merge: give the shard run folders to combine")
    out_p = Path(out)
    for d in run_dirs:
        if Path(d).resolve() == out_p.resolve():
            raise BenchError("--out is one of the shards; merge into a new folder", d)
    shards = [_read_shard(d) for d in run_dirs]
    n, missing = _check_shards(shards)
    _, rc0, sum0 = shards[0]
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    cfg = RunConfig(**{**{k: v for k, v in rc0["config"].items() if k in fields}, "shard": None, "out": str(out)})
    load_plugins(cfg.plugins)
    split, clips, _ = select_clips(cfg)
    sha_now, sha_then = manifest_sha256(getattr(split, "path", None)), _get(sum0, "config.split_sha256")
    if sha_now != sha_then:
        raise BenchError(f"the manifest changed since the shards ran (sha256 {sha_then} then, {sha_now} now)",
                         getattr(split, "path", None))
    metrics, unavailable = build_metrics(cfg, resolve_device(cfg.device))
    lost = sorted(set(sum0.get("protocols", {})) - set(metrics))
    if lost:
        raise BenchError(f"metric(s) {', '.join(lost)} cannot be built here ({'; '.join(unavailable.get(m, '?') for m in lost)}); "
                         f"merge where they are available")
    from harness.core.faces.tracking import with_tracking

    for name, m in metrics.items():
        if json.dumps(with_tracking(m.protocol(), cfg.face_detector).to_dict(), sort_keys=True, default=str) != \
                json.dumps(sum0["protocols"].get(name), sort_keys=True, default=str):
            raise BenchError(f"metric {name}: its protocol here differs from the shards' (other weights or version); "
                             f"merge on a machine set up like theirs")
    metrics = {k: v for k, v in metrics.items() if k in sum0.get("protocols", {})}
    methods = {k: StoredMethod(v) for k, v in sum0.get("methods", {}).items()}
    if missing:
        _say(console, f"WARNING: shard(s) {', '.join(f'{i}/{n}' for i in missing)} not given: their clips are "
                      f"reported as failures (no record)")
    store = RunStore(out_p)
    with RunLock(out_p):
        check_same_run(store, cfg)
        n_rec = copy_records([s for s, _, _ in shards], store)
        first = min(str(rc.get("first_started") or s.get("started") or "") for _, rc, s in shards) or None
        atomic_write_json(store.run_config_path, {
            "identity": cfg.identity(), "config": dataclasses.asdict(cfg), "first_started": first,
            "merged_from": [{"dir": str(st.root.resolve()), "shard": rc["identity"].get("shard"),
                             "started": s.get("started"), "finished": s.get("finished"), "wall_s": s.get("wall_s")}
                            for st, rc, s in shards]})
        summary = finalize(store, cfg, split, clips, methods, metrics, dict(sum0.get("unavailable") or {}),
                           dict(sum0.get("unavailable_methods") or {}))
        starts = [s.get("started") for _, _, s in shards if s.get("started")]
        ends = [s.get("finished") for _, _, s in shards if s.get("finished")]
        walls = [float(s["wall_s"]) for _, _, s in shards if s.get("wall_s") is not None]
        summary["started"] = min(starts) if starts else None  # earliest shard start
        summary["finished"] = max(ends) if ends else None  # latest shard end
        summary["wall_s"] = round(sum(walls), 3)  # machine time: the shards' wall times summed
        summary["first_started"] = first
        store.write_summary(summary)
    _say(console, f"merged {len(shards)} of {n} shard(s), {n_rec} clip record(s) -> {out_p}")
    return summary
