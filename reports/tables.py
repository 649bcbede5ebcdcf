"""The paper-style table (layout of RealTalk's Table 2) as a plain data model the exporters render.

Rows: dataset (split) x method. Column groups: Reconstruction (LMD, M-LMD, F-LMD, FaceCov, FID, LPIPS, SSIM,
Sync_conf + its offset, AV-corr + its offset), Cross Audio (FID, CSIM, Sync_conf + offset, AV-corr + offset),
Runtime (ms); each group also shows n, the clips its means are over. A cell knows its mean, CI, direction,
rank (1 best -> bold, 2 second -> underlined; only among two or more ranked, non-reference methods) and
flags (worse than the static-frame floor, low coverage). An unavailable metric is "—" with a footnote.
Informational values (higher_is_better None, e.g. AV offsets in frames) get no arrow and no rank.
Directions come from what the run recorded (summary.json results' higher_is_better), else the metric
registry (plugins included), so a plugin metric gets its arrows; a metric the paper layout does not place
(PSNR, a plugin's values) is appended to its setting's group as an extra column, never dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from reports.load import RunData

# (group, header, setting, value_name); Sync_conf is SyncNet's LSE-C, *_off the AV offsets in frames.
PAPER_COLUMNS: list[tuple[str, str, str, str]] = [
    ("Reconstruction", "LMD", "reconstruction", "LMD"),
    ("Reconstruction", "M-LMD", "reconstruction", "M-LMD"),
    ("Reconstruction", "F-LMD", "reconstruction", "F-LMD"),
    ("Reconstruction", "FaceCov", "reconstruction", "FaceCov"),
    ("Reconstruction", "FID", "reconstruction", "FID"),
    ("Reconstruction", "LPIPS", "reconstruction", "LPIPS"),
    ("Reconstruction", "SSIM", "reconstruction", "SSIM"),
    ("Reconstruction", "Sync_conf", "reconstruction", "LSE-C"),
    ("Reconstruction", "Sync_off", "reconstruction", "LSE-offset"),
    ("Reconstruction", "AV-corr", "reconstruction", "AV-corr"),
    ("Reconstruction", "AV_off", "reconstruction", "AV-offset"),
    ("Cross Audio", "FID", "cross_audio", "FID"),
    ("Cross Audio", "CSIM", "cross_audio", "CSIM"),
    ("Cross Audio", "Sync_conf", "cross_audio", "LSE-C"),
    ("Cross Audio", "Sync_off", "cross_audio", "LSE-offset"),
    ("Cross Audio", "AV-corr", "cross_audio", "AV-corr"),
    ("Cross Audio", "AV_off", "cross_audio", "AV-offset"),
]
RUNTIME_HEADER = "Runtime (ms)"
REFERENCE_METHODS = {"ground_truth", "static_frame", "copy_reference"}  # fallback when a run does not record method kinds
FLOOR_METHOD = "static_frame"  # a still frame with the driving audio: what any lip-sync method must beat
FLOOR_VALUES = {"LMD", "M-LMD", "AV-corr"}  # lip metrics checked against the floor
COVERAGE_VALUE, MIN_COVERAGE = "FaceCov", 0.95
GROUP_OF_SETTING = {"reconstruction": "Reconstruction", "cross_audio": "Cross Audio"}  # extra columns join these
OFFSET_VALUES = {"LSE-offset", "AV-offset"}  # informational values that are audio-video offsets in frames
DIGITS = {"LSE-offset": 2, "AV-offset": 2}
# flag key -> (marker, legend line)
FLAGS = {
    "floor": ("†", f"† worse than {FLOOR_METHOD} (a still frame with the driving audio) on this lip metric "
                   f"({', '.join(sorted(FLOOR_VALUES))}): no lip-sync gain over doing nothing"),
    "coverage": ("‡", f"‡ coverage below {MIN_COVERAGE:.0%}: the face was found (FaceCov) or the value was computed "
                      "on fewer than 95% of the frames, so the mean is over a subset"),
}


def fmt(x: float, digits: int = 3) -> str:
    """Fixed-point text that never prints a negative zero (-0.0001 -> '0.000')."""
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


@dataclass
class Cell:
    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    higher_is_better: bool | None = None
    rank: int | None = None
    footnote: int | None = None  # index into Table.footnotes when unavailable
    digits: int = 3
    n_clips: int | None = None  # set only when it differs from the row's n for the setting
    flags: list[str] = field(default_factory=list)  # keys of FLAGS

    @property
    def available(self) -> bool:
        return self.mean is not None and not (isinstance(self.mean, float) and math.isnan(self.mean))

    def text(self, digits: int | None = None) -> str:
        if not self.available:
            return "—"
        assert self.mean is not None
        return fmt(float(self.mean), self.digits if digits is None else digits)

    def ci_text(self, digits: int | None = None) -> str:
        if not self.available or self.ci_low is None or self.ci_high is None:
            return ""
        if any(math.isinf(v) or math.isnan(v) for v in (self.ci_low, self.ci_high)):
            return ""
        d = self.digits if digits is None else digits
        return f"[{fmt(self.ci_low, d)}, {fmt(self.ci_high, d)}]"

    def markers(self) -> str:
        return "".join(FLAGS[f][0] for f in self.flags)


@dataclass
class Row:
    dataset: str
    method: str
    cells: list[Cell]
    runtime: Cell = field(default_factory=Cell)
    n: dict[str, int | None] = field(default_factory=dict)  # setting -> clips the means are over


@dataclass
class Table:
    columns: list[tuple[str, str, str, str]]
    rows: list[Row]
    footnotes: list[str]
    # per column: True/False = higher/lower is better, None = informational, absent key = direction unknown
    directions: dict[int, bool | None] = field(default_factory=dict)

    def direction(self, j: int) -> bool | None:
        """The column's direction: as recorded/registered, else the first row that knows it."""
        if j in self.directions:
            return self.directions[j]
        return next((r.cells[j].higher_is_better for r in self.rows if r.cells[j].higher_is_better is not None), None)

    def informational(self) -> set[int]:
        return {j for j, d in self.directions.items() if d is None}

    def arrows(self) -> list[str]:
        """↑ / ↓ per column; informational (and unknown-direction) columns get none."""
        out = []
        for j in range(len(self.columns)):
            hib = self.direction(j)
            out.append("" if hib is None else ("↑" if hib else "↓"))
        return out

    def groups(self) -> list[tuple[str, str, list[int]]]:
        """(group, setting, column indices) of each contiguous column group; each gets an n column."""
        out = []
        for (g, s), items in groupby(enumerate(self.columns), key=lambda jc: (jc[1][0], jc[1][2])):
            out.append((g, s, [j for j, _ in items]))
        return out

    def legend(self) -> list[str]:
        """Lines explaining the flags used and the unranked columns (shown under every export)."""
        used = {f for r in self.rows for c in r.cells + [r.runtime] for f in c.flags}
        lines = [FLAGS[k][1] for k in FLAGS if k in used]
        info_cols = [self.columns[j] for j in sorted(self.informational())]
        info = sorted({h for _, h, _, _ in info_cols})
        if info:
            offsets = sorted({h for _, h, _, vn in info_cols if vn in OFFSET_VALUES})
            what = f" ({', '.join(offsets)}: audio-video offset in frames)" if offsets else ""
            lines.append(f"{', '.join(info)}: informational{what}: no arrow, not ranked")
        lines.append("n: clips each mean is over (the common set every method finished); (n=k) on a value "
                     "that is over a different number of clips")
        return lines


