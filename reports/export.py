"""The paper table as Markdown, LaTeX (booktabs) and CSV: what gets pasted into a paper or a PR.
Each column group leads with its n (clips the means are over); flags and the legend travel with the table."""
from __future__ import annotations

import csv
import io

from reports.tables import RUNTIME_HEADER, Cell, Row, Table

SHORT = {"Reconstruction": "Rec", "Cross Audio": "Cross"}


def _n_text(row: Row, setting: str) -> str:
    n = row.n.get(setting)
    return "—" if n is None else str(n)


def _headers(table: Table) -> list[str]:
    arrows = table.arrows()
    out = ["Dataset", "Method"]
    for g, _, idx in table.groups():
        out.append(f"{SHORT.get(g, g)} n")
        out += [f"{SHORT.get(g, g)} {table.columns[j][1]}{arrows[j]}" for j in idx]
    return out + [f"{RUNTIME_HEADER}↓"]


def _row_cells(table: Table, row: Row, render) -> list[str]:
    """Cells of one row in header order: per group its n, then its values; runtime last."""
    out = []
    for _, setting, idx in table.groups():
        out.append(_n_text(row, setting))
        out += [render(row.cells[j]) for j in idx]
    return out + [render(row.runtime)]


def _n_suffix(c: Cell) -> str:
    return f" (n={c.n_clips})" if c.n_clips is not None else ""


def _md_cell(c: Cell) -> str:
    if not c.available:
        return f"—[^{c.footnote}]" if c.footnote else "—"
    t = c.text()
    t = f"**{t}**" if c.rank == 1 else (f"<u>{t}</u>" if c.rank == 2 else t)
    note = f"[^{c.footnote}]" if c.footnote else ""
    return f"{t}{c.markers()}{note} {c.ci_text()}{_n_suffix(c)}".strip()


def to_markdown(table: Table) -> str:
    head = _headers(table)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.rows:
        lines.append("| " + " | ".join([r.dataset, r.method] + _row_cells(table, r, _md_cell)) + " |")
    lines += ["", *[f"- {line}" for line in table.legend()]]
    if table.footnotes:
        lines.append("")
        lines += [f"[^{i}]: {text}" for i, text in enumerate(table.footnotes, 1)]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("$", r"\$"),
                 ("†", r"$^\dagger$"), ("‡", r"$^\ddagger$")):
        s = s.replace(a, b)
    return s


_TEX_FLAG = {"floor": r"$^\dagger$", "coverage": r"$^\ddagger$"}


def _tex_cell(c: Cell) -> str:
    if not c.available:
        return f"--\\textsuperscript{{{c.footnote}}}" if c.footnote else "--"
    t = c.text()
    if c.rank == 1:
        t = f"\\textbf{{{t}}}"
    elif c.rank == 2:
        t = f"\\underline{{{t}}}"
    t += "".join(_TEX_FLAG[f] for f in c.flags)
    return t + (f"\\textsuperscript{{{c.footnote}}}" if c.footnote else "") + _n_suffix(c)


def to_latex(table: Table, caption: str = "Quantitative comparison.", label: str = "tab:comparison") -> str:
    arrows = ["$\\uparrow$" if a == "↑" else "$\\downarrow$" if a == "↓" else "" for a in table.arrows()]
    groups = table.groups()
    width = sum(len(idx) + 1 for _, _, idx in groups)
    out = ["\\begin{table*}[t]", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
           "\\resizebox{\\textwidth}{!}{%", f"\\begin{{tabular}}{{ll{'c' * (width + 1)}}}", "\\toprule"]
    out.append(" & & " + " & ".join(f"\\multicolumn{{{len(idx) + 1}}}{{c}}{{{g}}}" for g, _, idx in groups)
               + f" & {RUNTIME_HEADER} \\\\")
    start, rules = 3, []
    for _, _, idx in groups:
        rules.append(f"\\cmidrule(lr){{{start}-{start + len(idx)}}}")
        start += len(idx) + 1
    out.append(" ".join(rules))
    heads = []
    for _, _, idx in groups:
        heads += ["$n$"] + [f"{_tex_escape(table.columns[j][1])}{arrows[j]}" for j in idx]
    out.append("Dataset & Method & " + " & ".join(heads) + " & ms$\\downarrow$ \\\\")
    out.append("\\midrule")
    datasets = list(dict.fromkeys(r.dataset for r in table.rows))
    for dataset in datasets:
        rows = [r for r in table.rows if r.dataset == dataset]
        for i, r in enumerate(rows):
            first = f"\\multirow{{{len(rows)}}}{{*}}{{{_tex_escape(dataset)}}}" if i == 0 else ""
            cells = [x if x != "—" else "--" for x in _row_cells(table, r, _tex_cell)]
            out.append(f"{first} & {_tex_escape(r.method)} & " + " & ".join(cells) + " \\\\")
        out.append("\\midrule")
    out[-1] = "\\bottomrule"
    out += ["\\end{tabular}}"]
    out += [f"\\\\[2pt]\\footnotesize{{{_tex_escape(line)}}}" for line in table.legend()]
    out += [f"\\\\[2pt]\\footnotesize{{\\textsuperscript{{{i}}} {_tex_escape(t)}}}" for i, t in enumerate(table.footnotes, 1)]
    out.append("\\end{table*}")
    return "\n".join(out) + "\n"


def _num(x: float | None) -> float | None:
    """Raw value for CSV with a negative zero written as 0.0."""
    return None if x is None else x + 0.0


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "method", "group", "metric", "setting", "value_name", "mean", "ci_low", "ci_high", "rank",
                "n_clips", "flags", "note"])
    for r in table.rows:
        for (g, h, setting, vn), c in zip(table.columns, r.cells):
            note = table.footnotes[c.footnote - 1] if c.footnote else ""
            n = c.n_clips if c.n_clips is not None else r.n.get(setting)
            flags = ";".join(c.flags)  # keys of reports.tables.FLAGS: floor, coverage
            w.writerow([r.dataset, r.method, g, h, setting, vn, _num(c.mean), _num(c.ci_low), _num(c.ci_high), c.rank,
                        n, flags, note])
        w.writerow([r.dataset, r.method, "Runtime", "ms", "", "ms_per_frame", _num(r.runtime.mean), "", "",
                    r.runtime.rank, "", "", ""])
    return buf.getvalue()
