"""Matplotlib figures (PNG + SVG): speed vs quality per method (the paper's Fig. 1, right) and
per-metric bars with 95% confidence intervals."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reports.load import RunData  # noqa: E402
from reports.tables import _runtime_ms  # noqa: E402


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def speed_quality(run: RunData, value_name: str, out_dir: Path, setting: str = "reconstruction") -> list[Path] | None:
    """Scatter of ms/frame (x, log) vs a quality value (y) per method; None when nothing has both."""
    pts = []
    for method in run.methods():
        v = run.summary.get("results", {}).get(setting, {}).get(method, {}).get(value_name)
        ms = _runtime_ms(run, method)
        if v and v.get("mean") is not None and ms:
            pts.append((method, ms, v["mean"]))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method, ms, y in pts:
        ax.scatter(ms, y, s=60)
        ax.annotate(method, (ms, y), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("runtime (ms per frame, log scale)")
    ax.set_ylabel(f"{value_name} ({setting})")
    ax.set_title(f"speed vs {value_name}")
    ax.grid(alpha=0.3)
    return _save(fig, out_dir, f"speed_vs_{value_name.lower().replace('-', '_')}_{setting}")


def metric_bars(run: RunData, setting: str, value_name: str, out_dir: Path) -> list[Path] | None:
    """Bars of the mean per method with the bootstrap 95% CI as error bars."""
    rows = []
    for method in run.methods():
        v = run.summary.get("results", {}).get(setting, {}).get(method, {}).get(value_name)
        if v and v.get("mean") is not None and abs(v["mean"]) != float("inf"):
            # split-level values (FID) have no per-clip CI: no error bar
            lo = v["mean"] if v.get("ci_low") is None else v["ci_low"]
            hi = v["mean"] if v.get("ci_high") is None else v["ci_high"]
            rows.append((method, v["mean"], max(v["mean"] - lo, 0), max(hi - v["mean"], 0), v.get("higher_is_better")))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(3.5, 1.1 * len(rows) + 1), 3.2))
    xs = range(len(rows))
    ax.bar(xs, [r[1] for r in rows], yerr=[[r[2] for r in rows], [r[3] for r in rows]], capsize=4,
           color=[f"C{i}" for i in xs])
    ax.set_xticks(list(xs), [r[0] for r in rows], rotation=20, ha="right")
    arrow = "↑" if rows[0][4] else "↓" if rows[0][4] is not None else ""
    ax.set_title(f"{value_name}{arrow} ({setting}), 95% CI")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out_dir, f"bars_{setting}_{value_name.lower().replace('-', '_')}")
