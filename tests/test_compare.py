"""`compare` on two synthetic run stores: deltas, directions, paired CIs, tolerances, protocol refusal, exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.compare import Tolerance, compare_runs, paired_bootstrap_ci
from harness.store import RunStore

PROTO = {"lmd": {"metric": "lmd", "backend": "dlib", "weights_sha256": "abc", "crop": "gt", "resolution": 256,
                 "fps": 25.0, "settings": {}},
         "ssim": {"metric": "ssim", "backend": "skimage", "weights_sha256": None, "crop": "gt", "resolution": 256,
                  "fps": 25.0, "settings": {"win": 7}}}


def make_run(path: Path, lmd: list[float], ssim: list[float], protocols=PROTO) -> Path:
    store = RunStore(path)
    clips = [f"c{i}" for i in range(len(lmd))]
    rows = []
    for c, a, b in zip(clips, lmd, ssim):
        rows.append({"method": "m", "setting": "reconstruction", "clip_id": c, "metric": "lmd", "value_name": "LMD",
                     "value": a, "protocol": "p1"})
        rows.append({"method": "m", "setting": "reconstruction", "clip_id": c, "metric": "ssim", "value_name": "SSIM",
                     "value": b, "protocol": "p2"})
    store.write_per_clip(rows)

    def entry(vals, metric, hib):
        return {"mean": float(np.mean(vals)), "ci_low": None, "ci_high": None, "n_clips": len(vals),
                "higher_is_better": hib, "metric": metric}

    store.write_summary({"run_id": path.name, "protocols": protocols, "results": {"reconstruction": {"m": {
        "LMD": entry(lmd, "lmd", False), "SSIM": entry(ssim, "ssim", True)}}}})
    return path


def test_paired_bootstrap_seeded():
    a, b = np.array([1.0, 2, 3, 4]), np.array([1.5, 2.5, 3.2, 4.1])
    assert paired_bootstrap_ci(a, b) == paired_bootstrap_ci(a, b)
    lo, hi = paired_bootstrap_ci(a, b)
    assert 0 < lo <= np.mean(b - a) <= hi


def test_compare_directions_and_gate(tmp_path):
    a = make_run(tmp_path / "A", lmd=[2.0, 3.0, 2.5, 2.8], ssim=[0.80, 0.82, 0.79, 0.81])
    b = make_run(tmp_path / "B", lmd=[2.2, 3.1, 2.6, 3.0], ssim=[0.85, 0.86, 0.84, 0.85])
    cmp = compare_runs(a, b)
    rows = {r.value_name: r for r in cmp.rows}
    assert rows["LMD"].direction == "worse" and rows["LMD"].delta == pytest.approx(0.15)
    assert rows["SSIM"].direction == "better"
    assert rows["LMD"].ci_low is not None and rows["LMD"].ci_low <= 0.15 <= rows["LMD"].ci_high
    assert rows["LMD"].n_common == 4
    assert cmp.failed and rows["LMD"].fails and not rows["SSIM"].fails
    assert main(["compare", str(a), str(b)]) == 1
    # tolerances: absolute and percent
    tol = tmp_path / "tol.yaml"
    tol.write_text("LMD: 0.2\n")
    assert main(["compare", str(a), str(b), "--tolerances", str(tol)]) == 0
    tol.write_text("LMD: '5%'\n")  # 5% of 2.575 = 0.129 < 0.15
    assert main(["compare", str(a), str(b), "--tolerances", str(tol)]) == 1
    tol.write_text("reconstruction/LMD: '10%'\n")
    assert main(["compare", str(a), str(b), "--tolerances", str(tol)]) == 0
    # same run: all same, exit 0, JSON written
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(a), "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert {r["direction"] for r in d["rows"]} == {"same"} and d["failed"] is False
    assert Tolerance.parse("5%").allowed(2.0) == pytest.approx(0.1)


def test_compare_refuses_different_protocols(tmp_path, capsys):
    a = make_run(tmp_path / "A", lmd=[2.0, 3.0], ssim=[0.8, 0.8])
    proto_b = json.loads(json.dumps(PROTO))
    proto_b["lmd"]["backend"] = "fan"
    b = make_run(tmp_path / "B", lmd=[9.0, 9.0], ssim=[0.8, 0.8], protocols=proto_b)
    cmp = compare_runs(a, b)
    assert [r.value_name for r in cmp.rows] == ["SSIM"]
    assert len(cmp.refused) == 1 and "backend" in cmp.refused[0] and "fan" in cmp.refused[0]
    assert main(["compare", str(a), str(b)]) == 0  # the worse LMD is not comparable, so not a failure
    assert main(["compare", str(a), str(b), "--strict-protocols"]) == 2
    assert "protocols differ" in capsys.readouterr().out


def test_compare_not_a_run(tmp_path):
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 1
