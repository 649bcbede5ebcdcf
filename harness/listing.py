"""What `methods list` / `metrics list` show: every registered method and metric (built-in and plugins) with
where it came from and whether it can run here, asked of its own availability() (the run's own check)."""
from __future__ import annotations

import inspect
import json
from typing import Any

DIRECTION = {True: "higher", False: "lower", None: "informational"}


def _summary_line(cls: type) -> str:
    import sys

    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")  # its own docstring, not the base class's
    if not doc:  # else its module's
        doc = inspect.cleandoc(getattr(sys.modules.get(cls.__module__), "__doc__", None) or "")
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _required_args(cls: type) -> list[str]:
    """Constructor parameters without a default: such a method is built per run (--methods / --method-arg)."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return []
    return [p.name for p in list(sig.parameters.values())[1:]
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _problem(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def method_rows() -> list[dict[str, Any]]:
    from harness.core.methods import ORIGINS, load_all
    from harness.core.plugin_sources import origin_of

    rows = []
    for name, cls in sorted(load_all().items()):
        row: dict[str, Any] = {"name": name, "kind": getattr(cls, "kind", "?"),
                               "origin": ORIGINS.get(name) or origin_of(cls), "description": _summary_line(cls),
                               "required_args": _required_args(cls)}
        if row["required_args"]:
            args = ", ".join(f"{name}.{a}=..." for a in row["required_args"])
            hint = " or --methods folder:NAME=DIR" if name == "precomputed" else ""
            row.update(available=None, reason=f"built per run: give --method-arg {args}{hint}")
        else:
            try:
                ok, why = cls().availability()
            except Exception as exc:  # noqa: BLE001 - a method that cannot even be built is unavailable, with why
                ok, why = False, _problem(exc)
            row.update(available=bool(ok), reason="" if ok else why)
        rows.append(row)
    return rows


def metric_rows(device: str = "cpu") -> list[dict[str, Any]]:
    from harness.evaluate import metric_applies
    from harness.core.methods import SETTINGS
    from harness.core.plugin_sources import origin_of
    from metrics.base import ORIGINS, load_all

    rows = []
    for name, cls in sorted(load_all().items()):
        row: dict[str, Any] = {
            "name": name, "origin": ORIGINS.get(name) or origin_of(cls), "description": _summary_line(cls),
            "values": {v: DIRECTION[cls.higher_is_better.get(v)] for v in cls.outputs},
            "needs": sorted(cls.needs), "split_level": bool(cls.split_level)}
        try:
            m = cls(device=device)
            ok, why = m.availability()
            if ok:
                m.protocol()  # as in a run: a protocol that cannot be stated makes the metric unavailable
            row["settings"] = [s for s in SETTINGS if metric_applies(m, s)]
        except Exception as exc:  # noqa: BLE001
            ok, why = False, _problem(exc)
            row["settings"] = []
        row.update(available=bool(ok), reason="" if ok else why)
        rows.append(row)
    return rows


def _state(row: dict[str, Any]) -> str:
    if row["available"] is None:
        return "[cyan]per run[/]"
    return "[green]available[/]" if row["available"] else "[yellow]unavailable[/]"


def print_methods(rows: list[dict[str, Any]], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="methods (harness/core/methods.py registry + plugins)", show_lines=True)
    for col in ("method", "kind", "from", "here", "reason / what it needs", "description"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["kind"], r["origin"], _state(r), r["reason"], r["description"])
    Console().print(t)


def print_metrics(rows: list[dict[str, Any]], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    arrow = {"higher": "↑ higher", "lower": "↓ lower", "informational": "informational"}
    t = Table(title="metrics (metrics/base.py registry + plugins)", show_lines=True)
    for col in ("metric", "values (direction)", "needs", "settings", "from", "here", "reason", "description"):
        t.add_column(col, overflow="fold")
    for r in rows:
        values = "\n".join(f"{v} {arrow[d]}" for v, d in r["values"].items())
        needs = ", ".join(r["needs"]) + ("\n(split-level)" if r["split_level"] else "")
        t.add_row(r["name"], values, needs, ", ".join(r["settings"]) or "-", r["origin"], _state(r), r["reason"],
                  r["description"])
    Console().print(t)
