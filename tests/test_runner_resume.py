"""Resume after kill -9: rerunning the same command finishes the run without redoing finished clips and
gives exactly the numbers of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import test_runner_support as sup

PROJECT = Path(__file__).resolve().parent.parent


def _cmd(split: str, root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", "--split", split, "--root", str(root), "--out", str(out),
            "--methods", "t_shifted", "--method-arg", "t_shifted.delay=1.0", "--metrics", "t_absdiff,t_split",
            "--settings", "reconstruction,cross_audio", "--plugin", "tests.test_runner_support", "--no-progress",
            "--no-videos"]


def _env(tmp: Path, counter: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RTB_TEST_COUNTER"] = str(counter)
    env["REALTALK_BENCH_NO_CACHE"] = "1"  # every evaluation really generates: the counter counts them
    env["PYTHONPATH"] = str(PROJECT)
    return env


def test_kill9_then_resume(data_root, tmp_path):
    split = sup.small_split(tmp_path, data_root, n_frames=20)
    # uninterrupted reference
    ref_out, ref_counter = tmp_path / "ref", tmp_path / "ref.txt"
    subprocess.run(_cmd(split, data_root, ref_out), cwd=PROJECT, env=_env(tmp_path, ref_counter), check=True,
                   capture_output=True, timeout=600)
    # interrupted run: kill -9 as soon as the first clip record is on disk
    out, counter = tmp_path / "run", tmp_path / "run.txt"
    proc = subprocess.Popen(_cmd(split, data_root, out), cwd=PROJECT, env=_env(tmp_path, counter),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        recs = [p for p in (out / "clips").rglob("*.json")] if (out / "clips").exists() else []
        if recs:
            first = recs[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first is not None, "no clip record appeared before the run ended"
    assert not (out / "summary.json").exists(), "the run finished before it could be interrupted"
    done_before = sorted(p.relative_to(out) for p in (out / "clips").rglob("*.json"))
    mtime, content = first.stat().st_mtime_ns, first.read_bytes()
    # resume
    subprocess.run(_cmd(split, data_root, out), cwd=PROJECT, env=_env(tmp_path, counter), check=True,
                   capture_output=True, timeout=600)
    assert first.stat().st_mtime_ns == mtime and first.read_bytes() == content
    rec = json.loads(content)
    calls = counter.read_text().splitlines()
    assert calls.count(f"{rec['clip_id']}/{rec['setting']}") == 1  # finished clip was not recomputed
    assert len(calls) >= 4 and len(set(calls)) == 4
    assert len(done_before) >= 1
    a = json.loads((ref_out / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert a["results"] == b["results"]
    assert a["failures"] == b["failures"] == []
    assert (ref_out / "per_clip.csv").read_text() == (out / "per_clip.csv").read_text()


def test_locked_folder_refused_and_stale_lock_taken_over(data_root, tmp_path):
    """A second run into a folder another process holds refuses (naming pid and host) and writes nothing;
    once that process is killed (-9: no cleanup), its lock file is stale and the next run takes it over."""
    import socket

    split = sup.small_split(tmp_path, data_root, n_frames=6)
    out = tmp_path / "run"
    env = _env(tmp_path, tmp_path / "counter.txt")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom harness.store import RunLock\nRunLock(sys.argv[1]).acquire()\n"
                               "print('held', flush=True)\ntime.sleep(600)", str(out)],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        r = subprocess.run(_cmd(split, data_root, out), cwd=PROJECT, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        first = r.stderr.strip().splitlines()[0]
        assert first.startswith(f"error: {out}: another run is writing this folder"), first
        assert f"pid {holder.pid} on host {socket.gethostname()}" in first
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing written by the refused run
        assert json.loads((out / "run.lock").read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    assert (out / "run.lock").exists()  # kill -9 left it behind
    r = subprocess.run(_cmd(split, data_root, out), cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"took over a stale run.lock of pid {holder.pid}" in r.stdout
    assert (out / "summary.json").exists() and not (out / "run.lock").exists()  # released at the end
