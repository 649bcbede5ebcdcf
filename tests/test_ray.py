"""The Ray executor on a local 2-CPU Ray instance gives exactly the local executor's results."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import test_runner_support as sup
from harness.runner import RunConfig, run_benchmark

ray = pytest.importorskip("ray")
PROJECT = Path(__file__).resolve().parent.parent


def test_ray_matches_local(standins, data_root, tmp_path, monkeypatch):
    split = sup.small_split(tmp_path, data_root, n_frames=20)
    base = dict(split=split, methods=["ground_truth", "static_frame"], root=str(data_root),
                metrics=["t_absdiff", "t_motion", "t_split"], plugins=["tests.test_runner_support"])
    monkeypatch.chdir(PROJECT)
    local = run_benchmark(RunConfig(out=str(tmp_path / "local"), **base), progress=False)
    monkeypatch.setenv("PYTHONPATH", str(PROJECT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT)}})
    try:
        remote = run_benchmark(RunConfig(out=str(tmp_path / "ray"), executor="ray", **base), progress=False)
    finally:
        ray.shutdown()
    assert remote["failures"] == []
    assert remote["results"] == local["results"]
    assert (tmp_path / "ray" / "per_clip.csv").read_text() == (tmp_path / "local" / "per_clip.csv").read_text()
    assert (tmp_path / "ray" / "videos" / "static_frame" / "cross_audio" / "Obama_clip3.mp4").exists()