def _runtime_ms(run: RunData, method: str) -> float | None:
    return _runtime(run, method)[0]


def _runtime(run: RunData, method: str) -> tuple[float | None, str | None]:
    """(ms per frame, source). Preferred: the run's latency results, the sum of the method's stages' p50 at
    the timed batch (the paper's Runtime column). Else the wall time of the method's generate() per frame
    in this run (the whole method, face tracking included), reconstruction setting first. A precomputed
    (folder) method was not run here: no Runtime ("—"), never ranked on it."""
    if run.summary.get("methods", {}).get(method, {}).get("kind") == "precomputed":
        return None, "Runtime: not measured for precomputed outputs (read from a folder, not run here)"
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


def is_reference(run: RunData, method: str) -> bool:
    """Reference methods (ground truth, static frame) are shown but not ranked: they are not competitors."""
    kind = run.summary.get("methods", {}).get(method, {}).get("kind")
    return kind == "reference" if kind else method in REFERENCE_METHODS




def _rank(rows: list[Row], get, run: RunData) -> None:
    """Rank available cells of one column among competitor rows (1 best, 2 second); a best among fewer
    than two competitors means nothing, so then nothing is ranked."""
    cands = [get(r) for r in rows if not is_reference(run, r.method) and get(r).available]
    cands = [c for c in cands if c.higher_is_better is not None]
    if len(cands) < 2:
        return
    values = sorted({c.mean for c in cands}, reverse=bool(cands[0].higher_is_better))
    for c in cands:
        c.rank = values.index(c.mean) + 1


