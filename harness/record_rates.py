"""Per-frame generation and metric rates from a run store's clip records (clips/<method>/<setting>/<id>.json,
written by harness/runner.py): the one parser behind the benchmarks that read them (tests/benchmarks/
device_check.py part (e), tests/benchmarks/gpu_path.py), so the two never count frames two ways.

A stage's rate pools its records: frames summed over the records that timed it / seconds summed. Records a
rate cannot use are counted, never dropped silently: failed records (`failed`), and records whose generated
frames came from the cache (`from_cache`: their generate_s is a cache read, so they are left out of
"generate" but their metric timings count)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

GENERATE = "generate"  # the method's generate_s
SUITE = "metrics"  # every metric of a record together (the sum of its per-metric seconds)


@dataclass
class StageRate:
    frames: int = 0
    seconds: float = 0.0

    def add(self, frames: int, seconds: float) -> None:
        self.frames += frames
        self.seconds += seconds

    @property
    def ms_per_frame(self) -> float | None:
        return 1e3 * self.seconds / self.frames if self.frames else None

    @property
    def frames_per_s(self) -> float | None:
        return self.frames / self.seconds if self.seconds > 0 else None


@dataclass
class MethodRates:
    stages: dict[str, StageRate] = field(default_factory=dict)  # GENERATE, SUITE and each metric's name
    records: int = 0  # ok records read
    failed: int = 0  # records with status != ok (no timings to use)
    from_cache: int = 0  # ok records whose generation was a cache read (not in GENERATE)

    def stage(self, name: str) -> StageRate:
        return self.stages.setdefault(name, StageRate())


def record_rates(run_dir: str | Path, setting: str | None = None) -> dict[str, MethodRates]:
    """{method: MethodRates} over the run's clip records (of one setting, or all). Reads only the JSON records,
    stdlib only (the device machine has no PyAV, dlib or PyPI)."""
    out: dict[str, MethodRates] = {}
    for p in sorted((Path(run_dir) / "clips").glob("*/*/*.json")):
        rec = json.loads(p.read_text())
        if setting is not None and rec.get("setting") != setting:
            continue
        mr = out.setdefault(str(rec.get("method", p.parent.parent.name)), MethodRates())
        if rec.get("status") != "ok":
            mr.failed += 1
            continue
        mr.records += 1
        n = int(rec.get("n_frames") or 0)
        timings = rec.get("timings") or {}
        if rec.get("generated_from_cache"):
            mr.from_cache += 1
        elif timings.get("generate_s") is not None:
            mr.stage(GENERATE).add(n, float(timings["generate_s"]))
        metrics = {k: float(v) for k, v in (timings.get("metrics") or {}).items() if v is not None}
        for name, s in metrics.items():
            mr.stage(name).add(n, s)
        if metrics:
            mr.stage(SUITE).add(n, sum(metrics.values()))
    return out
