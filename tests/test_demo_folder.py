"""`make demo` after an upgrade: a runs/demo folder written by another recipe (other methods or method
arguments) is moved aside to runs/demo-previous-<k>, never refused and never deleted; the same recipe resumes."""
from __future__ import annotations

import json

from harness.commands.demo import set_aside_other_run
from harness.runner import RunConfig


def _cfg(out, methods):
    return RunConfig(split="demo", out=str(out), methods=methods, metrics="all", role="test")


def test_other_recipe_is_moved_aside_same_recipe_resumes(tmp_path):
    out = tmp_path / "demo"
    assert set_aside_other_run(out, _cfg(out, ["ground_truth"])) is None  # nothing there yet
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"identity": json.loads(json.dumps(_cfg(out, ["ground_truth"]).identity(),
                                                                                  default=str))}))
    (out / "finished.txt").write_text("work")
    assert set_aside_other_run(out, _cfg(out, ["ground_truth"])) is None and out.exists()  # same recipe: resume
    moved = set_aside_other_run(out, _cfg(out, ["ground_truth", "static_frame"]))
    assert moved == tmp_path / "demo-previous-1" and (moved / "finished.txt").read_text() == "work"
    assert not out.exists()
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"identity": {"methods": ["other"]}}))
    assert set_aside_other_run(out, _cfg(out, ["ground_truth"])) == tmp_path / "demo-previous-2"
