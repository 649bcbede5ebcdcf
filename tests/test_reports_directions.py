"""Report columns take their direction from the metric registry when a run did not record it (an older run, a
hand-made summary): built-in metrics (mouth_r) and a plugin registered in this process get their arrows and
ranks; a value no registry knows gets none. No table of directions in reports/ repeats the registry's."""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

import metrics.base as metrics_base
from reports.load import load_run
from reports.tables import paper_table


class _PluginSharpness(metrics_base.Metric):
    """A plugin metric: registered only inside the test (monkeypatched into the registry)."""

    name: ClassVar[str] = "t_plugin_sharp"
    outputs: ClassVar[tuple[str, ...]] = ("SHARP-ERR",)
    higher_is_better: ClassVar[dict[str, bool | None]] = {"SHARP-ERR": False}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def protocol(self) -> metrics_base.Protocol:
        return metrics_base.Protocol("t_plugin_sharp", "numpy", None, "gt crop track", 256, 25.0)


def _v(mean: float) -> dict:  # no "higher_is_better": the run did not record a direction
    return {"mean": mean, "ci_low": mean, "ci_high": mean, "n_clips": 2}


def test_unrecorded_directions_come_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics_base.load_all()
    monkeypatch.setitem(metrics_base.REGISTRY, _PluginSharpness.name, _PluginSharpness)
    rec = {m: {"mouth_r": _v(r), "SHARP-ERR": _v(e), "MYSTERY": _v(e)}
           for m, r, e in (("a", 0.6, 2.0), ("b", 0.3, 1.0), ("c", 0.1, 3.0))}
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({
        "run_id": "t", "config": {"split": "demo"}, "results": {"reconstruction": rec}, "unavailable": {},
        "protocols": {}, "latency": {}, "git_hash": "abc", "versions": {}, "machine": {}}))
    table = paper_table([load_run(run)])
    names = [c[3] for c in table.columns]
    arrows = dict(zip(names, table.arrows()))
    assert arrows["mouth_r"] == "↑" and arrows["SHARP-ERR"] == "↓"
    assert arrows["MYSTERY"] == ""  # no run and no registry knows it: no arrow, not ranked
    by = {r.method: r for r in table.rows}
    ranks = lambda v: [by[m].cells[names.index(v)].rank for m in "abc"]  # noqa: E731
    assert ranks("mouth_r") == [1, 2, 3] and ranks("SHARP-ERR") == [2, 1, 3] and ranks("MYSTERY") == [None] * 3
