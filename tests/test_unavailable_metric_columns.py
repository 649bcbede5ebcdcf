"""A metric named in --metrics that cannot run here is never dropped: the report's tables and the compare
output show its values as "—" with the reason (a plugin metric whose model file is missing)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import test_runner_support as sup

PROJECT = Path(__file__).resolve().parent.parent
PLUGIN = '''
from metrics.base import ClipInput, ClipResult, Metric, Protocol, register


@register
class MouthX(Metric):
    name = "t_mouthx"
    outputs = ("MOUTHX",)
    higher_is_better = {"MOUTHX": True}
    needs = frozenset({"generated", "ground_truth"})

    def availability(self):
        return False, "needs mouthx.bin (not found in ~/.cache/mouthx)"

    def protocol(self):
        return Protocol("t_mouthx", "numpy", None, "gt-crop-track", 256, 25.0)

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        raise AssertionError("never called: unavailable")
'''
REASON = "needs mouthx.bin (not found in ~/.cache/mouthx)"


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_unavailable_metric_is_a_dash_column_with_reason(data_root: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "mouthx_plugin.py"
    plugin.write_text(PLUGIN)
    split = sup.small_split(tmp_path, data_root, n_frames=8)
    r = _cli(["run", "--split", split, "--root", str(data_root), "--methods", "ground_truth,static_frame",
              "--metrics", "psnr,t_mouthx", "--settings", "reconstruction", "--max-frames", "8", "--no-progress",
              "--no-videos", "--plugin", str(plugin), "--out", "run"], tmp_path)
    assert r.returncode == 1 and "metric t_mouthx unavailable" in r.stdout, r.stdout + r.stderr  # named: a hole
    s = json.loads((tmp_path / "run/summary.json").read_text())
    assert s["unavailable"] == {"t_mouthx": REASON}
    assert s["unavailable_values"] == {"t_mouthx": {"values": ["MOUTHX"], "settings": ["reconstruction"],
                                                    "higher_is_better": {"MOUTHX": True}}}

    # the report needs no --plugin: the run recorded the metric's value names
    r = _cli(["report", "run", "--out", "rep", "--no-videos", "--grid-clips", "0"], tmp_path)
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "rep/index.html").read_text()
    assert "MOUTHX" in html and f"metric t_mouthx unavailable: {REASON}" in html
    md = (tmp_path / "rep/table.md").read_text()
    header = next(line for line in md.splitlines() if "MOUTHX" in line)
    col = [c.strip() for c in header.split("|")].index("Rec MOUTHX↑")  # its direction, as the run recorded it
    rows = [line for line in md.splitlines() if line.startswith("| ") and ("ground_truth" in line or "static_frame" in line)]
    assert len(rows) == 2
    for row in rows:  # every method's cell of the column is a dash pointing at the footnote
        cell = [c.strip() for c in row.split("|")][col]
        assert cell.startswith("—[^"), row
    assert f"MOUTHX: metric t_mouthx unavailable: {REASON}" in md

    r = _cli(["compare", "run", "run", "--format", "markdown"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if "| t_mouthx | MOUTHX |" in line]
    assert len(lines) == 2  # one row per method
    assert all("| — | — | — |" in line and f"unavailable in A and B: {REASON}" in line for line in lines)
    assert "1 value(s) compared" not in r.stdout and "shown as —" in r.stdout