def _worse(a: Cell, b: Cell) -> bool:
    """a strictly worse than b in a's direction."""
    assert a.mean is not None and b.mean is not None
    return a.mean < b.mean if a.higher_is_better else a.mean > b.mean


def _flag_floor(block: list[Row], columns: list[tuple[str, str, str, str]], run: RunData) -> None:
    floor = next((r for r in block if r.method == FLOOR_METHOD), None)
    if floor is None:
        return
    for j, col in enumerate(columns):
        ref = floor.cells[j]
        if col[3] not in FLOOR_VALUES or not ref.available:
            continue
        for r in block:
            c = r.cells[j]
            if (not is_reference(run, r.method) and c.available and c.higher_is_better is not None
                    and _worse(c, ref)):
                c.flags.append("floor")


def _low_coverage(v: dict[str, Any], value_name: str) -> bool:
    used, total = v.get("frames_used"), v.get("frames_total")
    if used is not None and total:
        if used / total < MIN_COVERAGE:
            return True
    return value_name == COVERAGE_VALUE and v.get("mean") is not None and v["mean"] < MIN_COVERAGE


def _common_n(run: RunData, setting: str) -> int | None:
    common = run.summary.get("clip_set", {}).get(setting, {}).get("common")
    return len(common) if common is not None else None


def _row_n(run: RunData, setting: str, values: dict[str, Any]) -> int | None:
    """Clips the row's means are over: the common set's size, else (older runs) the most clips any value used."""
    n = _common_n(run, setting)
    if n is not None:
        return n
    counts = [v.get("n_clips") for v in values.values() if isinstance(v, dict) and v.get("n_clips") is not None]
    return max(counts) if counts else None


def _block(run: RunData, columns: list[tuple[str, str, str, str]], notes: _Notes) -> list[Row]:
    results = run.summary.get("results", {})
    unavailable = run.summary.get("unavailable", {})
    block: list[Row] = []
    for method in run.methods():
        settings = dict.fromkeys(c[2] for c in columns)
        n = {s: _row_n(run, s, results.get(s, {}).get(method, {})) for s in settings}
        cells = []
        for _, _, setting, value_name in columns:
            v = results.get(setting, {}).get(method, {}).get(value_name)
            cell = Cell(digits=DIGITS.get(value_name, 3))
            if v is not None and v.get("mean") is not None:
                hib = v["higher_is_better"] if "higher_is_better" in v else registry_direction(value_name)
                cell = Cell(v["mean"], v.get("ci_low"), v.get("ci_high"), hib, digits=cell.digits)
                if v.get("n_clips") is not None and v["n_clips"] != n[setting]:
                    cell.n_clips = v["n_clips"]
                if _low_coverage(v, value_name):
                    cell.flags.append("coverage")
            else:
                cell.footnote = notes.add(_reason(unavailable, value_name, setting, method, results,
                                                  unavailable_values(run)), value_name)
            cells.append(cell)
        _spread_face_coverage(cells, columns, results, method)
        rt, source = _runtime(run, method)
        rt_cell = Cell(rt, higher_is_better=False) if rt is not None else Cell()
        if source:
            rt_cell.footnote = notes.add(source)
        block.append(Row(run.split, method, cells, rt_cell, n))
    return block


def _spread_face_coverage(cells: list[Cell], columns: list[tuple[str, str, str, str]], results: dict[str, Any],
                          method: str) -> None:
    """A low FaceCov also flags the values of the same metric (LMD...): they are over the found frames only."""
    for j, (_, _, setting, vn) in enumerate(columns):
        if vn != COVERAGE_VALUE or "coverage" not in cells[j].flags:
            continue
        by_value = results.get(setting, {}).get(method, {})
        metric = by_value.get(COVERAGE_VALUE, {}).get("metric")
        for k, (_, _, s2, vn2) in enumerate(columns):
            same = s2 == setting and metric is not None and by_value.get(vn2, {}).get("metric") == metric
            if same and cells[k].available and "coverage" not in cells[k].flags:
                cells[k].flags.append("coverage")


