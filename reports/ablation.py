"""The paper's ablation tables (RealTalk Tables 5-7) from the per-variant runs, as Markdown and an HTML section.

Layout (the paper's, as we read it): one row per variant in the paper's order, the full model last-but-
one or last as the paper puts it and marked "Ours"; Table 7 adds the renderer's parameter count, ours next
to the paper's. Columns:
- Table 5 (A2E: shape / history): LMD, M-LMD, F-LMD (metrics.lmd, ATVGnet-style landmark distance) and
  Sync_conf (metrics.syncnet LSE-C, Chung & Zisserman's SyncNet) on reconstruction.
- Tables 6 and 7 (renderer): FID (metrics.fid, pytorch-fid), LPIPS (metrics.lpips_metric, AlexNet v0.1),
  SSIM (metrics.ssim, Wang et al.) and PSNR (metrics.psnr) on reconstruction, plus M-LMD (mouth shape).
A metric that could not run here is "—" with a footnote saying why (never dropped); each row says over how
many clips its means are (n) and which clips failed. The best ranked value per column is bold (only among
two or more rows with a value). Values come from each variant's summary.json (harness runner), read as is.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

from reports.tables import fmt

# (header, value name in summary.json results, metric registry name)
COLUMNS: dict[int, list[tuple[str, str, str]]] = {
    5: [("LMD", "LMD", "lmd"), ("M-LMD", "M-LMD", "lmd"), ("F-LMD", "F-LMD", "lmd"),
        ("Sync_conf", "LSE-C", "syncnet")],
    6: [("FID", "FID", "fid"), ("LPIPS", "LPIPS", "lpips"), ("SSIM", "SSIM", "ssim"), ("PSNR", "PSNR", "psnr"),
        ("M-LMD", "M-LMD", "lmd")],
    7: [("FID", "FID", "fid"), ("LPIPS", "LPIPS", "lpips"), ("SSIM", "SSIM", "ssim"), ("PSNR", "PSNR", "psnr"),
        ("M-LMD", "M-LMD", "lmd")],
}
PARAM_TABLES = {7}  # tables whose rows carry the renderer parameter count (ours | paper)


def metrics_for(table: int) -> list[str]:
    """Metric registry names a table needs (in column order, unique)."""
    out: list[str] = []
    for _, _, m in COLUMNS[table]:
        if m not in out:
            out.append(m)
    return out


@dataclass
class AblationRow:
    key: str
    label: str
    full: bool
    values: dict[str, dict[str, Any]]  # value name -> summary.json results entry ({"mean", "n_clips", ...})
    params: int | None = None  # renderer parameters, ours
    paper_params: int | None = None
    n_clips: int | None = None
    failed: list[str] = field(default_factory=list)  # clip ids that failed for this variant
    run_dir: str | None = None
    validation: dict[str, float] | None = None  # the varied stage's held-out losses (inference conditions)


@dataclass
class AblationTable:
    table: int
    title: str
    rows: list[AblationRow]
    unavailable: dict[str, str]  # metric name -> reason (from the runs' summary.json)
    notes: list[str] = field(default_factory=list)

    def headers(self) -> list[str]:
        h = ["Variant"]
        if self.table in PARAM_TABLES:
            h += ["Params (M)", "Paper (M)"]
        return h + [c for c, _, _ in COLUMNS[self.table]] + ["n"]

    def footnotes(self) -> list[str]:
        return [f"{m}: unavailable here ({why})" for m, why in sorted(self.unavailable.items())
                if m in metrics_for(self.table)]

    def best(self) -> dict[str, str]:
        """value name -> key of the best row (two or more rows with a ranked value)."""
        out = {}
        for _, vname, _ in COLUMNS[self.table]:
            cand = [(r.values[vname]["mean"], r.key, r.values[vname].get("higher_is_better")) for r in self.rows
                    if vname in r.values and _num(r.values[vname].get("mean")) is not None]
            if len(cand) < 2 or cand[0][2] is None:
                continue
            hib = bool(cand[0][2])
            out[vname] = (max if hib else min)(cand, key=lambda c: c[0])[1]
        return out

    def cells(self) -> list[list[tuple[str, bool]]]:
        """Per row, (text, bold) per header."""
        best = self.best()
        foot = {m: i + 1 for i, m in enumerate(sorted(m for m in self.unavailable if m in metrics_for(self.table)))}
        out = []
        for r in self.rows:
            row = [(r.label + (" (Ours)" if r.full and "Ours" not in r.label else ""), False)]
            if self.table in PARAM_TABLES:
                row.append((fmt(r.params / 1e6, 2) if r.params is not None else "—", False))
                row.append((fmt(r.paper_params / 1e6, 2) if r.paper_params is not None else "—", False))
            for _, vname, metric in COLUMNS[self.table]:
                v = r.values.get(vname, {})
                mean = _num(v.get("mean"))
                if mean is None:
                    mark = f"[{foot[metric]}]" if metric in foot else ""
                    row.append(("—" + mark, False))
                else:
                    row.append((fmt(mean, 3), best.get(vname) == r.key))
            n = "—" if r.n_clips is None else str(r.n_clips)
            row.append((n + (f" ({len(r.failed)} failed)" if r.failed else ""), False))
            out.append(row)
        return out


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def to_markdown(t: AblationTable) -> str:
    lines = [f"### {t.title}", "", "| " + " | ".join(t.headers()) + " |",
             "|" + "|".join("---" for _ in t.headers()) + "|"]
    for row in t.cells():
        lines.append("| " + " | ".join(f"**{s}**" if b else s for s, b in row) + " |")
    lines.append("")
    for i, f in enumerate(t.footnotes()):
        lines.append(f"[{i + 1}] {f}  ")
    failed = [f"{r.label}: {', '.join(r.failed)}" for r in t.rows if r.failed]
    if failed:
        lines.append("Failed clips (not in the means): " + "; ".join(failed) + "  ")
    lines += [f"{n}  " for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


def to_html(t: AblationTable) -> str:
    """A self-contained <section> (inline table, escaped text) for the HTML report or a page of its own."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.headers())
    body = "".join("<tr>" + "".join(f"<td>{'<b>' + e(s) + '</b>' if b else e(s)}</td>" for s, b in row) + "</tr>"
                   for row in t.cells())
    notes = [f"[{i + 1}] {f}" for i, f in enumerate(t.footnotes())]
    notes += [f"Failed clips (not in the means): {r.label}: {', '.join(r.failed)}" for r in t.rows if r.failed]
    notes += t.notes
    foot = "".join(f"<p class=\"note\">{e(n)}</p>" for n in notes)
    return (f"<section class=\"ablation\" id=\"ablation-table-{t.table}\"><h3>{e(t.title)}</h3>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{foot}</section>\n")


