"""Sanity of the whole chain on real demo clips with the real metrics: the ground truth scored against
itself is perfect (LMD 0, SSIM 1, PSNR 100 (the cap), FID ~0), a still frame is worse than the ground truth on
M-LMD, SSIM and PSNR on every talking clip, and both methods are scored on the same (common) clip set."""
from __future__ import annotations

import json

import pytest

from harness.runner import RunConfig, run_benchmark
from metrics.base import load_all

CLIPS = ["Obama_clip3", "andrew_clip_2", "feifeili_clip3", "vr_face1", "vr_face4"]  # the demo test clips; all talk


def test_ground_truth_perfect_static_worse(data_root, tmp_path):
    load_all()
    out = tmp_path / "sanity"
    s = run_benchmark(RunConfig(split="demo", out=str(out), methods=["ground_truth", "static_frame"],
                                root=str(data_root), metrics=["lmd", "ssim", "psnr", "fid"], clips=CLIPS,
                                max_frames=40, settings=["reconstruction"], write_videos=False), progress=False)
    assert s["failures"] == [], s["failures"]
    assert not s["unavailable"], s["unavailable"]  # all four run offline
    assert s["clip_set"]["reconstruction"] == {"common": sorted(CLIPS), "excluded": {}}
    gt = s["results"]["reconstruction"]["ground_truth"]
    st = s["results"]["reconstruction"]["static_frame"]
    for vals in (gt, st):
        for v in ("LMD", "M-LMD", "SSIM", "PSNR", "FID"):
            assert vals[v]["n_clips"] == vals[v]["n_common"] == len(CLIPS) and vals[v]["n_missing"] == 0, v
    assert gt["LMD"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert gt["SSIM"]["mean"] == pytest.approx(1.0, abs=1e-9)
    assert gt["PSNR"]["mean"] == 100.0
    assert abs(gt["FID"]["mean"]) < 1e-2 < st["FID"]["mean"]
    for clip in CLIPS:
        rg = json.loads((out / "clips" / "ground_truth" / "reconstruction" / f"{clip}.json").read_text())["values"]
        rs = json.loads((out / "clips" / "static_frame" / "reconstruction" / f"{clip}.json").read_text())["values"]
        assert rs["lmd"]["M-LMD"] > rg["lmd"]["M-LMD"], clip  # lower is better
        assert rs["ssim"]["SSIM"] < rg["ssim"]["SSIM"], clip  # higher is better
        assert rs["psnr"]["PSNR"] < rg["psnr"]["PSNR"], clip
