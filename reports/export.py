"""The paper table as Markdown, LaTeX (booktabs) and CSV: what gets pasted into a paper or a PR."""
from __future__ import annotations

import csv
import io
from itertools import groupby

from reports.tables import RUNTIME_HEADER, Cell, Table


def _headers(table: Table) -> list[str]:
    arrows = table.arrows()
    short = {"Reconstruction": "Rec", "Cross Audio": "Cross"}
    return ["Dataset", "Method"] + [f"{short.get(g, g)} {h}{a}" for (g, h, _, _), a in zip(table.columns, arrows)] + [
        f"{RUNTIME_HEADER}↓"]


def _md_cell(c: Cell) -> str:
    t = c.text()
    if not c.available:
        return f"—[^{c.footnote}]" if c.footnote else "—"
    ci = c.ci_text()
    t = f"**{t}**" if c.rank == 1 else (f"<u>{t}</u>" if c.rank == 2 else t)
    note = f"[^{c.footnote}]" if c.footnote else ""
    return f"{t}{note} {ci}".strip()


def to_markdown(table: Table) -> str:
    head = _headers(table)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.rows:
        rt = _md_cell(r.runtime) if r.runtime.available else "—"
        lines.append("| " + " | ".join([r.dataset, r.method] + [_md_cell(c) for c in r.cells] + [rt]) + " |")
    if table.footnotes:
        lines.append("")
        lines += [f"[^{i}]: {text}" for i, text in enumerate(table.footnotes, 1)]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    return s


def _tex_cell(c: Cell) -> str:
    if not c.available:
        return f"--\\textsuperscript{{{c.footnote}}}" if c.footnote else "--"
    t = c.text()
    if c.rank == 1:
        t = f"\\textbf{{{t}}}"
    elif c.rank == 2:
        t = f"\\underline{{{t}}}"
    return t + (f"\\textsuperscript{{{c.footnote}}}" if c.footnote else "")


def to_latex(table: Table, caption: str = "Quantitative comparison.", label: str = "tab:comparison") -> str:
    arrows = ["$\\uparrow$" if a == "↑" else "$\\downarrow$" if a == "↓" else "" for a in table.arrows()]
    n = len(table.columns)
    out = ["\\begin{table*}[t]", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
           "\\resizebox{\\textwidth}{!}{%", f"\\begin{{tabular}}{{ll{'c' * (n + 1)}}}", "\\toprule"]
    groups = [(g, len(list(items))) for g, items in groupby(c[0] for c in table.columns)]
    out.append(" & & " + " & ".join(f"\\multicolumn{{{k}}}{{c}}{{{g}}}" for g, k in groups) + f" & {RUNTIME_HEADER} \\\\")
    start = 3
    rules = []
    for _, k in groups:
        rules.append(f"\\cmidrule(lr){{{start}-{start + k - 1}}}")
        start += k
    out.append(" ".join(rules))
    out.append("Dataset & Method & " + " & ".join(f"{h}{a}" for (_, h, _, _), a in zip(table.columns, arrows))
               + " & ms$\\downarrow$ \\\\")
    out.append("\\midrule")
    for dataset, rows in groupby(table.rows, key=lambda r: r.dataset):
        rows = list(rows)
        for i, r in enumerate(rows):
            first = f"\\multirow{{{len(rows)}}}{{*}}{{{_tex_escape(dataset)}}}" if i == 0 else ""
            cells = [_tex_cell(c) for c in r.cells] + [_tex_cell(r.runtime)]
            out.append(f"{first} & {_tex_escape(r.method)} & " + " & ".join(cells) + " \\\\")
        out.append("\\midrule")
    out[-1] = "\\bottomrule"
    out += ["\\end{tabular}}"]
    out += [f"\\\\[2pt]\\footnotesize{{\\textsuperscript{{{i}}} {_tex_escape(t)}}}" for i, t in enumerate(table.footnotes, 1)]
    out.append("\\end{table*}")
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "method", "group", "metric", "setting", "value_name", "mean", "ci_low", "ci_high", "rank",
                "note"])
    for r in table.rows:
        for (g, h, setting, vn), c in zip(table.columns, r.cells):
            note = table.footnotes[c.footnote - 1] if c.footnote else ""
            w.writerow([r.dataset, r.method, g, h, setting, vn, c.mean, c.ci_low, c.ci_high, c.rank, note])
        w.writerow([r.dataset, r.method, "Runtime", "ms", "", "ms_per_frame", r.runtime.mean, "", "", r.runtime.rank, ""])
    return buf.getvalue()
