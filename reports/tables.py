"""The paper-style table (layout of RealTalk's Table 2) as a plain data model the exporters render.

Rows: dataset (split) x method. Column groups: Reconstruction (LMD, M-LMD, F-LMD, FID, LPIPS, SSIM,
Sync_conf), Cross Audio (FID, CSIM, Sync_conf), Runtime (ms). Each cell knows its mean, CI, direction
and rank (1 = best -> bold, 2 = second -> underlined); an unavailable metric is "—" with a footnote.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from reports.load import RunData

# (group, header, setting, value_name); Sync_conf is SyncNet's LSE-C.
PAPER_COLUMNS: list[tuple[str, str, str, str]] = [
    ("Reconstruction", "LMD", "reconstruction", "LMD"),
    ("Reconstruction", "M-LMD", "reconstruction", "M-LMD"),
    ("Reconstruction", "F-LMD", "reconstruction", "F-LMD"),
    ("Reconstruction", "FID", "reconstruction", "FID"),
    ("Reconstruction", "LPIPS", "reconstruction", "LPIPS"),
    ("Reconstruction", "SSIM", "reconstruction", "SSIM"),
    ("Reconstruction", "Sync_conf", "reconstruction", "LSE-C"),
    ("Cross Audio", "FID", "cross_audio", "FID"),
    ("Cross Audio", "CSIM", "cross_audio", "CSIM"),
    ("Cross Audio", "Sync_conf", "cross_audio", "LSE-C"),
]
RUNTIME_HEADER = "Runtime (ms)"
REFERENCE_METHODS = {"ground_truth", "static_frame"}  # fallback when a run does not record method kinds
# higher_is_better of each value, for headers of columns no method could compute
KNOWN_DIRECTION = {"LMD": False, "M-LMD": False, "F-LMD": False, "FID": False, "LPIPS": False, "SSIM": True,
                   "PSNR": True, "CSIM": True, "LSE-C": True, "LSE-D": False}  # shown, but not ranked (it is the target, not a competitor)


@dataclass
class Cell:
    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    higher_is_better: bool | None = None
    rank: int | None = None
    footnote: int | None = None  # index into Table.footnotes when unavailable

    @property
    def available(self) -> bool:
        return self.mean is not None and not (isinstance(self.mean, float) and math.isnan(self.mean))

    def text(self, digits: int = 3) -> str:
        if not self.available:
            return "—"
        assert self.mean is not None
        return "inf" if math.isinf(self.mean) else f"{self.mean:.{digits}f}"

    def ci_text(self, digits: int = 3) -> str:
        if not self.available or self.ci_low is None or self.ci_high is None:
            return ""
        if any(math.isinf(v) or math.isnan(v) for v in (self.ci_low, self.ci_high)):
            return ""
        return f"[{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"


@dataclass
class Row:
    dataset: str
    method: str
    cells: list[Cell]
    runtime: Cell = field(default_factory=Cell)


@dataclass
class Table:
    columns: list[tuple[str, str, str, str]]
    rows: list[Row]
    footnotes: list[str]

    def arrows(self) -> list[str]:
        """↑ / ↓ per column from the first row that knows the direction (else the metric's known one)."""
        out = []
        for j, col in enumerate(self.columns):
            hib = next((r.cells[j].higher_is_better for r in self.rows if r.cells[j].higher_is_better is not None),
                       KNOWN_DIRECTION.get(col[3]))
            out.append("" if hib is None else ("↑" if hib else "↓"))
        return out


def _runtime_ms(run: RunData, method: str) -> float | None:
    return _runtime(run, method)[0]


def _runtime(run: RunData, method: str) -> tuple[float | None, str | None]:
    """(ms per frame, source). Preferred: the run's latency results, the sum of the method's stages' p50 at
    the timed batch (the paper's Runtime column). Else the wall time of the method's generate() per frame
    in this run (the whole method, face tracking included), reconstruction setting first."""
    lat = run.summary.get("latency", {}).get(method)
    if lat:
        stages = [s for name, s in lat.items() if name != "all"]
        if stages:
            dev = stages[0].get("device_name") or stages[0].get("device", "?")
            return float(sum(s["p50_ms_per_frame"] for s in stages)), f"Runtime: sum of per-stage p50 latency on {dev}"
    for setting in ("reconstruction", "cross_audio"):
        ms = run.summary.get("timings", {}).get(method, {}).get(setting, {}).get("generate_ms_per_frame")
        if ms is not None:
            gpu = run.summary.get("gpu") or "CPU"
            return float(ms), (f"Runtime: wall time of the whole method per generated frame in this run ({gpu}; "
                               "face tracking included), not per-stage latency: see `realtalk-bench latency --run`")
    return None, None


def _is_reference(run: RunData, method: str) -> bool:
    """Reference methods (ground truth, static frame) are shown but not ranked: they are not competitors."""
    kind = run.summary.get("methods", {}).get(method, {}).get("kind")
    return kind == "reference" if kind else method in REFERENCE_METHODS


def _rank(rows: list[Row], get, run: RunData) -> None:
    """Rank available cells of one column among competitor rows: 1 best, 2 second."""
    cands = [(get(r), r) for r in rows if not _is_reference(run, r.method) and get(r).available]
    if not cands:
        return
    hib = cands[0][0].higher_is_better
    values = sorted({c.mean for c, _ in cands}, reverse=bool(hib))
    for c, _ in cands:
        c.rank = values.index(c.mean) + 1


def paper_table(runs: list[RunData], columns: list[tuple[str, str, str, str]] | None = None) -> Table:
    """Build the table from one or more runs (each run contributes its split as a dataset block)."""
    columns = columns or PAPER_COLUMNS
    footnotes: list[str] = []
    rows: list[Row] = []
    for run in runs:
        results = run.summary.get("results", {})
        unavailable = run.summary.get("unavailable", {})
        block: list[Row] = []
        for method in run.methods():
            cells = []
            for _, _, setting, value_name in columns:
                v = results.get(setting, {}).get(method, {}).get(value_name)
                cell = Cell()
                if v is not None and v.get("mean") is not None:
                    cell = Cell(v["mean"], v.get("ci_low"), v.get("ci_high"), v.get("higher_is_better"))
                else:
                    reason = _reason(unavailable, value_name, setting, method, results)
                    if reason not in footnotes:
                        footnotes.append(reason)
                    cell.footnote = footnotes.index(reason) + 1
                cells.append(cell)
            rt, source = _runtime(run, method)
            rt_cell = Cell(rt, higher_is_better=False) if rt is not None else Cell()
            if source:
                if source not in footnotes:
                    footnotes.append(source)
                rt_cell.footnote = footnotes.index(source) + 1
            block.append(Row(run.split, method, cells, rt_cell))
        for j in range(len(columns)):
            _rank(block, lambda r, j=j: r.cells[j], run)
        _rank(block, lambda r: r.runtime, run)
        rows += block
    return Table(columns, rows, footnotes)


_VALUE_TO_METRIC = {"LMD": "lmd", "M-LMD": "lmd", "F-LMD": "lmd", "FID": "fid", "LPIPS": "lpips", "SSIM": "ssim",
                    "PSNR": "psnr", "CSIM": "csim", "LSE-C": "syncnet", "LSE-D": "syncnet"}


def _reason(unavailable: dict[str, str], value_name: str, setting: str, method: str, results: dict[str, Any]) -> str:
    metric = _VALUE_TO_METRIC.get(value_name, value_name.lower())
    for name, why in unavailable.items():
        if name == metric or name.startswith(metric):
            return f"{value_name}: {why}"
    if setting not in results:
        return f"{value_name}: setting {setting} was not run"
    if method not in results.get(setting, {}):
        return f"{value_name}: {method} was not run in {setting}"
    return f"{value_name}: not in this run's {setting} results (not requested, or failed: see the run's failures)"
