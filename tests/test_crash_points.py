"""kill -9 at named moments of a run (harness/core/faults.py), then a rerun: summary.json and per_clip.csv equal
an uninterrupted run's byte for byte.

Every run is a real process that dies by SIGKILL at its fault point (no cleanup, no finally). The runs are
forked from one forkserver that imported the project once (a fresh interpreter per run would spend most of
the test importing torch), and each runs `run_benchmark` as `realtalk-bench run` does. Each run works in
its own folder with the same relative --out, so run_id and config.out agree and summary.json is comparable as
bytes; what measures time lives in timings.json (harness/store.py WALL_CLOCK). The ground-truth faces come
from a cache filled by the reference run (face detection is the slow part); generated frames and every
other cache entry start cold in each folder, so the kill at `generate` really loses generated frames.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

import test_runner_support as sup

N_FRAMES = 10
N_TASKS = 4  # 1 method x 2 clips x 2 settings
# (point, records on disk when it is hit, the moment): the process dies at the first hit of the point after
# that many clip records were renamed into place. The hit number comes from the order in which the reference
# run reached the points (RTB_FAULT_LOG), so a change in how often a point is passed (e.g. decoding in other
# chunks) moves the hit, not the moment.
CASES = [
    ("decode", 2, "decoding the second clip"),
    ("generate", 2, "third task's frames generated, not cached"),
    ("metric", 2, "in the metrics of the third task"),
    ("record", 2, "third task's states and video written, its record not"),
    ("record-replace", 3, "last record's temp file written and fsynced, not renamed"),
    ("finalize", 4, "every record on disk, no tables"),
    ("per-clip", 4, "per_clip.csv's temp file written, not renamed"),
    ("timings", 4, "per_clip.csv written, timings.json's temp file not renamed"),
    ("summary", 4, "timings.json written, summary.json's temp file not renamed"),
]


def nth_hit(order: list[str], point: str, after_records: int) -> int:
    """K such that the K-th hit of `point` is its first after the `after_records`-th record was renamed."""
    ends = [i for i, n in enumerate(order) if n == "record-replace"]
    start = ends[after_records - 1] + 1 if after_records else 0
    k = order[:start].count(point) + 1
    assert point in order[start:], f"point {point} is not reached after {after_records} record(s): {order}"
    return k


def _config(split: str, data_root: Path) -> dict:
    return dict(split=split, out="R", methods=["t_shifted"], root=str(data_root),
                settings=["reconstruction", "cross_audio"], metrics=["t_absdiff", "t_split", "ssim"],
                plugins=["tests.test_runner_support"], write_videos=True)


def _child(workdir: str, cache: str, fault: str | None, cfg: dict, log: str | None = None) -> None:
    """One `run` in a forked process (RTB_FAULT set: it dies there by SIGKILL; log: RTB_FAULT_LOG)."""
    os.chdir(workdir)
    os.environ["REALTALK_BENCH_CACHE"] = cache
    for var, value in (("RTB_FAULT", fault), ("RTB_FAULT_LOG", log), ("REALTALK_BENCH_NO_CACHE", None)):
        if value:
            os.environ[var] = value
        else:
            os.environ.pop(var, None)
    from harness.runner import RunConfig, run_benchmark

    run_benchmark(RunConfig(**cfg), progress=False)


@pytest.fixture(scope="module")
def forkserver():
    from metrics import METRIC_MODULES

    ctx = multiprocessing.get_context("forkserver")
    # the run imports every metric module (load_plugins -> load_all: torch, scipy.signal): once, in the server
    ctx.set_forkserver_preload(["harness.runner", "harness.evaluate", "harness.executors", "harness.core.faces.clip",
                                "tests.test_runner_support", *METRIC_MODULES])
    return ctx


def _run(ctx, workdir: Path, cache: Path, fault: str | None, cfg: dict, log: Path | None = None) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    p = ctx.Process(target=_child, args=(str(workdir), str(cache), fault, cfg, str(log) if log else None))
    p.start()
    p.join(600)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail(f"run with RTB_FAULT={fault} did not finish in 600 s")
    return p.exitcode


@pytest.fixture(scope="module")
def reference(forkserver, data_root, tmp_path_factory):
    """An uninterrupted run (cold cache); its faces cache entries seed every crash case."""
    base = tmp_path_factory.mktemp("crash")
    split = sup.small_split(base, data_root, n_frames=N_FRAMES)
    cfg = _config(split, data_root)
    log = base / "points.txt"
    assert _run(forkserver, base / "ref", base / "ref-cache", None, cfg, log=log) == 0
    order = log.read_text().split()
    assert order.count("record-replace") == N_TASKS and order[-4:] == ["finalize", "per-clip", "timings", "summary"]
    return base, cfg, base / "ref" / "R", order


@pytest.mark.parametrize("name,n_records,moment", CASES, ids=[c[0] for c in CASES])
def test_kill9_at_point_then_resume_is_byte_identical(forkserver, reference, name, n_records, moment):
    base, cfg, ref, order = reference
    fault = f"{name}@{nth_hit(order, name, n_records)}"
    work, cache = base / name, base / f"{name}-cache"
    shutil.copytree(base / "ref-cache" / "faces", cache / "faces")  # ground-truth faces warm; all else cold
    code = _run(forkserver, work, cache, fault, cfg)
    out = work / "R"
    assert code == -9, f"RTB_FAULT={fault}: exit {code}, expected death by SIGKILL ({moment})"
    assert not (out / "summary.json").exists(), f"the run finished although killed ({moment})"
    records = sorted(p for p in (out / "clips").rglob("*.json") if not p.name.startswith(".tmp-"))
    temps = sorted((out).rglob(".tmp-*"))
    kept = {p: p.read_bytes() for p in records}
    assert len(records) == n_records, (fault, moment, [str(p.relative_to(out)) for p in records])
    if name in ("record-replace", "per-clip", "timings", "summary"):
        assert temps, f"no temp file left by a kill between write and rename ({moment})"
    assert (out / "run.lock").exists()  # the dead holder's lock file: the rerun takes it over

    assert _run(forkserver, work, cache, None, cfg) == 0
    assert (out / "summary.json").read_bytes() == (ref / "summary.json").read_bytes(), moment
    assert (out / "per_clip.csv").read_bytes() == (ref / "per_clip.csv").read_bytes(), moment
    assert all(p.read_bytes() == b for p, b in kept.items())  # finished clips were kept, not redone
    assert not list(out.rglob(".tmp-*")), "temp files of the killed run were not swept"
    assert not (out / "run.lock").exists()
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"started", "finished", "wall_s", "first_started", "timings"}


def test_byte_gate_sees_a_changed_number(forkserver, reference):
    """The comparison above can fail: the same run with one method argument changed (offset 10 -> 11) writes
    a different summary.json and per_clip.csv."""
    base, cfg, ref, _ = reference
    other = {**cfg, "method_args": {"t_shifted": {"offset": 11}}}
    work = base / "other"
    shutil.copytree(base / "ref-cache" / "faces", base / "other-cache" / "faces")
    assert _run(forkserver, work, base / "other-cache", None, other) == 0
    assert (work / "R" / "per_clip.csv").read_bytes() != (ref / "per_clip.csv").read_bytes()
    a, b = (json.loads((d / "summary.json").read_text())["results"] for d in (ref, work / "R"))
    assert a != b


def test_fault_point_kills_at_the_kth_hit_only(tmp_path):
    """RTB_FAULT=NAME@K: the K-th hit of NAME dies by SIGKILL; other names and earlier hits pass; unset: no-op."""
    import subprocess
    import sys

    code = ("import sys\nfrom harness.core.faults import fault_point\n"
            "for i in range(1, 5):\n    fault_point('other'); fault_point('x'); print(i, flush=True)\n")
    project = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(project), "RTB_FAULT": "x@3"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == -9 and r.stdout.split() == ["1", "2"], (r.returncode, r.stdout, r.stderr)
    env.pop("RTB_FAULT")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["1", "2", "3", "4"]


def test_wall_clock_keys_live_in_timings_json_and_read_back(tmp_path):
    """write_summary splits the summary; load_run / read_summary / reports.load put it back together, and a
    summary.json written before the split (keys inside) still reads as it was."""
    from harness.store import WALL_CLOCK, RunStore, load_run
    from reports.load import load_run as report_load

    store = RunStore(tmp_path / "r")
    summary = {"run_id": "r", "results": {}, "started": "2026-01-01T00:00:00+00:00", "wall_s": 1.5,
               "finished": "2026-01-01T00:00:01+00:00", "first_started": "2026-01-01T00:00:00+00:00",
               "timings": {"m": {"reconstruction": {"generate_ms_per_frame": 3.0}}}}
    store.write_summary(summary)
    on_disk = json.loads(store.summary_path.read_text())
    assert on_disk == {"run_id": "r", "results": {}} and set(summary) > set(on_disk)  # caller's dict left whole
    assert set(json.loads(store.timings_path.read_text())) == set(WALL_CLOCK)
    for got in (store.read_summary(), load_run(store.root)[0], report_load(store.root).summary):
        assert got == summary
    store.timings_path.unlink()
    store.summary_path.write_text(json.dumps(summary))  # an older store: everything in summary.json
    assert load_run(store.root)[0] == summary and report_load(store.root).summary == summary
