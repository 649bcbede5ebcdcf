"""The runner on real clips with stand-in metrics: store layout, settings, split-level states, failures,
resume skipping, generated-frame cache."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import test_runner_support as sup
from harness.compare import bootstrap_ci
from harness.errors import BenchError
from harness.runner import RunConfig, parse_method_args, run_benchmark

METRICS = ["t_absdiff", "t_motion", "t_split"]


@pytest.fixture
def split_path(tmp_path_factory, data_root):
    return sup.small_split(tmp_path_factory.mktemp("split"), data_root, n_frames=20)


def _cfg(split_path, data_root, out, methods=("ground_truth", "static_frame"), **kw) -> RunConfig:
    return RunConfig(split=split_path, out=str(out), methods=list(methods), root=str(data_root), metrics=METRICS,
                     **kw)


def test_parse_method_args():
    got = parse_method_args(["realtalk.checkpoint=/x/y.pt", "realtalk.steps=3", "wav2lip.gan=true"])
    assert got == {"realtalk": {"checkpoint": "/x/y.pt", "steps": 3}, "wav2lip": {"gan": True}}
    with pytest.raises(BenchError):
        parse_method_args(["nodot=1"])


def test_bootstrap_is_seeded():
    v = [0.1, 0.5, 0.2, 0.9, 0.3]
    assert bootstrap_ci(v) == bootstrap_ci(v)
    lo, hi = bootstrap_ci(v)
    assert lo <= np.mean(v) <= hi
    assert bootstrap_ci([]) == (None, None)
    assert bootstrap_ci([2.0]) == (2.0, 2.0)


def test_run_store_and_resume(standins, split_path, data_root, tmp_path):
    out = tmp_path / "run"
    s = run_benchmark(_cfg(split_path, data_root, out), progress=False)
    # layout
    for m in ("ground_truth", "static_frame"):
        for st in ("reconstruction", "cross_audio"):
            for c in ("Obama_clip3", "andrew_clip_2"):
                rec = json.loads((out / "clips" / m / st / f"{c}.json").read_text())
                assert rec["status"] == "ok", rec
                assert rec["n_frames"] == 20
                assert (out / "clips" / m / st / f"{c}.states.npz").exists()
                assert (out / "videos" / m / st / f"{c}.mp4").stat().st_size > 0
                assert set(rec["timings"]) >= {"generate_s", "crop_s", "metrics", "total_s"}
    assert (out / "videos" / "LABEL.txt").exists()
    for k in ("run_id", "config", "git_hash", "git_dirty", "versions", "weights", "machine", "gpu", "started",
              "finished", "wall_s", "protocols", "unavailable", "methods", "results", "failures"):
        assert k in s, k
    assert json.loads((out / "summary.json").read_text())["results"] == s["results"]
    rec_ = s["results"]["reconstruction"]
    assert rec_["ground_truth"]["ABSDIFF"]["mean"] == 0.0
    assert rec_["ground_truth"]["MCD"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert rec_["static_frame"]["ABSDIFF"]["mean"] > 0.0
    e = rec_["static_frame"]["ABSDIFF"]
    assert e["n_clips"] == 2 and e["ci_low"] <= e["mean"] <= e["ci_high"] and e["higher_is_better"] is False
    assert e["metric"] == "t_absdiff"
    # cross-audio: no pixel-aligned ground truth -> no ABSDIFF; split-level and audio-free values are there
    ca = s["results"]["cross_audio"]["static_frame"]
    assert "ABSDIFF" not in ca and "MCD" in ca and "MOTION" in ca
    # a still frame moves less than the real video (only the crop track moves)
    assert ca["MOTION"]["mean"] < s["results"]["cross_audio"]["ground_truth"]["MOTION"]["mean"]
    assert s["failures"] == []
    assert set(s["protocols"]) == set(METRICS)
    rows = list(csv.DictReader(open(out / "per_clip.csv")))
    assert rows and set(rows[0]) == {"method", "setting", "clip_id", "metric", "value_name", "value", "protocol"}
    # resume: nothing is redone and the numbers are identical
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "clips").rglob("*.json")}
    s2 = run_benchmark(_cfg(split_path, data_root, out), progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "clips").rglob("*.json")} == mtimes
    assert s2["results"] == s["results"]
    # a different run in the same folder is refused
    with pytest.raises(BenchError):
        run_benchmark(_cfg(split_path, data_root, out, methods=("ground_truth",)), progress=False)


def test_failure_recorded_and_cache_reused(standins, split_path, data_root, tmp_path, monkeypatch):
    counter = tmp_path / "calls.txt"
    monkeypatch.setenv("RTB_TEST_COUNTER", str(counter))
    cfg = _cfg(split_path, data_root, tmp_path / "a", methods=("t_shifted", "t_broken"), settings=["reconstruction"],
               write_videos=False)
    s = run_benchmark(cfg, progress=False)
    assert len(counter.read_text().splitlines()) == 2
    fails = {(f["method"], f["clip_id"]) for f in s["failures"]}
    assert fails == {("t_broken", "Obama_clip3"), ("t_broken", "andrew_clip_2")}
    assert "stand-in failure" in s["failures"][0]["error"]
    assert s["results"]["reconstruction"]["t_shifted"]["ABSDIFF"]["mean"] > 0
    assert s["results"]["reconstruction"]["t_broken"]["ABSDIFF"]["n_clips"] == 0
    # another run folder, same model: the generated frames come from the cache
    cfg_b = _cfg(split_path, data_root, tmp_path / "b", methods=("t_shifted",), settings=["reconstruction"],
                 write_videos=False)
    s_b = run_benchmark(cfg_b, progress=False)
    assert len(counter.read_text().splitlines()) == 2
    rec = json.loads((tmp_path / "b" / "clips" / "t_shifted" / "reconstruction" / "Obama_clip3.json").read_text())
    assert rec["generated_from_cache"] is True
    assert s_b["results"]["reconstruction"]["t_shifted"] == s["results"]["reconstruction"]["t_shifted"]
    # a changed model (new fingerprint) is not served from the cache
    cfg_c = _cfg(split_path, data_root, tmp_path / "c", methods=("t_shifted",), settings=["reconstruction"],
                 write_videos=False, method_args={"t_shifted": {"offset": 11}})
    run_benchmark(cfg_c, progress=False)
    assert len(counter.read_text().splitlines()) == 4


def test_unknown_metric_and_unavailable_method(standins, split_path, data_root, tmp_path):
    with pytest.raises(BenchError):
        run_benchmark(RunConfig(split=split_path, out=str(tmp_path / "x"), methods=["ground_truth"],
                                root=str(data_root), metrics=["no_such_metric"]), progress=False)
    with pytest.raises(BenchError):
        run_benchmark(RunConfig(split=split_path, out=str(tmp_path / "y"), methods=["no_such_method"],
                                root=str(data_root), metrics=METRICS), progress=False)
