"""Read a run store (see CONTRIBUTING.md) into one object the report pieces share."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import BenchError


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


def load_run(path: str | Path) -> RunData:
    p = Path(path)
    summary_path = p / "summary.json"
    if not summary_path.exists():
        raise BenchError("not a run store (no summary.json)", p)
    try:
        summary = json.loads(summary_path.read_text())
    except ValueError as exc:
        raise BenchError(f"summary.json is not valid JSON: {exc}", summary_path) from exc
    csv = p / "per_clip.csv"
    per_clip = pd.read_csv(csv) if csv.exists() and csv.stat().st_size else pd.DataFrame(
        columns=["method", "setting", "clip_id", "metric", "value_name", "value", "protocol"])
    return RunData(p, summary, per_clip)
