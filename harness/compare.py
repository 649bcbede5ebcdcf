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

from harness.errors import BenchError
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
    for key in (f"{method}/{setting}/{value_name}", f"{setting}/{value_name}", value_name):
        if key in tols:
            return tols[key]
    return default


# ---------------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------------
@dataclass
class Row:
    setting: str
    method: str
    metric: str
    value_name: str
    a: float | None
    b: float | None
    delta: float | None
    direction: str  # "better" | "worse" | "same" | "n/a"
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
    refused: list[str] = field(default_factory=list)  # protocol mismatches, with the differing fields
    only_in: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.fails for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"run_a": self.run_a, "run_b": self.run_b, "failed": self.failed,
                "rows": [asdict(r) for r in self.rows], "refused": self.refused, "only_in": self.only_in}


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


def _per_clip(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, float]]:
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in rows:
        if r["value"] is None or not math.isfinite(r["value"]):
            continue
        out.setdefault((r["setting"], r["method"], r["value_name"]), {})[r["clip_id"]] = r["value"]
    return out


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, tolerances: dict[str, Tolerance] | None = None,
                 default_tolerance: Tolerance = Tolerance(0.0), n_boot: int = N_BOOT, seed: int = SEED,
                 methods: list[str] | None = None) -> Comparison:
    """Compare B (new) against A (reference): delta = B - A per value, paired bootstrap CI over common clips."""
    sa, rows_a = load_run(run_a)
    sb, rows_b = load_run(run_b)
    tols = tolerances or {}
    cmp = Comparison(str(run_a), str(run_b))
    pcs_a, pcs_b = _per_clip(rows_a), _per_clip(rows_b)
    ra, rb = sa.get("results", {}), sb.get("results", {})
    refused_metrics: set[str] = set()
    for setting in sorted(set(ra) | set(rb)):
        for method in sorted(set(ra.get(setting, {})) | set(rb.get(setting, {}))):
            if methods and method not in methods:
                continue
            va, vb = ra.get(setting, {}).get(method), rb.get(setting, {}).get(method)
            if va is None or vb is None:
                cmp.only_in.append(f"{setting}/{method}: only in {'B' if va is None else 'A'}")
                continue
            for value_name in sorted(set(va) | set(vb)):
                if value_name not in va or value_name not in vb:
                    cmp.only_in.append(f"{setting}/{method}/{value_name}: only in {'B' if value_name not in va else 'A'}")
                    continue
                ea, eb = va[value_name], vb[value_name]
                metric = ea.get("metric") or eb.get("metric")
                diff = protocol_diff(sa.get("protocols", {}).get(ea.get("metric")), sb.get("protocols", {}).get(eb.get("metric")))
                if ea.get("metric") != eb.get("metric"):
                    diff = [f"metric {ea.get('metric')!r} vs {eb.get('metric')!r}"] + diff
                if diff:
                    if metric not in refused_metrics:
                        cmp.refused.append(f"{metric}: protocols differ, not compared ({'; '.join(diff)})")
                        refused_metrics.add(metric)
                    continue
                cmp.rows.append(_compare_value(setting, method, metric, value_name, ea, eb,
                                               pcs_a.get((setting, method, value_name), {}),
                                               pcs_b.get((setting, method, value_name), {}),
                                               tolerance_for(tols, method, setting, value_name, default_tolerance),
                                               n_boot, seed))
    return cmp


def _compare_value(setting: str, method: str, metric: str, value_name: str, ea: dict, eb: dict,
                   clips_a: dict[str, float], clips_b: dict[str, float], tol: Tolerance,
                   n_boot: int, seed: int) -> Row:
    a, b = ea.get("mean"), eb.get("mean")
    hib = ea.get("higher_is_better", eb.get("higher_is_better"))
    tol_txt = f"{tol.amount:g}%" if tol.percent else f"{tol.amount:g}"
    if a is None or b is None:
        return Row(setting, method, metric, value_name, a, b, None, "n/a", None, None, 0, hib, tol_txt, False,
                   "no value in " + ("A" if a is None else "B"))
    delta = b - a
    if abs(delta) <= 1e-12 * max(1.0, abs(a)):
        direction = "same"
    elif hib is None:
        direction = "n/a"
    else:
        direction = "better" if (delta > 0) == bool(hib) else "worse"
    common = sorted(set(clips_a) & set(clips_b))
    lo = hi = None
    note = ""
    if common:
        lo, hi = paired_bootstrap_ci(np.array([clips_a[c] for c in common]), np.array([clips_b[c] for c in common]),
                                     n_boot=n_boot, seed=seed)
        if len(common) != max(len(clips_a), len(clips_b)):
            note = f"{len(common)} common clips of {len(clips_a)}/{len(clips_b)}"
    else:
        note = "split-level value: no per-clip CI"
    worsening = 0.0 if direction != "worse" else abs(delta)
    fails = direction == "worse" and worsening > tol.allowed(a) + 1e-12
    return Row(setting, method, metric, value_name, a, b, delta, direction, lo, hi, len(common), hib, tol_txt, fails, note)


def render(cmp: Comparison, console: Any = None) -> None:
    """Print the comparison as a rich table, then refusals and the verdict."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.4g}"

    t = Table(title=f"A = {cmp.run_a}   B = {cmp.run_b}   (delta = B - A)")
    for col in ("setting", "method", "value", "A", "B", "delta", "95% CI (paired)", "direction", "tol", "gate"):
        t.add_column(col)
    for r in cmp.rows:
        color = {"better": "green", "worse": "red"}.get(r.direction, "")
        t.add_row(r.setting, r.method, r.value_name, f(r.a), f(r.b), f(r.delta),
                  f"[{f(r.ci_low)}, {f(r.ci_high)}]" if r.ci_low is not None else "—",
                  f"[{color}]{r.direction}[/{color}]" if color else r.direction, r.tolerance,
                  "[red]FAIL[/red]" if r.fails else "ok")
    console.print(t)
    for line in cmp.refused:
        console.print(f"[yellow]refused[/yellow] {line}")
    for line in cmp.only_in:
        console.print(f"[dim]not compared[/dim] {line}")
    bad = [r for r in cmp.rows if r.fails]
    if bad:
        console.print(f"[red]FAIL[/red]: {len(bad)} value(s) worse beyond tolerance: "
                      + ", ".join(f"{r.setting}/{r.method}/{r.value_name}" for r in bad))
    else:
        console.print("[green]OK[/green]: no value worse beyond tolerance")
