"""The run store (format in CONTRIBUTING.md): one folder per run, one JSON record per finished clip, then
per_clip.csv and summary.json. Every write is atomic (temp file + os.replace), so a killed run leaves
only whole records and a rerun resumes from them."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.errors import BenchError
from harness.fsutil import atomic_write_bytes
from harness.fsutil import atomic_write_json as fs_atomic_write_json

RECORD_VERSION = 1
PER_CLIP_COLUMNS = ("method", "setting", "clip_id", "metric", "value_name", "value", "protocol")


def to_jsonable(x: Any) -> Any:
    """JSON-ready values without numpy types. NaN becomes null; +/-inf is kept (written as Infinity, which
    Python's json and pandas read back): PSNR of identical frames is +inf, and null would hide that."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return None if math.isnan(f) else f
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


def atomic_write_json(dst: Path, value: Any) -> None:
    fs_atomic_write_json(dst, to_jsonable(value))


class RunStore:
    """Paths and reads/writes of one run folder runs/<ID>/."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def run_id(self) -> str:
        return self.root.resolve().name

    # paths -----------------------------------------------------------------------------------------
    def record_path(self, method: str, setting: str, clip_id: str) -> Path:
        return self.root / "clips" / method / setting / f"{clip_id}.json"

    def states_path(self, method: str, setting: str, clip_id: str) -> Path:
        return self.root / "clips" / method / setting / f"{clip_id}.states.npz"

    def video_path(self, method: str, setting: str, clip_id: str) -> Path:
        return self.root / "videos" / method / setting / f"{clip_id}.mp4"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def per_clip_path(self) -> Path:
        return self.root / "per_clip.csv"

    @property
    def run_config_path(self) -> Path:
        return self.root / "run.json"

    # records ---------------------------------------------------------------------------------------
    def read_record(self, method: str, setting: str, clip_id: str) -> dict[str, Any] | None:
        p = self.record_path(method, setting, clip_id)
        if not p.exists():
            return None
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            return None  # unreadable record: the clip is redone
        return rec if isinstance(rec, dict) and rec.get("status") in ("ok", "failed") else None

    def write_record(self, record: dict[str, Any], states: dict[str, np.ndarray] | None = None,
                     video: bytes | None = None) -> Path:
        """States and video first, record last: a record on disk means the clip is complete."""
        m, s, c = record["method"], record["setting"], record["clip_id"]
        if states:
            buf = io.BytesIO()
            np.savez(buf, **states)
            atomic_write_bytes(self.states_path(m, s, c), buf.getvalue())
            record["states"] = str(self.states_path(m, s, c).relative_to(self.root))
        if video is not None:
            atomic_write_bytes(self.video_path(m, s, c), video)
            record["video"] = str(self.video_path(m, s, c).relative_to(self.root))
        record.setdefault("record_version", RECORD_VERSION)
        p = self.record_path(m, s, c)
        atomic_write_json(p, record)
        return p

    def read_states(self, method: str, setting: str, clip_id: str) -> dict[str, dict[str, np.ndarray]]:
        """{metric: {key: array}} from a clip's states file ({} when it has none)."""
        p = self.states_path(method, setting, clip_id)
        if not p.exists():
            return {}
        out: dict[str, dict[str, np.ndarray]] = {}
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                metric, key = k.split("__", 1)
                out.setdefault(metric, {})[key] = z[k]
        return out

    def iter_records(self) -> Iterator[dict[str, Any]]:
        base = self.root / "clips"
        if not base.exists():
            return
        for p in sorted(base.glob("*/*/*.json")):
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and "status" in rec:
                yield rec

    # run config ------------------------------------------------------------------------------------
    def read_run_config(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.run_config_path.read_text())
        except (OSError, ValueError):
            return None

    # final outputs ---------------------------------------------------------------------------------
    def write_per_clip(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(PER_CLIP_COLUMNS), lineterminator="\n")
        w.writeheader()
        for r in rows:
            v = r["value"]
            w.writerow({**r, "value": "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else repr(float(v))})
        atomic_write_bytes(self.per_clip_path, buf.getvalue().encode())

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)


def flatten_states(states: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """{metric: {key: arr}} -> {"metric__key": arr} for one npz file."""
    return {f"{m}__{k}": np.asarray(v) for m, d in states.items() for k, v in d.items()}


def load_run(run_dir: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, per-clip rows) of a finished run; BenchError naming the file when it is not one."""
    root = Path(run_dir)
    sp = root / "summary.json"
    if not sp.exists():
        raise BenchError("not a finished run (no summary.json)", root,
                         hint="finish it with the same `realtalk-bench run ... --out` command")
    try:
        summary = json.loads(sp.read_text())
    except ValueError as exc:
        raise BenchError(f"summary.json is not valid JSON ({exc})", sp) from exc
    rows: list[dict[str, Any]] = []
    pc = root / "per_clip.csv"
    if pc.exists():
        with open(pc, newline="") as f:
            for r in csv.DictReader(f):
                r["value"] = float(r["value"]) if r.get("value") not in (None, "") else None
                rows.append(r)
    return summary, rows
