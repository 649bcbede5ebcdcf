"""Bootstrap confidence intervals and run-vs-run comparison (the CI regression gate).

Intervals are percentile bootstraps over clips, seeded, so the same values always give the same interval.
A comparison pairs the two runs' clips (same method, setting, clip id) and bootstraps the mean delta.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.errors import BenchError
from harness.store import load_run

N_BOOT = 1000
SEED = 0


def bootstrap_ci(values: np.ndarray | list[float], n_boot: int = N_BOOT, seed: int = SEED,
                 level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the mean over clips (None for no values; (v, v) for one)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None, None
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, seed: int = SEED,
                        level: float = 0.95) -> tuple[float | None, float | None]:
    """Interval of mean(b - a) resampling clips jointly (a[i], b[i] are the same clip)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired values need the same clips")
    return bootstrap_ci(list(b - a), n_boot=n_boot, seed=seed, level=level)


# ---------------------------------------------------------------------------------------------------
# tolerances
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    """Allowed worsening of one value: absolute, or a percentage of |A|."""

    amount: float
    percent: bool = False

    def allowed(self, a: float) -> float:
        return abs(a) * self.amount / 100.0 if self.percent else self.amount

    @staticmethod
    def parse(raw: Any) -> "Tolerance":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return Tolerance(float(raw))
        s = str(raw).strip()
        try:
            if s.endswith("%"):
                return Tolerance(float(s[:-1]), percent=True)
            return Tolerance(float(s))
        except ValueError:
            raise ValueError(f"tolerance {raw!r} is neither a number nor a percentage like '5%'") from None


def load_tolerances(path: str | os.PathLike | None) -> dict[str, Tolerance]:
    """YAML mapping value name (or 'setting/value_name', or 'method/setting/value_name') -> tolerance."""
    if path is None:
        return {}
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"cannot read tolerances ({exc})", p) from exc
    if not isinstance(raw, dict):
        raise BenchError("tolerances must be a mapping value_name -> allowed worsening", p)
    out = {}
    for k, v in raw.items():
        try:
            out[str(k)] = Tolerance.parse(v)
        except ValueError as exc:
            raise BenchError(str(exc), p) from exc
    return out


def tolerance_for(tols: dict[str, Tolerance], method: str, setting: str, value_name: str,
                  default: Tolerance) -> Tolerance:
    explicit = explicit_tolerance(tols, method, setting, value_name)
    return default if explicit is None else explicit


# ---------------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------------
# Config entries that define which numbers a run holds: runs that differ in one are not comparable.
CONFIG_KEYS = ("split", "role", "clips_selected", "max_frames", "settings")
EXIT_OK, EXIT_REGRESSION, EXIT_INPUT, EXIT_NOT_COMPARABLE = 0, 1, 2, 3
JSON_SCHEMA_VERSION = 1  # bump when a field of Comparison.to_dict changes meaning or goes away


def explicit_tolerance(tols: dict[str, Tolerance], method: str, setting: str, value_name: str) -> Tolerance | None:
    """The tolerance written in the file for this value, or None (informational values gate only on these)."""
    for key in (f"{method}/{setting}/{value_name}", f"{setting}/{value_name}", value_name):
        if key in tols:
            return tols[key]
    return None


@dataclass
class Issue:
    """Why the two runs are not (fully) comparable; allowed = relaxed by an --allow-* flag (reported only)."""

    kind: str  # "missing" | "protocol" | "clip_set" | "config" | "failures"
    text: str
    allowed: bool = False


@dataclass
class Row:
    setting: str
    method: str
    metric: str
    value_name: str
    a: float | None
    b: float | None
    delta: float | None
    direction: str  # "better" | "worse" | "same" | "changed" (informational) | "n/a"
    ci_low: float | None
    ci_high: float | None
    n_common: int
    higher_is_better: bool | None
    tolerance: str
    fails: bool
    note: str = ""


@dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[Row] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the numbers cover (e.g. cross_audio clips of the split)
    n_boot: int = N_BOOT
    seed: int = SEED

    @property
    def failed(self) -> bool:
        return any(r.fails for r in self.rows)

    @property
    def not_comparable(self) -> bool:
        return any(not i.allowed for i in self.issues)

    @property
    def exit_code(self) -> int:
        """3 when something could not be compared (it wins: the gate cannot vouch for the run), else 1 on a
        regression, else 0."""
        if self.not_comparable:
            return EXIT_NOT_COMPARABLE
        return EXIT_REGRESSION if self.failed else EXIT_OK

    def verdict(self) -> str:
        bad = sum(r.fails for r in self.rows)
        if self.not_comparable:
            n = sum(not i.allowed for i in self.issues)
            return (f"NOT COMPARABLE (exit 3): {n} reason(s)"
                    + (f"; also {bad} value(s) worse beyond tolerance" if bad else ""))
        if bad:
            return f"REGRESSION (exit 1): {bad} value(s) worse beyond tolerance"
        shown = sum(r.delta is None for r in self.rows)
        return (f"PASS (exit 0): {len(self.rows) - shown} value(s) compared, none worse beyond tolerance"
                + (f"; {shown} shown as — (no value: see the rows' notes)" if shown else ""))

    def to_dict(self) -> dict[str, Any]:
        """The `compare --json` document (schema JSON_SCHEMA_VERSION; README "compare --json" lists the fields)."""
        return {"schema_version": JSON_SCHEMA_VERSION, "run_a": self.run_a, "run_b": self.run_b,
                "failed": self.failed, "exit_code": self.exit_code, "verdict": self.verdict(),
                "n_boot": self.n_boot, "seed": self.seed, "rows": [asdict(r) for r in self.rows],
                "issues": [asdict(i) for i in self.issues], "notes": list(self.notes)}


def protocol_diff(pa: dict[str, Any] | None, pb: dict[str, Any] | None) -> list[str]:
    """Fields that differ between two protocols (['missing ...'] when one side has none)."""
    if pa is None or pb is None:
        return ["protocol missing in " + ("A" if pa is None else "B")]
    keys = sorted(set(pa) | set(pb))
    diffs = []
    for k in keys:
        if pa.get(k) != pb.get(k):
            if isinstance(pa.get(k), dict) and isinstance(pb.get(k), dict):
                for sk in sorted(set(pa[k]) | set(pb[k])):
                    if pa[k].get(sk) != pb[k].get(sk):
                        diffs.append(f"{k}.{sk}: {pa[k].get(sk)!r} vs {pb[k].get(sk)!r}")
            else:
                diffs.append(f"{k}: {pa.get(k)!r} vs {pb.get(k)!r}")
    return diffs


