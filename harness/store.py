"""The run store (format in CONTRIBUTING.md): one folder per run, one JSON record per finished clip, then
per_clip.csv, timings.json and summary.json. Every write is atomic (temp file + fsync + os.replace), so a
killed run leaves only whole records and a rerun resumes from them.

summary.json and per_clip.csv hold only what the records and the run's identity determine, so a run killed
at any moment and resumed writes them byte for byte as an uninterrupted run does (tests/test_crash_points.py).
What measures time (WALL_CLOCK: started, finished, wall_s, first_started, timings) goes to timings.json;
read_summary() / load_run() put it back, so readers see one dict."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.core.errors import BenchError
from harness.core.faults import fault_point
from harness.core.fsutil import TMP_PREFIX, atomic_write_bytes
from harness.core.fsutil import atomic_write_json as fs_atomic_write_json

RECORD_VERSION = 1
PER_CLIP_COLUMNS = ("method", "setting", "clip_id", "metric", "value_name", "value", "protocol")
# summary keys that measure time: they differ between two runs of the same numbers, so they live in timings.json
WALL_CLOCK = ("started", "finished", "wall_s", "first_started", "timings")


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


def _json_bytes(value: Any) -> bytes:
    return json.dumps(to_jsonable(value), indent=2, default=str, allow_nan=True).encode()


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
    def timings_path(self) -> Path:
        return self.root / "timings.json"

    @property
    def run_config_path(self) -> Path:
        return self.root / "run.json"

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

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
        fault_point("record")  # states and video on disk, no record: the clip is redone on resume
        p = self.record_path(m, s, c)
        atomic_write_bytes(p, _json_bytes(record), fault="record-replace")
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
            if p.name.startswith(TMP_PREFIX):
                continue  # a killed writer's temp file (pathlib's glob matches dot files)
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
        atomic_write_bytes(self.per_clip_path, buf.getvalue().encode(), fault="per-clip")

    def write_summary(self, summary: dict[str, Any]) -> None:
        """timings.json (the WALL_CLOCK keys), then summary.json (everything else) last: summary.json on disk
        means the run finished. The caller's dict is left whole."""
        timings = {k: summary[k] for k in WALL_CLOCK if k in summary}
        atomic_write_bytes(self.timings_path, _json_bytes(timings), fault="timings")
        rest = {k: v for k, v in summary.items() if k not in WALL_CLOCK}
        atomic_write_bytes(self.summary_path, _json_bytes(rest), fault="summary")

    def read_summary(self) -> dict[str, Any]:
        """summary.json with timings.json's keys put back (ValueError / OSError when summary.json is unreadable;
        a missing or unreadable timings.json leaves the summary without them)."""
        return merge_timings(json.loads(self.summary_path.read_text()), self.timings_path)


def merge_timings(summary: Any, timings_path: Path) -> Any:
    """summary (as read from summary.json) plus the wall-clock keys kept in timings.json beside it."""
    if not isinstance(summary, dict):
        return summary
    try:
        timings = json.loads(timings_path.read_text())
    except (OSError, ValueError):
        return summary
    if isinstance(timings, dict):
        summary.update({k: v for k, v in timings.items() if k in WALL_CLOCK and k not in summary})
    return summary


def sweep_temp_files(root: Path) -> int:
    """Delete the temp files killed writers left in a run folder (call only while holding its RunLock)."""
    n = 0
    for sub in (root, root / "clips", root / "videos"):
        if not sub.is_dir():
            continue
        paths = sub.glob(f"{TMP_PREFIX}*") if sub == root else sub.rglob(f"{TMP_PREFIX}*")
        for p in paths:
            if p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


LOCK_NAME = "run.lock"


class RunLock:
    """One writer per run folder: two `run`s into one folder would interleave records and summaries.

    The lock file holds {pid, host, started} for the message a second run prints; exclusion itself is a
    kernel flock on that file, which dies with its process, so a lock left by a killed run (kill -9, a lost
    node) is taken over without guessing from pids (a reused pid cannot fake a live holder)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None  # the stale holder replaced, if any
        self.swept = 0  # temp files of killed writers removed on acquire

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # no flock on this platform: run unlocked rather than not at all
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise BenchError(
                    f"another run is writing this folder (pid {holder.get('pid', '?')} on host "
                    f"{holder.get('host', '?')}, since {holder.get('started', '?')})", self.root,
                    hint=f"wait for it to finish, or use another --out; {LOCK_NAME} is released when that process ends")
            try:  # the file may have been unlinked by its releasing holder between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        prior = _read_holder(fd)
        self.took_over = prior or None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        self.swept = sweep_temp_files(self.root)  # sole writer now: any temp file is a dead writer's
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # unlink before unlocking: a waiter re-checks the inode
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data.decode()) if data.strip() else {}
    except (OSError, ValueError):
        holder = {}
    return holder if isinstance(holder, dict) else {}


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
        summary = merge_timings(json.loads(sp.read_text()), root / "timings.json")
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
