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