def _per_clip(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """(setting, method, metric, value_name) -> {clip_id: value} (missing / NaN left out)."""
    out: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for r in rows:
        v = r["value"]
        if v is None or math.isnan(v):
            continue
        out.setdefault((r["setting"], r["method"], r["metric"], r["value_name"]), {})[r["clip_id"]] = v
    return out


def _short(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _config_issues(sa: dict, sb: dict) -> list[Issue]:
    ca, cb = sa.get("config") or {}, sb.get("config") or {}
    out = []
    for k in CONFIG_KEYS:
        va, vb = ca.get(k), cb.get(k)
        if k in ("clips_selected", "settings") and isinstance(va, list) and isinstance(vb, list):
            if sorted(va) != sorted(vb):
                only_a, only_b = sorted(set(va) - set(vb)), sorted(set(vb) - set(va))
                out.append(Issue("config", f"{k} differs: only in A [{_short(only_a)}], only in B [{_short(only_b)}]"))
        elif va != vb:
            out.append(Issue("config", f"{k} differs: A {va!r} vs B {vb!r}"))
    return out


def _clip_set_issues(sa: dict, sb: dict, settings: list[str], allow_failures: bool) -> tuple[list[Issue], dict[str, set[str] | None]]:
    """Issues about the per-setting common clip sets, and the clips to compare on per setting (None = unknown).
    --allow-failures relaxes a difference only when both runs selected the same clips (failures explain it)."""
    issues, shared = [], {}
    sel_a, sel_b = (sa.get("config") or {}).get("clips_selected"), (sb.get("config") or {}).get("clips_selected")
    relax = allow_failures and sel_a is not None and sorted(sel_a) == sorted(sel_b or [])
    csa, csb = sa.get("clip_set") or {}, sb.get("clip_set") or {}
    for s in settings:
        a, b = (csa.get(s) or {}).get("common"), (csb.get(s) or {}).get("common")
        if a is None and b is None:
            shared[s] = None
            continue
        if a is None or b is None:
            issues.append(Issue("clip_set", f"{s}: common clip set recorded only in {'B' if a is None else 'A'} "
                                            "(older run format)"))
            shared[s] = set(a or b)
            continue
        shared[s] = set(a) & set(b)
        if set(a) != set(b):
            only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            issues.append(Issue("clip_set", f"{s}: common clip set differs: only in A [{_short(only_a)}], only in B "
                                            f"[{_short(only_b)}] (per-clip values compared on the {len(shared[s])} "
                                            "clips in both)", allowed=relax))
    return issues, shared


def _failure_issues(label: str, summary: dict, methods: list[str] | None, allowed: bool) -> list[Issue]:
    fails = [f for f in summary.get("failures") or [] if not methods or f.get("method") in methods]
    if not fails:
        return []
    where = [f"{f.get('method')}/{f.get('setting')}/{f.get('clip_id')}" for f in fails]
    return [Issue("failures", f"{label} has {len(fails)} failure(s): {_short(where, 3)} (first: {fails[0].get('error')})",
                  allowed=allowed)]


def _metric_issues(sa: dict, sb: dict, allow_missing: bool) -> tuple[list[Issue], set[str]]:
    pa, pb = sa.get("protocols") or {}, sb.get("protocols") or {}
    issues, missing = [], set()
    for m in sorted(set(pa) ^ set(pb)):
        where, other = ("A", sb) if m in pa else ("B", sa)
        why = (other.get("unavailable") or {}).get(m, "not run")
        issues.append(Issue("missing", f"metric {m}: only in {where} (other run: {why})", allowed=allow_missing))
        missing.add(m)
    return issues, missing


def _unavailable_values(summary: dict[str, Any], metric: str) -> list[str]:
    """The value names of a metric the run could not compute (summary unavailable_values, else its name)."""
    info = (summary.get("unavailable_values") or {}).get(metric)
    return list(info.get("values") or [metric]) if isinstance(info, dict) else [metric]


def _unavailable_note(sa: dict, sb: dict, metric: str) -> str:
    ua, ub = sa.get("unavailable") or {}, sb.get("unavailable") or {}
    if metric in ua and metric in ub and ua[metric] == ub[metric]:
        return f"unavailable in A and B: {ua[metric]}"
    parts = [f"unavailable in {k}: {u[metric]}" for k, u in (("A", ua), ("B", ub)) if metric in u]
    return "; ".join(parts) or "not run"


def _unavailable_rows(sa: dict, sb: dict, settings: list[str], methods: list[str] | None) -> list[Row]:
    """A "—" row per value of a metric neither run could compute, with the reason (never dropped silently)."""
    ua, ub = sa.get("unavailable") or {}, sb.get("unavailable") or {}
    ra, rb = sa.get("results") or {}, sb.get("results") or {}
    rows = []
    for metric in sorted(set(ua) & set(ub)):
        info = (sa.get("unavailable_values") or {}).get(metric) or (sb.get("unavailable_values") or {}).get(metric)
        where = list(info.get("settings") or settings) if isinstance(info, dict) else settings
        for setting in [s for s in settings if s in where and s in ra and s in rb]:
            for method in sorted(set(ra[setting]) & set(rb[setting])):
                if methods and method not in methods:
                    continue
                for vname in _unavailable_values(sa, metric):
                    rows.append(Row(setting, method, metric, vname, None, None, None, "n/a", None, None, 0, None,
                                    "—", False, _unavailable_note(sa, sb, metric)))
    return rows


def _coverage_notes(sa: dict, sb: dict) -> list[str]:
    """'cross_audio: n of N clips (k without a drive pair ...)' from each run's summary settings."""
    from reports.tables import setting_coverage_text

    out = []
    cov = [{s: i for s, i in (x.get("settings") or {}).items() if isinstance(i, dict) and i.get("skipped_unpaired")}
           for x in (sa, sb)]
    for s in sorted(set(cov[0]) | set(cov[1])):
        texts = [setting_coverage_text(s, c[s]) if s in c else None for c in cov]
        if texts[0] == texts[1]:
            out.append(f"A and B {texts[0]}")
        else:
            out += [f"{k} {t}" for k, t in zip("AB", texts) if t]
    return out


def _load(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """load_run, with unreadable files as input errors too (compare maps BenchError to exit 2)."""
    try:
        summary, rows = load_run(path)
    except (OSError, UnicodeDecodeError, KeyError, ValueError) as exc:
        raise BenchError(f"cannot read the run ({type(exc).__name__}: {exc})", path) from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("results", {}), dict):
        raise BenchError("summary.json has no results mapping", Path(path) / "summary.json")
    return summary, rows


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, tolerances: dict[str, Tolerance] | None = None,
                 default_tolerance: Tolerance = Tolerance(0.0), n_boot: int = N_BOOT, seed: int = SEED,
                 methods: list[str] | None = None, allow_missing: bool = False,
                 allow_protocol_change: bool = False, allow_failures: bool = False) -> Comparison:
    """Compare B (new) against A (reference): delta = B - A per value, paired bootstrap CI over the shared
    clips. Everything that makes the two runs not comparable is an Issue (exit 3 unless allowed)."""
    sa, rows_a = _load(run_a)
    sb, rows_b = _load(run_b)
    tols = tolerances or {}
    cmp = Comparison(str(run_a), str(run_b), n_boot=n_boot, seed=seed)
    ra, rb = sa.get("results", {}), sb.get("results", {})
    settings = sorted(set(ra) | set(rb))
    cmp.issues += _config_issues(sa, sb)
    clip_issues, shared = _clip_set_issues(sa, sb, [s for s in settings if s in ra and s in rb], allow_failures)
    cmp.issues += clip_issues
    cmp.issues += _failure_issues("A", sa, methods, allow_failures) + _failure_issues("B", sb, methods, allow_failures)
    metric_issues, missing_metrics = _metric_issues(sa, sb, allow_missing)
    cmp.issues += metric_issues
    pcs_a, pcs_b = _per_clip(rows_a), _per_clip(rows_b)
    refused: set[str] = set()
    for setting in settings:
        if setting not in ra or setting not in rb:
            cmp.issues.append(Issue("missing", f"setting {setting}: only in {'A' if setting in ra else 'B'}",
                                    allowed=allow_missing))
            continue
        for method in sorted(set(ra[setting]) | set(rb[setting])):
            if methods and method not in methods:
                continue
            va, vb = ra[setting].get(method), rb[setting].get(method)
            if va is None or vb is None:
                cmp.issues.append(Issue("missing", f"method {method} ({setting}): only in {'A' if vb is None else 'B'}",
                                        allowed=allow_missing))
                continue
            for key in sorted(set(va) | set(vb)):
                ea, eb = va.get(key), vb.get(key)
                metric = (ea or eb).get("metric")
                if ea is None or eb is None:
                    if metric not in missing_metrics:
                        cmp.issues.append(Issue("missing", f"value {setting}/{method}/{key}: only in "
                                                           f"{'A' if eb is None else 'B'}", allowed=allow_missing))
                    else:  # the metric ran in one run only: its row shows the one side and why the other is "—"
                        cmp.rows.append(Row(setting, method, metric, key, (ea or {}).get("mean"), (eb or {}).get("mean"),
                                            None, "n/a", None, None, 0, (ea or eb).get("higher_is_better"), "—",
                                            False, _unavailable_note(sa, sb, metric)))
                    continue
                diff = protocol_diff((sa.get("protocols") or {}).get(ea.get("metric")),
                                     (sb.get("protocols") or {}).get(eb.get("metric")))
                if ea.get("metric") != eb.get("metric"):
                    diff = [f"metric {ea.get('metric')!r} vs {eb.get('metric')!r}"] + diff
                if diff:
                    if metric not in refused:
                        cmp.issues.append(Issue("protocol", f"metric {metric}: protocols differ, not compared "
                                                            f"({'; '.join(diff)})", allowed=allow_protocol_change))
                        refused.add(metric)
                    continue
                vname = key.split(":", 1)[1] if key.startswith(f"{metric}:") else key
                row, issue = _compare_value(
                    setting, method, metric, key, ea, eb, pcs_a.get((setting, method, metric, vname), {}),
                    pcs_b.get((setting, method, metric, vname), {}), shared.get(setting),
                    tolerance_for(tols, method, setting, key, default_tolerance),
                    explicit_tolerance(tols, method, setting, key), n_boot, seed)
                cmp.rows.append(row)
                if issue:
                    cmp.issues.append(Issue("missing", issue, allowed=allow_missing))
    cmp.rows += _unavailable_rows(sa, sb, settings, methods)
    cmp.notes += _coverage_notes(sa, sb)
    return cmp


def _missing_issue(setting: str, method: str, key: str, ea: dict, eb: dict) -> str | None:
    """A value absent (None) on one side only, or missing on different clips in the two runs."""
    a, b = ea.get("mean"), eb.get("mean")
    where = f"value {setting}/{method}/{key}"
    if (a is None) != (b is None):
        return f"{where}: no value in {'A' if a is None else 'B'}"
    ma, mb = sorted(ea.get("missing_clips") or []), sorted(eb.get("missing_clips") or [])
    if ma != mb or ea.get("n_missing", 0) != eb.get("n_missing", 0):
        return f"{where}: per-clip values missing on different clips (A [{_short(ma)}], B [{_short(mb)}])"
    return None


def _compare_value(setting: str, method: str, metric: str, value_name: str, ea: dict, eb: dict,
                   clips_a: dict[str, float], clips_b: dict[str, float], shared: set[str] | None, tol: Tolerance,
                   explicit: Tolerance | None, n_boot: int, seed: int) -> tuple[Row, str | None]:
    a, b = ea.get("mean"), eb.get("mean")
    hib = ea.get("higher_is_better") if "higher_is_better" in ea else eb.get("higher_is_better")
    if hib is None and explicit is not None:
        tol = explicit
    tol_txt = ("—" if hib is None and explicit is None else f"{tol.amount:g}%" if tol.percent else f"{tol.amount:g}")
    issue = _missing_issue(setting, method, value_name, ea, eb)
    if shared is not None:
        clips_a = {c: v for c, v in clips_a.items() if c in shared}
        clips_b = {c: v for c, v in clips_b.items() if c in shared}
    common = sorted(set(clips_a) & set(clips_b))
    note = ""
    same_sets = shared is None or (ea.get("n_common") == eb.get("n_common") == len(shared))
    if not same_sets:  # allowed clip-set change: per-clip values on the shared clips, split-level not at all
        if ea.get("split_level") or not common:
            issue = issue or f"value {setting}/{method}/{value_name}: made on different clip sets, not compared"
            return Row(setting, method, metric, value_name, a, b, None, "n/a", None, None, 0, hib, tol_txt, False,
                       "different clip sets"), issue
        a, b = float(np.mean([clips_a[c] for c in common])), float(np.mean([clips_b[c] for c in common]))
        note = f"on the {len(common)} shared clips"
    if a is None or b is None:
        return Row(setting, method, metric, value_name, a, b, None, "n/a", None, None, 0, hib, tol_txt, False,
                   "no value in " + ("A and B" if a is None and b is None else "A" if a is None else "B")), issue
    delta = b - a if not (a == b) else 0.0  # inf == inf: same, not nan
    lo = hi = None
    if common:
        lo, hi = paired_bootstrap_ci(np.array([clips_a[c] for c in common]), np.array([clips_b[c] for c in common]),
                                     n_boot=n_boot, seed=seed)
    elif ea.get("split_level"):
        note = note or "split-level value: no per-clip CI"
    if math.isnan(delta):  # +inf vs -inf: no difference to state
        direction, worsening = "n/a", 0.0
    elif delta == 0 or (math.isfinite(delta) and abs(delta) <= 1e-12 * max(1.0, abs(a))):
        direction, worsening = "same", 0.0
    elif hib is None:
        direction, worsening = "changed", (abs(delta) if explicit is not None else 0.0)
    else:
        direction = "better" if (delta > 0) == bool(hib) else "worse"
        worsening = abs(delta) if direction == "worse" else 0.0
    fails = worsening > tol.allowed(a) + 1e-12 if math.isfinite(a) else worsening > 0
    return Row(setting, method, metric, value_name, a, b, delta, direction, lo, hi, len(common), hib, tol_txt, fails,
               note), issue


def render(cmp: Comparison, console: Any = None) -> None:
    """Print the comparison as a rich table, then the verdict and each reason / regression on one line."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.4g}"

    t = Table(title=f"A = {cmp.run_a}   B = {cmp.run_b}   (delta = B - A)")
    for col in ("setting", "method", "value", "A", "B", "delta", "95% CI (paired)", "direction", "tol", "gate", "note"):
        t.add_column(col)
    for r in cmp.rows:
        color = {"better": "green", "worse": "red"}.get(r.direction, "")
        t.add_row(r.setting, r.method, r.value_name, f(r.a), f(r.b), f(r.delta),
                  f"[{f(r.ci_low)}, {f(r.ci_high)}]" if r.ci_low is not None else "—",
                  f"[{color}]{r.direction}[/{color}]" if color else r.direction, r.tolerance,
                  "[red]FAIL[/red]" if r.fails else "ok", r.note)
    console.print(t)
    code = cmp.exit_code
    color = {0: "green", 1: "red", 3: "yellow"}[code]
    console.print(f"[{color}]verdict[/{color}]: {cmp.verdict()}", soft_wrap=True, highlight=False)
    for note in cmp.notes:
        console.print(f"  {note}", soft_wrap=True, markup=False, highlight=False)
    for i in cmp.issues:
        label = f"allowed ({i.kind})" if i.allowed else f"not comparable ({i.kind})"
        console.print(f"  {label}: {i.text}", soft_wrap=True, markup=False, highlight=False)
    for r in cmp.rows:
        if r.fails:
            console.print(f"  regression: {r.setting}/{r.method}/{r.value_name}: {f(r.a)} -> {f(r.b)} "
                          f"(delta {f(r.delta)}, tolerance {r.tolerance})", soft_wrap=True, markup=False, highlight=False)


# ---------------------------------------------------------------------------------------------------
# markdown (a pull-request comment)
# ---------------------------------------------------------------------------------------------------
EXIT_MEANINGS = "0 pass · 1 regression · 2 input error · 3 not comparable"
MD_COLUMNS = ("setting", "method", "metric", "value", "base (A)", "new (B)", "delta", "95% CI (paired)", "clips",
              "tolerance", "verdict")


def row_verdict(r: Row) -> str:
    """One word per value for the markdown table: what the gate made of it."""
    if r.fails:
        return "REGRESSION"
    if r.direction == "worse":
        return "worse, within tolerance"
    if r.direction == "changed":
        return "changed (informational)"
    return {"better": "better", "same": "same"}.get(r.direction, "not compared")


def _md_cell(text: str) -> str:
    """Pipes and newlines would break the table row."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.6g}" if signed else f"{x:.6g}"


def to_markdown(cmp: Comparison) -> str:
    """The comparison as GitHub-flavoured markdown: a header with the verdict and what the exit codes mean,
    one table row per compared value (base, new, delta = new - base, paired bootstrap CI, verdict), then every
    reason the runs are not (fully) comparable and every regression, each on its own line."""
    code = cmp.exit_code
    badge = {EXIT_OK: "✅", EXIT_REGRESSION: "❌", EXIT_NOT_COMPARABLE: "⚠️"}[code]
    lines = [f"### {badge} realtalk-bench compare: {cmp.verdict()}", "",
             f"Base (A): `{cmp.run_a}` · New (B): `{cmp.run_b}` · delta = B − A; 95% CI: paired percentile "
             f"bootstrap over the shared clips ({cmp.n_boot} resamples, seed {cmp.seed}). "
             f"Exit codes: {EXIT_MEANINGS}.", ""]
    if cmp.notes:
        lines += [f"- {_md_cell(n)}" for n in cmp.notes] + [""]
    if cmp.rows:
        lines.append("| " + " | ".join(MD_COLUMNS) + " |")
        lines.append("|" + "|".join("---:" if c in ("base (A)", "new (B)", "delta", "clips") else "---"
                                    for c in MD_COLUMNS) + "|")
        for r in cmp.rows:
            ci = f"[{_md_num(r.ci_low, True)}, {_md_num(r.ci_high, True)}]" if r.ci_low is not None else "—"
            verdict = row_verdict(r) + (f" ({r.note})" if r.note else "")
            vname = r.value_name.split(":", 1)[1] if r.value_name.startswith(f"{r.metric}:") else r.value_name
            cells = (r.setting, r.method, r.metric, vname, _md_num(r.a), _md_num(r.b), _md_num(r.delta, True), ci,
                     str(r.n_common), r.tolerance, f"**{verdict}**" if r.fails else verdict)
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    else:
        lines.append("_No value was compared._")
    blocking = [i for i in cmp.issues if not i.allowed]
    allowed = [i for i in cmp.issues if i.allowed]
    regressions = [r for r in cmp.rows if r.fails]
    if blocking:
        lines += ["", "**Not comparable (exit 3):**"] + [f"- {i.kind}: {_md_cell(i.text)}" for i in blocking]
    if allowed:
        lines += ["", "**Allowed by an --allow-* flag (reported only):**"] + [f"- {i.kind}: {_md_cell(i.text)}"
                                                                           for i in allowed]
    if regressions:
        lines += ["", "**Regressions (exit 1):**"] + [
            f"- {r.setting}/{r.method}/{_md_cell(r.value_name)}: {_md_num(r.a)} → {_md_num(r.b)} "
            f"(delta {_md_num(r.delta, True)}, tolerance {r.tolerance})" for r in regressions]
    return "\n".join(lines) + "\n"
