"""`build_report(runs, out)`: a self-contained offline HTML report (Jinja2), images as files next to it."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import jinja2

from reports.export import to_csv, to_latex, to_markdown
from reports.grids import comparison_grid, side_by_side
from reports.load import RunData, load_run
from reports.plots import metric_bars, speed_quality
from reports.tables import FLAGS, MIN_COVERAGE, fmt, paper_table

TEMPLATES = Path(__file__).parent / "templates"


def _per_clip_tables(run: RunData) -> list[dict[str, Any]]:
    """One wide table per setting: rows (clip, method), columns value names, then "frames <metric>" =
    frames used / total where the clip records have it (a value over a subset of frames says so)."""
    out = []
    df = run.per_clip
    if df.empty:
        return out
    coverage = run.coverage()
    for setting, part in df.groupby("setting", sort=False):
        wide = part.pivot_table(index=["clip_id", "method"], columns="value_name", values="value", aggfunc="first")
        wide = wide.reset_index()
        cols = list(wide.columns)
        metrics = sorted({m for (_, s, _), cov in coverage.items() if s == setting for m in cov})
        rows = []  # cells as (text, low coverage?)
        for rec in wide.itertuples(index=False):
            cov = coverage.get((rec[1], setting, rec[0]), {})
            rows.append([(_fmt(v), False) for v in rec] + [_cov_cell(cov.get(m)) for m in metrics])
        out.append({"setting": setting, "columns": cols + [f"frames {m}" for m in metrics], "rows": rows,
                    "coverage": bool(metrics)})
    return out


def _cov_cell(used_total: tuple[int, int] | None) -> tuple[str, bool]:
    """("used/total", below MIN_COVERAGE?) for one metric's frames on one clip."""
    if used_total is None:
        return "—", False
    used, total = used_total
    return f"{used}/{total}", total > 0 and used / total < MIN_COVERAGE


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return fmt(v, 4)
    return str(v)


def _num(v: Any, digits: int = 3) -> str:
    """Template filter: a number that never prints "-0.000"; missing -> "—"."""
    if v is None or isinstance(v, jinja2.Undefined):
        return "—"
    return fmt(float(v), digits)


def _failed_clips(run: RunData) -> dict[str, Any]:
    """The run's failures and, per setting, the clips left out of the common set (and which methods failed them)."""
    excluded = [{"setting": s, "clip_id": cid, "methods": ", ".join(ms)}
                for s, cs in (run.summary.get("clip_set") or {}).items()
                for cid, ms in sorted((cs.get("excluded") or {}).items())]
    common = {s: len(cs.get("common") or []) for s, cs in (run.summary.get("clip_set") or {}).items()}
    return {"failures": run.summary.get("failures") or [], "excluded": excluded, "common": common}


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
            "failed": _failed_clips(run),
        })

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"]))
    env.filters["num"] = _num
    html = env.get_template("report.html.j2").render(
        table=table, arrows=table.arrows(), groups=table.groups(), legend=table.legend(), flags=FLAGS,
        sections=sections, figures=figures, grids=grids,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    path = out / "index.html"
    path.write_text(html)
    return path
