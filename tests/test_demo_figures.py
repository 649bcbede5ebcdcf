"""The demo's lip-motion figures are the run's own values: M-LMD and mouth r per method with the 95% CI that
summary.json (and so the table and the report) holds, read from a tiny real run, never recomputed from the
stored videos (an earlier demo printed mouth r 0.235 from the re-read H.264 next to the run's 0.216)."""
from __future__ import annotations

import json
import math

import pytest
import test_runner_support as sup
from rich.console import Console

from harness.commands.demo import print_lip_figures
from harness.demo_figures import format_run_figures, run_figures, targets_line
from harness.runner import RunConfig, run_benchmark

METHODS = ["ground_truth", "static_frame", "copy_reference"]


@pytest.fixture(scope="module")
def tiny_run(data_root, tmp_path_factory):
    """2 real clips x 20 frames, the demo's three reference methods, lmd + mouth_r, no videos written."""
    tmp = tmp_path_factory.mktemp("demo-fig")
    split = sup.small_split(tmp, data_root, n_frames=20)
    out = tmp / "run"
    summary = run_benchmark(RunConfig(split=split, out=str(out), methods=METHODS, root=str(data_root),
                                      settings=["reconstruction"], metrics=["lmd", "mouth_r"], write_videos=False),
                            progress=False)
    assert summary["failures"] == []
    assert not (out / "videos").exists() or not any((out / "videos").rglob("*.mp4"))  # nothing to re-read
    return out, json.loads((out / "summary.json").read_text())


def _printed(run_dir, candidate):
    console = Console(record=True, width=250)
    print_lip_figures(str(run_dir), METHODS, console, candidate=candidate)
    return console.export_text()


def test_demo_prints_the_runs_mouth_r_and_ci(tiny_run):
    out, summary = tiny_run
    res = summary["results"]["reconstruction"]
    text = _printed(out, "ground_truth")
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ") and ln.split()[0] in METHODS and ln.split()[1] == "M-LMD"}
    assert set(lines) == set(METHODS), text
    for m in METHODS:
        for value, label in (("M-LMD", "M-LMD"), ("mouth_r", "mouth r")):
            c = res[m][value]
            assert all(math.isfinite(c[k]) for k in ("mean", "ci_low", "ci_high")), (m, value, c)
            want = f"{label} {c['mean']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}] ({c['n_clips']}/{c['n_common']} clips)"
            assert want.replace("-0.000", "0.000") in lines[m], (want, lines[m])
    # the ground truth against itself: M-LMD 0 beats both references, r = 1 (identical landmarks) meets 0.5
    assert "ground_truth beats the references on M-LMD: yes; mouth-opening r 1.000 >= 0.5" in text


def test_targets_can_fail_and_missing_values_are_shown(tiny_run):
    _, summary = tiny_run
    figs = run_figures(summary, METHODS)
    line = targets_line(figs, "static_frame", ["ground_truth"])
    assert line is not None and "on M-LMD: NO" in line  # static_frame is no better than the ground truth
    summary = json.loads(json.dumps(summary))
    del summary["results"]["reconstruction"]["copy_reference"]["mouth_r"]
    figs = run_figures(summary, METHODS + ["realtalk"])
    text = "\n".join(format_run_figures(figs, {"mouth_r": "test: reason"}))
    assert "copy_reference  M-LMD" in text and "mouth r — (not in the run)" in text
    assert "realtalk        M-LMD — (not in the run)" in text  # a method the run lacks is listed, not dropped
    assert "metric mouth_r unavailable in this run: test: reason" in text
    assert targets_line(figs, "realtalk") is None


def test_no_candidate_prints_nothing(tiny_run):
    out, _ = tiny_run
    assert _printed(out, "realtalk").strip() == ""
