"""The runner on real clips with stand-in metrics: store layout, settings, split-level states, failures,
resume skipping, generated-frame cache."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import test_runner_support as sup
from harness.compare import bootstrap_ci
from harness.core.errors import BenchError
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
    assert s["clip_set"]["reconstruction"] == {"common": ["Obama_clip3", "andrew_clip_2"], "excluded": {}}
    assert e["n_clips"] == e["n_common"] == 2 and e["n_missing"] == 0 and e["ci_low"] <= e["mean"] <= e["ci_high"] and e["higher_is_better"] is False
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
    # one clip set per comparison: t_broken finished no clip, so no method has a value on a clip t_broken lacks
    assert s["clip_set"]["reconstruction"] == {"common": [], "excluded": {"Obama_clip3": ["t_broken"],
                                                                           "andrew_clip_2": ["t_broken"]}}
    e = s["results"]["reconstruction"]["t_shifted"]["ABSDIFF"]
    assert e["mean"] is None and e["n_clips"] == 0 and e["n_common"] == 0
    assert s["results"]["reconstruction"]["t_broken"]["ABSDIFF"]["n_clips"] == 0
    per_clip = [float(r["value"]) for r in csv.DictReader(open(tmp_path / "a" / "per_clip.csv"))
                if r["method"] == "t_shifted" and r["value_name"] == "ABSDIFF"]
    assert len(per_clip) == 2 and min(per_clip) > 0  # the finished clips' values are still stored
    # the CLI exits 1 on failures (the work is kept: a rerun resumes, nothing is redone), 0 when allowed
    from harness.cli import main

    argv = ["run", "--split", split_path, "--root", str(data_root), "--out", str(tmp_path / "a"), "--methods",
            "t_shifted,t_broken", "--settings", "reconstruction", "--metrics", ",".join(METRICS), "--no-videos",
            "--no-progress"]
    assert main(argv) == 1 and main(argv + ["--allow-failures"]) == 0
    assert len(counter.read_text().splitlines()) == 2
    # another run folder, same model: the generated frames come from the cache
    cfg_b = _cfg(split_path, data_root, tmp_path / "b", methods=("t_shifted",), settings=["reconstruction"],
                 write_videos=False)
    s_b = run_benchmark(cfg_b, progress=False)
    assert len(counter.read_text().splitlines()) == 2
    rec = json.loads((tmp_path / "b" / "clips" / "t_shifted" / "reconstruction" / "Obama_clip3.json").read_text())
    assert rec["generated_from_cache"] is True
    e_b = s_b["results"]["reconstruction"]["t_shifted"]["ABSDIFF"]
    assert e_b["n_clips"] == e_b["n_common"] == 2 and e_b["mean"] == pytest.approx(np.mean(per_clip), rel=1e-12)
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


def test_parse_metric_args_and_stray_metric(standins, split_path, data_root, tmp_path):
    got = parse_method_args(["lmd.backend=fan", "lmd.protocol=eat"], "--metric-arg", "METRIC")
    assert got == {"lmd": {"backend": "fan", "protocol": "eat"}}
    with pytest.raises(BenchError, match="--metric-arg 'lmd': expected METRIC.KEY=VALUE"):
        parse_method_args(["lmd"], "--metric-arg", "METRIC")
    with pytest.raises(BenchError, match="not among the run's metrics"):
        run_benchmark(_cfg(split_path, data_root, tmp_path / "x", metric_args={"lmd": {"backend": "fan"}}),
                      progress=False)
    with pytest.raises(BenchError, match="t_absdiff"):  # a kwarg the metric does not take
        run_benchmark(_cfg(split_path, data_root, tmp_path / "y", metric_args={"t_absdiff": {"nope": 1}}),
                      progress=False)


def test_metric_kwargs_reach_workers(monkeypatch):
    """EvalSpec carries the resolved kwargs; a worker's Evaluator.from_spec builds the identical metric."""
    from harness.evaluate import EvalSpec, Evaluator
    from metrics.base import REGISTRY

    monkeypatch.setitem(REGISTRY, "t_err", sup.SynthErr)
    spec = EvalSpec(methods={}, metrics={"t_err": {"variant": "v2"}}, clips={}, root="")
    m = Evaluator.from_spec(spec).metrics["t_err"]
    assert m.variant == "v2" and m.protocol().settings == {"variant": "v2"}
    assert EvalSpec(methods={}, metrics=["t_err"], clips={}, root="").metrics == {"t_err": {}}  # names only
    assert spec.token() != EvalSpec(methods={}, metrics={"t_err": {"variant": "v1"}}, clips={}, root="").token()


def test_finalize_one_clip_set(tmp_path, capsys):
    """Values on the clips every method finished; FID-like pooling over those only; NaN counted and listed."""
    vals = {"a": {"c0": 1.0, "c1": 2.0, "c2": 4.0, "c3": 8.0},
            "b": {"c0": 3.0, "c1": float("nan"), "c2": sup.FAIL, "c3": 5.0}}
    s = sup.write_synthetic_run(tmp_path / "r", vals, variant="v2", frames=10)
    assert s["clip_set"]["reconstruction"] == {"common": ["c0", "c1", "c3"], "excluded": {"c2": ["b"]}}
    a, b = s["results"]["reconstruction"]["a"], s["results"]["reconstruction"]["b"]
    assert a["ERR"]["mean"] == pytest.approx((1 + 2 + 8) / 3, rel=1e-15)  # c2 left out for every method
    assert a["POOL"]["mean"] == pytest.approx((1 + 2 + 8) / 3, rel=1e-15) and a["POOL"]["n_clips"] == 3
    assert (a["ERR"]["n_clips"], a["ERR"]["n_common"], a["ERR"]["n_missing"]) == (3, 3, 0)
    assert (b["ERR"]["n_clips"], b["ERR"]["n_common"], b["ERR"]["n_missing"]) == (2, 3, 1)
    assert b["ERR"]["missing_clips"] == ["c1"] and b["ERR"]["mean"] == pytest.approx(4.0, rel=1e-15)
    assert b["POOL"]["missing_clips"] == ["c1"] and b["POOL"]["mean"] == pytest.approx(4.0, rel=1e-15)
    assert a["ERR"]["frames_used"] == 3 * 8 and a["ERR"]["frames_total"] == 3 * 10  # coverage over used clips
    assert b["ERR"]["frames_used"] == 2 * 8
    assert a["OFFSET"]["higher_is_better"] is None and a["ERR"]["higher_is_better"] is False
    assert s["metric_config"] == {"t_err": {"variant": "v2"}, "t_offset": {}, "t_pool": {}}
    assert s["protocols"]["t_err"]["settings"] == {"variant": "v2"}
    from rich.console import Console

    from harness.runner import render_summary

    render_summary(s, Console(width=200, force_terminal=False))
    out = capsys.readouterr().out
    assert "OFFSET " in out and "OFFSET ↑" not in out and "OFFSET ↓" not in out and "ERR ↓" in out
    import re

    assert re.search(r"│ a +│ +3/3 │", out) and re.search(r"│ b +│ +2-3/3 │ +4 \[3, 5\] \(1 missing\)", out)
    assert "c2: b" in out