def to_page(t: AblationTable) -> str:
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>" + html.escape(t.title) + "</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}"
            "td:first-child{text-align:left}.note{font-size:90%;color:#444}</style></head><body>"
            + to_html(t) + "</body></html>\n")


def to_json(t: AblationTable) -> dict[str, Any]:
    return {"table": t.table, "title": t.title, "headers": t.headers(),
            "rows": [{"key": r.key, "label": r.label, "full": r.full, "params": r.params,
                      "paper_params": r.paper_params, "n_clips": r.n_clips, "failed": r.failed,
                      "run_dir": r.run_dir, "validation": r.validation,
                      "values": {vname: r.values.get(vname, {}).get("mean") for _, vname, _ in COLUMNS[t.table]}}
                     for r in t.rows],
            "unavailable": t.unavailable, "notes": t.notes}


def row_from_summary(key: str, label: str, full: bool, summary: dict[str, Any], method: str = "realtalk",
                     setting: str = "reconstruction") -> AblationRow:
    """One variant's row from its run's summary.json (results, failures)."""
    res = summary.get("results", {}).get(setting, {}).get(method, {})
    ns = [v.get("n_clips") for v in res.values() if isinstance(v, dict) and v.get("n_clips") is not None]
    failed = sorted({f["clip_id"] for f in summary.get("failures", []) if f.get("method") == method
                     and f.get("setting") == setting})
    return AblationRow(key=key, label=label, full=full, values=dict(res), n_clips=max(ns) if ns else 0,
                       failed=failed)
