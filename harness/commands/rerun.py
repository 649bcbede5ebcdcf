"""`realtalk-bench rerun RUN_DIR [--out NEW]`: replay a stored run from the configuration it recorded.

Into NEW every clip is evaluated again (a reproduction check: same per_clip.csv when nothing changed);
without --out the run is resumed in place (finished clips are kept, the tables rebuilt). Only where the
run executes may be changed (data root, executor, workers): the numbers' identity comes from the store."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from harness.core.errors import BenchError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from harness.executors import EXECUTORS

    p = subparsers.add_parser("rerun", help="replay a stored run from its recorded config (into --out NEW)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `realtalk-bench run`")
    p.add_argument("--out", default=None, help="new run folder (default: resume RUN_DIR in place)")
    p.add_argument("--root", default=None, help="data root, when the media now live elsewhere")
    p.add_argument("--executor", default=None, choices=list(EXECUTORS), help="default: the stored one")
    p.add_argument("--workers", type=int, default=None, help="processes executor: workers (default: the stored value)")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when clips failed")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def stored_config(run_dir: str | Path, console: Any = None) -> Any:
    """The RunConfig a run folder recorded (run.json, else summary.json's config)."""
    from harness.runner import RunConfig, _say
    from harness.store import RunStore

    store = RunStore(run_dir)
    rc = store.read_run_config()
    config = (rc or {}).get("config")
    if config is None:
        try:
            config = json.loads(store.summary_path.read_text()).get("config")
        except (OSError, ValueError):
            config = None
    if not isinstance(config, dict):
        raise BenchError("not a run store (no readable run.json or summary.json with a config)", store.root)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(config) - fields - {"clips_selected", "split_path", "split_sha256", "data_root"})
    if unknown:
        _say(console, f"note: {store.root}: stored options unknown to this version, ignored: {', '.join(unknown)}")
    missing = [k for k in ("split", "out", "methods") if k not in config]
    if missing:
        raise BenchError(f"stored config lacks {', '.join(missing)}", store.run_config_path)
    return RunConfig(**{k: v for k, v in config.items() if k in fields})


def _check_manifest(run_dir: Path, cfg: Any, console: Any) -> Any:
    """Use the stored manifest path when the stored split name no longer resolves from here, and warn
    when the manifest's bytes changed since the run (its sha256 is in the summary)."""
    from harness.runner import _say, manifest_sha256
    from harness.core.splits import load_split

    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return cfg
    stored = summary.get("config", {})
    try:
        split = load_split(cfg.split)
    except BenchError:
        if stored.get("split_path") and Path(stored["split_path"]).is_file():
            cfg = dataclasses.replace(cfg, split=stored["split_path"])
            split = load_split(cfg.split)
        else:
            raise
    then, now = stored.get("split_sha256"), manifest_sha256(split.path)
    if then and then != now:
        _say(console, f"WARNING: manifest {split.path} changed since the run (sha256 {then[:12]}… then, "
                      f"{(now or 'none')[:12]}… now): the replay may give other numbers")
    return cfg


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.commands.run import run_and_report

    console = Console()
    run_dir = Path(args.run_dir)
    cfg = stored_config(run_dir, console)
    cfg = _check_manifest(run_dir, cfg, console)
    changes: dict[str, Any] = {"out": args.out or str(run_dir)}
    for key in ("root", "executor", "workers"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    cfg = dataclasses.replace(cfg, **changes)
    console.print(f"replaying {run_dir} into {cfg.out}" + ("" if args.out else " (in place: finished clips kept)"),
                  highlight=False)
    return run_and_report(cfg, args.no_progress, args.allow_failures)