class _Notes:
    """Footnotes keyed by their reason: one footnote lists every value with the same reason."""

    def __init__(self) -> None:
        self.reasons: dict[str, list[str]] = {}

    def add(self, reason: str, value_name: str | None = None) -> int:
        names = self.reasons.setdefault(reason, [])
        if value_name and value_name not in names:
            names.append(value_name)
        return list(self.reasons).index(reason) + 1

    def texts(self) -> list[str]:
        return [f"{', '.join(names)}: {r}" if names else r for r, names in self.reasons.items()]


def _excluded_note(run: RunData, notes: _Notes) -> None:
    for setting, info in (run.summary.get("settings") or {}).items():
        if isinstance(info, dict) and info.get("skipped_unpaired"):
            notes.add(f"{run.split} {setting_coverage_text(setting, info)}")
    for setting, cs in (run.summary.get("clip_set") or {}).items():
        excluded = cs.get("excluded") or {}
        if excluded:
            notes.add(f"{run.split} {setting}: n = {len(cs.get('common', []))} common clips; "
                             f"{len(excluded)} excluded (failed for some method): {', '.join(sorted(excluded))}")


def setting_coverage_text(setting: str, info: dict[str, Any]) -> str:
    """'cross_audio: n of N clips (k without a drive pair: ids)' from summary settings.<setting>."""
    skipped = list(info.get("skipped_unpaired") or [])
    shown = ", ".join(skipped[:10]) + (f", ... ({len(skipped)} in all)" if len(skipped) > 10 else "")
    return (f"{setting}: {info.get('clips')} of {info.get('of')} clips ({len(skipped)} without a drive pair, "
            f"reconstruction only: {shown})")


def paper_table(runs: list[RunData], columns: list[tuple[str, str, str, str]] | None = None) -> Table:
    """Build the table from one or more runs (each run contributes its split as a dataset block). By default
    the paper's columns plus an extra column for every value of a metric the paper layout does not place."""
    columns = columns or with_extra_columns(PAPER_COLUMNS, runs)
    notes = _Notes()
    rows: list[Row] = []
    for run in runs:
        block = _block(run, columns, notes)
        for j in range(len(columns)):
            _rank(block, lambda r, j=j: r.cells[j], run)
        _rank(block, lambda r: r.runtime, run)
        _flag_floor(block, columns, run)
        _excluded_note(run, notes)
        rows += block
    directions = {}
    for j, (_, _, setting, value_name) in enumerate(columns):
        known, hib = column_direction(runs, setting, value_name)
        if known:
            directions[j] = hib
    return Table(columns, rows, notes.texts(), directions)


def _recorded(runs: list[RunData]):
    """(setting, value_name, entry) of every value the runs recorded, in summary order."""
    for run in runs:
        for setting, by_method in (run.summary.get("results") or {}).items():
            for _, value_name, entry in _recorded_in({setting: by_method}):
                yield setting, value_name, entry


def with_extra_columns(columns: list[tuple[str, str, str, str]], runs: list[RunData]) -> list[tuple[str, str, str, str]]:
    """`columns` plus (group, value, setting, value) for each recorded value whose metric has no value among
    `columns` (PSNR, plugin metrics), placed at the end of its setting's group, in the order first recorded.
    Values of a metric the layout places (LSE-D next to LSE-C) stay out: the layout chose among them."""
    placed_names = {vn for _, _, _, vn in columns}
    recorded = list(_recorded(runs))
    placed_metrics = {e.get("metric") for _, vn, e in recorded if vn in placed_names} - {None}
    extras: list[tuple[str, str, str, str]] = []
    for setting, vn, entry in recorded:
        col = (GROUP_OF_SETTING.get(setting, setting), vn, setting, vn)
        if vn in placed_names or col in extras or entry.get("metric") in placed_metrics:
            continue
        extras.append(col)
    for run in runs:  # a metric named but unavailable: its columns stay, as "—" with the reason
        for metric, info in unavailable_values(run).items():
            if metric in placed_metrics or placed_names & set(info["values"]):
                continue
            for setting in info["settings"]:
                for vn in info["values"]:
                    col = (GROUP_OF_SETTING.get(setting, setting), vn, setting, vn)
                    if col not in extras:
                        extras.append(col)
    out = list(columns)
    for col in extras:
        same = [j for j, c in enumerate(out) if c[0] == col[0] and c[2] == col[2]]
        out.insert(same[-1] + 1 if same else len(out), col)
    return out


