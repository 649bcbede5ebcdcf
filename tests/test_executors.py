"""The processes executor: the local executor's results from a pool of worker processes, and no worker
outlives a driver killed with -9 (the rerun then finishes the run with the same numbers)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import test_runner_support as sup
from harness.executors import ProcessExecutor
from harness.runner import RunConfig, run_benchmark

PROJECT = Path(__file__).resolve().parent.parent


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc, Linux)."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
    except OSError:  # exited since it was listed
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_processes_match_local(standins, data_root, tmp_path, monkeypatch):
    split = sup.small_split(tmp_path, data_root, n_frames=20)
    base = dict(split=split, methods=["ground_truth", "static_frame", "t_shifted"], root=str(data_root),
                metrics=["t_absdiff", "t_motion", "t_split"], plugins=["tests.test_runner_support"])
    monkeypatch.chdir(PROJECT)
    monkeypatch.setenv("REALTALK_BENCH_NO_CACHE", "1")  # both really generate; other tests' cached frames stay unseen
    local = run_benchmark(RunConfig(out=str(tmp_path / "local"), **base), progress=False)
    pooled = run_benchmark(RunConfig(out=str(tmp_path / "pool"), executor="processes", workers=2, **base),
                           progress=False)
    assert pooled["failures"] == [] and local["failures"] == []
    assert pooled["results"] == local["results"]
    assert (tmp_path / "pool" / "per_clip.csv").read_text() == (tmp_path / "local" / "per_clip.csv").read_text()
    assert pooled["config"]["executor"] == "processes" and pooled["config"]["workers"] == 2


def test_threads_share_the_cores():
    ex = ProcessExecutor(workers=2)
    assert ex.workers == 2 and ex.threads == max(1, (os.cpu_count() or 1) // 2)


def _cmd(split: str, root: Path, out: Path, executor: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", "--split", split, "--root", str(root), "--out", str(out),
            "--methods", "t_shifted", "--method-arg", "t_shifted.delay=1.5", "--metrics", "t_absdiff,t_split",
            "--settings", "reconstruction,cross_audio", "--plugin", "tests.test_runner_support", "--no-progress",
            "--no-videos", "--executor", executor, "--workers", "2"]


def test_kill9_driver_stops_workers_and_resume_matches(data_root, tmp_path):
    split = sup.small_split(tmp_path, data_root, n_frames=20)
    env = dict(os.environ, PYTHONPATH=str(PROJECT), REALTALK_BENCH_NO_CACHE="1")
    subprocess.run(_cmd(split, data_root, tmp_path / "ref", "local"), cwd=PROJECT, env=env, check=True,
                   capture_output=True, timeout=600)
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(split, data_root, out, "processes"), cwd=PROJECT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        workers = [k for k in _children(proc.pid) if "spawn_main" in _cmdline(k)]
        if len(workers) == 2 and (out / "clips").exists() and any((out / "clips").rglob("*.json")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(workers) == 2, "the pool's workers were not seen"
    assert not (out / "summary.json").exists(), "the run finished before it could be interrupted"
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived its killed driver"
    subprocess.run(_cmd(split, data_root, out, "processes"), cwd=PROJECT, env=env, check=True,
                   capture_output=True, timeout=600)
    a = json.loads((tmp_path / "ref" / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert a["results"] == b["results"] and b["failures"] == []


# --- GPUs and Ray task options (CPU machine: the GPU probes are simulated) -----------------------------------
BASELINE_VARS = {"DINET_ROOT": "/r/dinet", "TALKLIP_CHECKPOINT": "/r/t.pth", "WAV2LIP_REPO": "/r/w2l",
                 "PCAVS_ROOT": "/r/pcavs", "STYLETALK_ROOT": "/r/st", "IPLAP_ROOT": "/r/iplap",
                 "REALTALK_BENCH_HOME": "/r/home"}


def _spec(**kw):
    from harness.evaluate import EvalSpec

    base = dict(methods={"wav2lip": {}, "ground_truth": {}}, metrics={}, clips={}, root="/data",
                env={"TORCH_HOME": "/r/torch"})
    return EvalSpec(**{**base, **kw})


def test_ray_runtime_env_ships_code_and_plugins_and_forwards_env(tmp_path, monkeypatch):
    import harness
    from harness.executors import CODE_PACKAGES, FORWARDED_ENV_PREFIXES, ray_runtime_env, ray_task

    for k, v in BASELINE_VARS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    plug = tmp_path / "my_plug.py"
    plug.write_text("X = 1\n")
    monkeypatch.chdir(PROJECT)
    spec = _spec(plugins=[str(plug), "tests.test_runner_support"])
    job, job_plugins = ray_runtime_env(spec)  # what ray.init gets
    mods = [Path(m) for m in job["py_modules"]]
    assert mods[:len(CODE_PACKAGES)] == [PROJECT / n for n in CODE_PACKAGES]
    assert Path(harness.__file__).parent == mods[0] and all((m / "__init__.py").is_file() for m in mods[:4])
    assert plug in mods and PROJECT / "tests" in mods  # the plugin file and the module plugin's package
    assert job_plugins == ["my_plug", "tests.test_runner_support"]  # importable from the shipped copies
    assert "__pycache__" in job["excludes"]
    ev = job["env_vars"]
    assert {**BASELINE_VARS, "TORCH_HOME": "/r/torch"}.items() <= ev.items()
    assert "UNRELATED_SECRET" not in ev and "CUDA_VISIBLE_DEVICES" not in ev  # Ray sets the latter per task
    assert all(k.startswith(FORWARDED_ENV_PREFIXES) for k in ev if k != "TORCH_HOME")
    assert "py_modules" not in ray_runtime_env(spec, ship_code=False)[0]

    remote, opts = ray_task(spec, num_cpus=2.0, shipped=True)  # each clip task
    assert opts["runtime_env"] == {"env_vars": ev} and remote.env == ev  # variables per task too
    assert remote.plugins == job_plugins and opts["num_cpus"] == 2.0 and opts["num_gpus"] == 0.0
    assert remote.root == "/data" and remote.methods == spec.methods and remote.device == "cpu"
    assert ray_task(spec, shipped=False)[0].plugins == [str(plug), "tests.test_runner_support"]  # same paths
    monkeypatch.setenv("REALTALK_BENCH_DATA", str(tmp_path))
    assert ray_task(_spec(root=""))[0].root == str(tmp_path)  # the driver's default data root, resolved


def test_ray_task_requests_gpus():
    from harness.executors import ray_task

    assert ray_task(_spec(device="cuda"))[1]["num_gpus"] == 1.0  # a cuda run asks for one GPU per task
    assert ray_task(_spec(device="cuda:1"), num_gpus=0.5)[1]["num_gpus"] == 0.5
    assert ray_task(_spec(device="cpu"), num_gpus=2)[1]["num_gpus"] == 2
    assert ray_task(_spec(device="cpu"))[1]["num_gpus"] == 0.0


def test_methods_run_on_the_given_gpu():
    from harness.executors import accepts_device, on_given_gpu

    spec = _spec(device="cuda:3", methods={"wav2lip": {"checkpoint": "wav2lip"}, "realtalk": {"device": "cuda:1"},
                                           "ground_truth": {}, "mine": {"_method": "precomputed", "dir": "/o"}})
    placed = on_given_gpu(spec)
    assert placed.device == "cuda"  # index 0 of what this worker sees = the GPU it was given
    assert placed.methods["wav2lip"] == {"checkpoint": "wav2lip", "device": "cuda"}
    assert placed.methods["realtalk"] == {"device": "cuda"}
    assert not accepts_device("ground_truth") and placed.methods["ground_truth"] == {}
    assert placed.methods["mine"] == spec.methods["mine"]  # precomputed videos take no device
    assert spec.methods["realtalk"] == {"device": "cuda:1"}  # the driver's spec is left alone


def test_visible_gpus_follow_the_probe(monkeypatch):
    import torch

    from harness.core.pool import visible_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert visible_gpus() == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the driver's own restriction is kept
    assert visible_gpus() == ["3", "5"]


def _placed_after(barrier) -> tuple:
    """Pool task: wait until both workers hold a task (so two processes answer), then report the placement."""
    from harness.core.pool import worker_placement

    barrier.wait(timeout=300)
    return worker_placement()


def test_process_pool_pins_one_gpu_per_worker(monkeypatch):
    import multiprocessing

    import torch

    from harness.core.pool import process_pool, visible_gpus

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    gpus = visible_gpus()
    with multiprocessing.get_context("spawn").Manager() as mgr:
        barrier = mgr.Barrier(2)
        pool = process_pool(2, 1, gpus)
        try:
            got = [f.result(timeout=600) for f in [pool.submit(_placed_after, barrier) for _ in range(2)]]
        finally:
            pool.shutdown(wait=True)
    assert len({pid for pid, _, _ in got}) == 2
    assert sorted(cvd for _, cvd, _ in got) == ["3", "5"]  # one GPU each, never both
    assert all(cvd == pinned for _, cvd, pinned in got)
    pool = process_pool(1, 1, [])  # no GPUs: nothing pinned, the environment left as it was
    try:
        assert pool.submit(_placed_after, _NoBarrier()).result(timeout=600)[1:] == ("3,5", None)
    finally:
        pool.shutdown(wait=True)


class _NoBarrier:
    def wait(self, timeout=None):
        return 0
