"""Read a run store (see CONTRIBUTING.md) into one object the report pieces share."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.errors import BenchError
from metrics.base import FRAMES_TOTAL, FRAMES_USED


@dataclass
class RunData:
    path: Path
    summary: dict[str, Any]
    per_clip: pd.DataFrame  # long format: method, setting, clip_id, metric, value_name, value, protocol

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id", self.path.name))

    @property
    def split(self) -> str:
        return str(self.summary.get("config", {}).get("split", "?"))

    def methods(self) -> list[str]:
        names: list[str] = []
        for by_method in self.summary.get("results", {}).values():
            names += [m for m in by_method if m not in names]
        return names

    def video(self, method: str, setting: str, clip_id: str) -> Path:
        return self.path / "videos" / method / setting / f"{clip_id}.mp4"

    def coverage(self) -> dict[tuple[str, str, str], dict[str, tuple[int, int]]]:
        """(method, setting, clip_id) -> {metric: (frames_used, frames_total)} from the clip records that have it."""
        out: dict[tuple[str, str, str], dict[str, tuple[int, int]]] = {}
        for p in sorted((self.path / "clips").glob("*/*/*.json")):
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(rec, dict):
                continue
            for metric, extra in (rec.get("extra") or {}).items():
                if isinstance(extra, dict) and extra.get(FRAMES_USED) is not None and extra.get(FRAMES_TOTAL):
                    key = (rec.get("method"), rec.get("setting"), rec.get("clip_id"))
                    out.setdefault(key, {})[metric] = (int(extra[FRAMES_USED]), int(extra[FRAMES_TOTAL]))
        return out


def load_run(path: str | Path) -> RunData:
    p = Path(path)
    summary_path = p / "summary.json"
    if not summary_path.exists():
        raise BenchError("not a run store (no summary.json)", p)
    try:
        summary = json.loads(summary_path.read_text())
    except ValueError as exc:
        raise BenchError(f"summary.json is not valid JSON: {exc}", summary_path) from exc
    try:  # wall-clock keys (started, wall_s, timings, ...) live beside it (harness/store.py WALL_CLOCK)
        timings = json.loads((p / "timings.json").read_text())
    except (OSError, ValueError):
        timings = {}
    results = summary.get("results", {}) if isinstance(summary, dict) else None
    if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
        raise BenchError("summary.json is not a run summary (an object whose 'results' maps setting -> method)",
                         summary_path)
    if isinstance(timings, dict):
        summary.update({k: v for k, v in timings.items() if k not in summary})
    csv = p / "per_clip.csv"
    cols = ["method", "setting", "clip_id", "metric", "value_name", "value", "protocol"]
    try:
        per_clip = pd.read_csv(csv) if csv.exists() and csv.stat().st_size else pd.DataFrame(columns=cols)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise BenchError(f"per_clip.csv is not readable as CSV: {exc}".splitlines()[0], csv) from None
    if missing := [c for c in ("method", "setting", "clip_id", "value_name", "value") if c not in per_clip.columns]:
        raise BenchError(f"per_clip.csv lacks column(s) {', '.join(missing)} (cut short or not a run's table?)", csv)
    return RunData(p, summary, per_clip)