def unavailable_values(run: RunData) -> dict[str, dict[str, list[str]]]:
    """metric -> {"values", "settings"} of each metric the run could not compute: as the run recorded it
    (summary "unavailable_values"), else (older runs) from the metric registry, else the metric's own name in
    every setting the run has."""
    recorded = run.summary.get("unavailable_values") or {}
    settings = list(run.summary.get("results") or {}) or list((run.summary.get("config") or {}).get("settings") or [])
    out: dict[str, dict[str, list[str]]] = {}
    for metric in run.summary.get("unavailable") or {}:
        info = recorded.get(metric)
        if isinstance(info, dict) and info.get("values"):
            out[metric] = {"values": list(info["values"]), "settings": list(info.get("settings") or settings)}
            continue
        from metrics.base import load_all

        cls = load_all().get(metric)
        out[metric] = {"values": list(getattr(cls, "outputs", ()) or (metric,)), "settings": settings}
    return out


def column_direction(runs: list[RunData], setting: str, value_name: str) -> tuple[bool, bool | None]:
    """(known, higher_is_better) of a column: what a run recorded for the value (the column's setting first,
    then any), else the metric registry's; (False, None) when neither knows the value."""
    fallback: tuple[bool, bool | None] | None = None
    for s, vn, entry in _recorded(runs):
        if vn == value_name and "higher_is_better" in entry:
            if s == setting:
                return True, entry["higher_is_better"]
            fallback = fallback or (True, entry["higher_is_better"])
    if fallback:
        return fallback
    for run in runs:  # an unavailable metric's direction, as the run recorded it
        for info in (run.summary.get("unavailable_values") or {}).values():
            hib = info.get("higher_is_better") if isinstance(info, dict) else None
            if isinstance(hib, dict) and value_name in hib:
                return True, hib[value_name]
    reg = _registry_values()
    if value_name in reg:
        return True, reg[value_name][1]
    return False, None


def registry_direction(value_name: str) -> bool | None:
    return _registry_values().get(value_name, (None, None))[1]


def _registry_values() -> dict[str, tuple[str, bool | None]]:
    """value name -> (metric name, higher_is_better) from the metric registry (built-ins, entry points and any
    --plugin loaded before the report): read only for values no run recorded; rebuilt when the registry grows."""
    from metrics.base import load_all

    reg = load_all()
    key = tuple(sorted(reg))
    if _REGISTRY_VALUES.get("key") != key:
        out: dict[str, tuple[str, bool | None]] = {}
        for name, cls in reg.items():
            for vn in cls.outputs:
                out.setdefault(vn, (name, cls.higher_is_better.get(vn)))
        _REGISTRY_VALUES.update(key=key, values=out)
    return _REGISTRY_VALUES["values"]


_REGISTRY_VALUES: dict[str, Any] = {}


def _reason(unavailable: dict[str, str], value_name: str, setting: str, method: str, results: dict[str, Any],
            unavailable_vals: dict[str, dict[str, list[str]]] | None = None) -> str:
    """Why a value is missing, without the value's name (the footnote lists the names sharing a reason)."""
    for name, info in (unavailable_vals or {}).items():
        if value_name in info["values"] and name in unavailable:
            return f"metric {name} unavailable: {unavailable[name]}"
    metric = next((e["metric"] for _, vn, e in _recorded_in(results) if vn == value_name and e.get("metric")), None)
    metric = metric or _registry_values().get(value_name, (value_name.lower(), None))[0]
    for name, why in unavailable.items():
        if name == metric or name.startswith(metric):
            return why
    if setting not in results:
        return f"setting {setting} was not run"
    if method not in results.get(setting, {}):
        return f"{method} was not run in {setting}"
    return f"not in this run's {setting} results (not requested, or failed: see the run's failures)"


def _recorded_in(results: dict[str, Any]):
    for by_method in results.values():
        for values in by_method.values():
            for value_name, entry in (values or {}).items():
                if isinstance(entry, dict):
                    yield None, value_name, entry
