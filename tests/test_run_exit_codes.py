"""`run` exits 1 when the run has a hole a CI step must not miss: a failed clip, a metric named on the command
line that could not run here, or a method that could not run; `--allow-failures` turns that into 0 and the
finished work is written either way. Metrics reached through `--metrics all` may be unavailable (shown,
exit 0): a user asking for "everything this machine can do" is not asking for LPIPS on a machine without
AlexNet."""
from __future__ import annotations

import json

import pytest

import test_runner_support as sup
from harness.cli import main
from metrics.base import REGISTRY as METRICS


class NeverHere(sup.AbsDiff):
    """A metric whose weights are never on this machine (availability says why)."""

    name = "t_never_here"
    outputs = ("NEVER",)
    higher_is_better = {"NEVER": False}

    def availability(self) -> tuple[bool, str]:
        return False, "never.pth not at /nowhere/never.pth"


@pytest.fixture
def never_here():
    METRICS[NeverHere.name] = NeverHere
    yield NeverHere.name
    del METRICS[NeverHere.name]


def _run(split: str, out, metrics: str, *extra: str) -> int:
    return main(["run", "--split", split, "--methods", "ground_truth", "--settings", "reconstruction",
                 "--metrics", metrics, "--clips", "Obama_clip3", "--out", str(out), "--no-progress",
                 "--n-boot", "10", *extra])


def test_named_unavailable_metric_fails_the_run(tmp_path, data_root, never_here, capsys):
    split = sup.small_split(tmp_path, data_root, n_frames=6)
    assert _run(split, tmp_path / "r1", f"psnr,{never_here}") == 1
    out = capsys.readouterr().out
    assert f"metric {never_here} unavailable" in out and "--allow-failures" in out
    summary = json.loads((tmp_path / "r1" / "summary.json").read_text())  # the finished work is kept
    assert summary["unavailable"][never_here].startswith("never.pth not at")
    assert "psnr" in json.dumps(summary["results"])
    assert _run(split, tmp_path / "r1", f"psnr,{never_here}", "--allow-failures") == 0


def test_unavailable_metric_under_all_is_shown_not_fatal(tmp_path, never_here):
    from harness.commands.run import missing_requested

    summary = {"unavailable": {never_here: "never.pth not at /nowhere"}, "unavailable_methods": {}}
    assert missing_requested(summary, "all") == []
    assert missing_requested(summary, ["psnr", never_here]) == [f"metric {never_here}"]
    assert missing_requested(summary, ["psnr"]) == []
    assert missing_requested({"unavailable_methods": {"dinet": "repo missing"}}, "all") == ["method dinet"]
