"""The Ray executor on a local 2-CPU Ray instance gives exactly the local executor's results, with the code,
the plugins and the baseline variables reaching the workers through the task's runtime_env (no PYTHONPATH
set up by hand)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import test_runner_support as sup
from harness.runner import RunConfig, run_benchmark

ray = pytest.importorskip("ray")
PROJECT = Path(__file__).resolve().parent.parent


def test_ray_matches_local(standins, data_root, tmp_path, monkeypatch):
    from harness.executors import RayExecutor, ray_task

    split = sup.small_split(tmp_path, data_root, n_frames=20)
    base = dict(split=split, methods=["ground_truth", "static_frame"], root=str(data_root),
                metrics=["t_absdiff", "t_motion", "t_split"], plugins=["tests.test_runner_support"])
    monkeypatch.chdir(PROJECT)
    local = run_benchmark(RunConfig(out=str(tmp_path / "local"), **base), progress=False)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert not ray.is_initialized()
    # the executor starts Ray itself, with the job runtime_env that ships the code and the plugin module
    remote = run_benchmark(RunConfig(out=str(tmp_path / "ray"), executor="ray", **base), progress=False)
    assert not ray.is_initialized()  # ... and stops it
    # what a task sees: a variable set after the driver started, a plugin file, the shipped package
    plug = tmp_path / "cig_probe_plugin.py"
    plug.write_text("VALUE = 7\n")
    ex = RayExecutor(local_cpus=1)
    ex.start(sup_spec(str(plug)))
    try:
        monkeypatch.setenv("DINET_PROBE", "forwarded")
        spec, opts = ray_task(sup_spec(str(plug)), shipped=ex.shipped)

        def probe(plugins):
            import importlib

            import sys

            mods = [importlib.import_module(p) for p in plugins]
            homes = [p for p in sys.path if os.path.isfile(os.path.join(p, "harness", "__init__.py"))]
            return os.environ.get("DINET_PROBE"), mods[0].VALUE, mods[0].__file__, homes

        seen = ray.get(ray.remote(probe).options(**opts).remote(spec.plugins))
    finally:
        ex.close()
    assert remote["failures"] == []
    assert remote["results"] == local["results"]
    assert (tmp_path / "ray" / "per_clip.csv").read_text() == (tmp_path / "local" / "per_clip.csv").read_text()
    assert (tmp_path / "ray" / "videos" / "static_frame" / "cross_audio" / "Obama_clip3.mp4").exists()
    env_value, value, plug_file, homes = seen
    assert env_value == "forwarded" and value == 7
    assert Path(plug_file).name == plug.name and Path(plug_file).parent != tmp_path  # a shipped copy
    # the shipped package is on the workers' path (here the driver's checkout is too: Ray adds the working
    # directory on a local instance; a cluster node has only the shipped copy)
    assert any(not Path(h).is_relative_to(PROJECT) for h in homes), homes


def sup_spec(plugin: str):
    from harness.evaluate import EvalSpec

    return EvalSpec(methods={}, metrics={}, clips={}, root="", plugins=[plugin])
