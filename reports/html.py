"""`build_report(runs, out)`: a self-contained offline HTML report (Jinja2), images as files next to it."""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any

import jinja2

from reports.export import to_csv, to_latex, to_markdown
from reports.grids import comparison_grid, side_by_side
from reports.load import RunData, load_run
from reports.plots import metric_bars, speed_quality
from reports.tables import paper_table

TEMPLATES = Path(__file__).parent / "templates"


def _per_clip_tables(run: RunData) -> list[dict[str, Any]]:
    """One wide table per setting: rows (clip, method), columns value names."""
    out = []
    df = run.per_clip
    if df.empty:
        return out
    for setting, part in df.groupby("setting", sort=False):
        wide = part.pivot_table(index=["clip_id", "method"], columns="value_name", values="value", aggfunc="first")
        wide = wide.reset_index()
        cols = list(wide.columns)
        rows = [[_fmt(v) for v in rec] for rec in wide.itertuples(index=False)]
        out.append({"setting": setting, "columns": cols, "rows": rows})
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return "inf" if math.isinf(v) else f"{v:.4f}"
    return str(v)


def _latency_rows(run: RunData) -> list[dict[str, Any]]:
    rows = []
    for method, stages in (run.summary.get("latency") or {}).items():
        for stage, r in stages.items():
            rows.append({"method": method, "stage": stage, **r})
    return rows


def build_report(run_dirs: list[str | Path], out_dir: str | Path, grid_clips: int = 3, columns: int = 6,
                 videos: bool = True) -> Path:
    """Write out_dir/index.html (+ images, plots, exports) for one or more runs; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(p) for p in run_dirs]
    table = paper_table(runs)
    (out / "table.md").write_text(to_markdown(table))
    (out / "table.tex").write_text(to_latex(table))
    (out / "table.csv").write_text(to_csv(table))

    figures: list[dict[str, str]] = []
    grids: list[dict[str, str]] = []
    sections = []
    for k, run in enumerate(runs):
        prefix = f"run{k}"
        for value_name in ("LMD", "FID"):
            paths = speed_quality(run, value_name, out / "plots", "reconstruction")
            if paths:
                figures.append({"png": f"plots/{paths[0].name}", "svg": f"plots/{paths[1].name}",
                                "caption": f"{run.run_id}: speed vs {value_name} (reconstruction)"})
        for setting, by_method in run.summary.get("results", {}).items():
            names = sorted({vn for vals in by_method.values() for vn in vals})
            for vn in names:
                paths = metric_bars(run, setting, vn, out / "plots" / prefix)
                if paths:
                    figures.append({"png": f"plots/{prefix}/{paths[0].name}", "svg": f"plots/{prefix}/{paths[1].name}",
                                    "caption": f"{run.run_id}: {vn} ({setting})"})
        clip_ids = list(dict.fromkeys(run.per_clip["clip_id"])) if not run.per_clip.empty else []
        for setting in run.summary.get("results", {}):
            for clip_id in clip_ids[:grid_clips]:
                g = comparison_grid(run, clip_id, setting, out / "grids" / prefix / f"{setting}_{clip_id}.png",
                                    columns=columns)
                if g is None:
                    continue
                item = {"png": f"grids/{prefix}/{g.name}", "caption": f"{run.run_id} · {setting} · {clip_id}"}
                if videos:
                    v = side_by_side(run, clip_id, setting, out / "videos" / prefix / f"{setting}_{clip_id}.mp4")
                    if v is not None:
                        item["mp4"] = f"videos/{prefix}/{v.name}"
                grids.append(item)
        sections.append({
            "run": run, "per_clip": _per_clip_tables(run), "latency": _latency_rows(run),
            "protocols": run.summary.get("protocols", {}), "unavailable": run.summary.get("unavailable", {}),
            "failures": run.summary.get("failures", []),
        })

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        table=table, arrows=table.arrows(), sections=sections, figures=figures, grids=grids,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    path = out / "index.html"
    path.write_text(html)
    return path
