"""Sanity of the whole chain on real demo clips with the real metrics: the ground truth scored against
itself is perfect (LMD 0, SSIM 1, FID ~0), and a still frame is worse on mouth landmarks (M-LMD) than
the ground truth on every talking clip."""
from __future__ import annotations

import json

import pytest

from harness.runner import RunConfig, run_benchmark
from metrics.base import load_all

CLIPS = ["Obama_clip3", "andrew_clip_2", "feifeili_clip3", "vr_face1", "vr_face4"]  # the demo test clips; all talk


def test_ground_truth_perfect_static_worse(data_root, tmp_path):
    load_all()
    wanted = ["lmd", "ssim", "fid"]
    out = tmp_path / "sanity"
    s = run_benchmark(RunConfig(split="demo", out=str(out), methods=["ground_truth", "static_frame"],
                                root=str(data_root), metrics=wanted, clips=CLIPS, max_frames=40,
                                settings=["reconstruction"], write_videos=False), progress=False)
    assert s["failures"] == [], s["failures"]
    gt = s["results"]["reconstruction"]["ground_truth"]
    st = s["results"]["reconstruction"]["static_frame"]
    assert not s["unavailable"], s["unavailable"]  # all three run offline
    assert gt["LMD"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert gt["M-LMD"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert gt["SSIM"]["mean"] == pytest.approx(1.0, abs=1e-9)
    assert abs(gt["FID"]["mean"]) < 1e-2
    assert st["FID"]["mean"] > gt["FID"]["mean"]
    assert st["SSIM"]["mean"] < 1.0
    for clip in CLIPS:
        rg = json.loads((out / "clips" / "ground_truth" / "reconstruction" / f"{clip}.json").read_text())
        rs = json.loads((out / "clips" / "static_frame" / "reconstruction" / f"{clip}.json").read_text())
        assert rs["values"]["lmd"]["M-LMD"] > rg["values"]["lmd"]["M-LMD"], clip
