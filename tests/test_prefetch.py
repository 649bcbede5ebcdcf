"""The GPU path on a CPU: the bounded ground-truth prefetch queue (harness/prefetch.py) changes no number and no
record, stays within its bound, hands a failure in its thread to the clip as usual; `--device` that names a
GPU this machine lacks exits 2 with one line; warnings are recorded per thread (harness/core/thread_warnings.py)."""
from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path

import pytest
import yaml

import test_runner_support as sup
from harness.cli import main
from harness.prefetch import Prefetcher
from harness.runner import RunConfig, run_benchmark

CLIPS = ("Obama_clip3", "andrew_clip_2", "feifeili_clip1")
METRICS = ["psnr", "ssim", "lmd", "t_split"]  # real pixel / landmark metrics + a split-level stand-in


def _split(tmp: Path, n_frames: int, broken: Path | None = None) -> str:
    """3 real styletalk clips of n_frames each (cross-audio paired in a ring); `broken` replaces the 2nd video."""
    clips = []
    for i, c in enumerate(CLIPS):
        nxt = CLIPS[(i + 1) % len(CLIPS)]
        video = str(broken) if broken is not None and i == 1 else f"styletalk/video/{c}.mp4"
        clips.append({"clip_id": c, "identity": c.split("_")[0].lower(), "role": "test", "video": video,
                      "audio": f"styletalk/wav/{c}.wav", "frame_range": [0, n_frames],
                      "drive_audio": f"styletalk/wav/{nxt}.wav"})
    p = tmp / "prefetch-test.yaml"
    p.write_text(yaml.safe_dump({"name": "prefetch-test", "description": "3 short styletalk clips",
                                 "selection_rule": "fixed", "clips": clips}))
    return str(p)


@pytest.fixture
def spy(monkeypatch):
    """Every Prefetcher a run starts (to read its instrumentation afterwards)."""
    made: list[Prefetcher] = []
    enter = Prefetcher.__enter__

    def spying(self):
        made.append(self)
        return enter(self)

    monkeypatch.setattr(Prefetcher, "__enter__", spying)
    return made


def _run_in(folder: Path, split: str, root: Path, monkeypatch, prefetch: int | None, **kw) -> dict:
    """A run into <folder>/run (relative out, so run_id and config.out are the same for every folder)."""
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    cfg = RunConfig(split=split, out="run", methods=["ground_truth", "static_frame", "t_shifted"], root=str(root),
                    metrics=METRICS, n_boot=50, **kw)
    return run_benchmark(cfg, progress=False, prefetch=prefetch)


def test_prefetch_gives_the_same_files(standins, data_root, tmp_path, monkeypatch, spy):
    """--prefetch 1 and 2: summary.json and per_clip.csv byte-identical to --prefetch 0 (every clip json's values too)."""
    monkeypatch.setenv("REALTALK_BENCH_NO_CACHE", "1")  # each run does its own decode + face tracking
    split = _split(tmp_path, n_frames=12)
    out = {}
    for n in (0, 1, 2):
        s = _run_in(tmp_path / f"p{n}", split, data_root, monkeypatch, n)
        assert s["failures"] == [], s["failures"]
        out[n] = tmp_path / f"p{n}" / "run"
    assert len(spy) == 2 and [p.depth for p in spy] == [1, 2]
    for pf in spy:  # the thread prepared every clip, in order, never more than depth ahead
        assert pf.prepared == list(CLIPS)
        assert 1 <= pf.max_held <= pf.depth
    ref_summary = (out[0] / "summary.json").read_bytes()
    ref_csv = (out[0] / "per_clip.csv").read_bytes()
    assert b"psnr" in ref_csv and b"LMD" in ref_csv
    for n in (1, 2):
        assert (out[n] / "summary.json").read_bytes() == ref_summary, f"summary.json differs with --prefetch {n}"
        assert (out[n] / "per_clip.csv").read_bytes() == ref_csv, f"per_clip.csv differs with --prefetch {n}"
        for rec in sorted((out[0] / "clips").rglob("*.json")):
            a, b = json.loads(rec.read_text()), json.loads((out[n] / rec.relative_to(out[0])).read_text())
            for k in ("status", "error", "values", "extra", "protocols", "input_warnings", "n_frames"):
                assert a.get(k) == b.get(k), (rec.name, k)
    summary = json.loads(ref_summary)
    assert summary["devices"]["device"] == "cpu" and set(summary["devices"]["metrics"]) == set(METRICS)


def test_a_decode_failure_in_the_thread_fails_the_clip_as_without(standins, data_root, tmp_path, monkeypatch, spy):
    """The 2nd clip's video is truncated: its preparation fails in the prefetch thread; the clip is recorded
    failed with the message of a run without prefetch, and the other clips finish."""
    monkeypatch.setenv("REALTALK_BENCH_NO_CACHE", "1")
    real = (data_root / "styletalk/video/andrew_clip_2.mp4").read_bytes()
    broken = tmp_path / "media" / "andrew_clip_2_truncated.mp4"
    broken.parent.mkdir()
    broken.write_bytes(real[:2000])  # the header and a sliver: no decodable frame
    split = _split(tmp_path, n_frames=8, broken=broken)
    plain = _run_in(tmp_path / "p0", split, data_root, monkeypatch, 0, settings=["reconstruction"])
    pre = _run_in(tmp_path / "p1", split, data_root, monkeypatch, 1, settings=["reconstruction"])
    assert plain["failures"] and plain["failures"] == pre["failures"]
    assert {f["clip_id"] for f in pre["failures"]} == {"andrew_clip_2"}
    assert all(f["error"] for f in pre["failures"])
    failed_in_thread = spy[0].prepare.failed
    assert [(c, s) for c, s, _ in failed_in_thread] == [("andrew_clip_2", "reconstruction")]
    assert failed_in_thread[0][2] == pre["failures"][0]["error"]  # the thread met the very error recorded
    assert (tmp_path / "p0/run/per_clip.csv").read_bytes() == (tmp_path / "p1/run/per_clip.csv").read_bytes()


def test_queue_holds_at_most_depth_items():
    """The thread runs ahead of a slow consumer up to `depth` prepared items, never more; items come in order;
    what preparation raised is raised by take (the same object)."""
    boom = ValueError("clip 3: cannot decode")
    seen_held: list[int] = []

    for depth in (1, 2, 3):
        box: list[Prefetcher] = []

        def prepare(k: int) -> int:
            seen_held.append(box[0].held)
            if k == 3:
                raise boom
            return k * 10

        pf = Prefetcher(range(7), prepare, depth=depth)
        box.append(pf)
        with pf:
            got = []
            for k in range(7):
                assert pf.wait_full(60.0)  # the consumer is "slow": the queue fills as far as the bound allows
                assert pf.held <= depth
                try:
                    got.append(pf.take(k))
                except ValueError as exc:
                    assert exc is boom
                    got.append(None)
        assert got == [0, 10, 20, None, 40, 50, 60]
        assert pf.max_held == depth  # reached, and (held <= depth above, seen_held below) never passed
        assert pf.prepared == list(range(7))
    assert max(seen_held) <= 3


def test_take_out_of_order_and_close_early():
    """A key the thread will not reach is prepared by the caller; closing mid-way stops the thread."""
    calls: list[tuple[str, int]] = []

    def prepare(k: int) -> int:
        calls.append((threading.current_thread().name, k))
        return -k

    with Prefetcher([1, 2, 3, 4], prepare, depth=1) as pf:
        assert pf.take(1) == -1
        assert pf.take(3) == -3  # 2 skipped: dropped, its slot freed
        assert pf.take(99) == -99  # not a prefetch key: prepared here
        assert ("MainThread", 99) in calls
    pf2 = Prefetcher(range(100), lambda k: time.sleep(0.01) or k, depth=2)
    with pf2:
        assert pf2.take(0) == 0
    assert not pf2._thread.is_alive() and len(pf2.prepared) < 100


def _one_line_exit_2(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --device") and "Traceback" not in err
    return err


def test_device_cuda_without_a_gpu_exits_2(data_root, tmp_path, capsys, monkeypatch):
    import harness.devices as devices

    monkeypatch.setattr(devices, "cuda_count", lambda: 0)  # what this CPU machine has (also on a GPU host)
    split = sup.small_split(tmp_path, data_root, n_frames=6)
    run = ["run", "--split", split, "--methods", "ground_truth", "--metrics", "psnr", "--out", str(tmp_path / "r"),
           "--no-progress"]
    assert "no CUDA device" in _one_line_exit_2(capsys, run + ["--device", "cuda"])
    assert not (tmp_path / "r").exists()  # refused before anything was written
    clip = str(data_root / "styletalk/video/Obama_clip3.mp4")
    assert "no CUDA device" in _one_line_exit_2(capsys, ["metrics", "--gen", clip, "--gt", clip, "--device", "cuda:0"])
    assert "expected cpu" in _one_line_exit_2(capsys, run + ["--device", "gpu"])
    monkeypatch.setattr(devices, "cuda_count", lambda: 1)  # a simulated one-GPU machine
    assert "only 1 CUDA device" in _one_line_exit_2(capsys, run + ["--device", "cuda:1"])
    assert devices.check_device("auto") == "cuda" and devices.check_device("cuda:0") == "cuda:0"
    monkeypatch.setattr(devices, "cuda_count", lambda: 0)
    assert devices.check_device("auto") == "cpu"
    assert main(run + ["--prefetch", "-1"]) == 1  # the flag reaches the run (a bad count: one line, exit 1)
    assert "--prefetch -1: expected a clip count" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_what_runs_where_on_a_gpu():
    from harness.devices import metric_device

    assert metric_device("fid", {"backend": "fid-helper"}, "cuda") == "cuda"
    assert metric_device("ssim", {"backend": "torch"}, "cuda:1") == "cuda:1"
    assert metric_device("ssim", {"backend": "skimage"}, "cuda").startswith("cpu")
    assert metric_device("lmd", {"backend": "dlib"}, "cuda").startswith("cpu")
    assert metric_device("lmd", {"backend": "fan"}, "cuda").startswith("cuda")
    assert metric_device("csim", {"backend": "dlib"}, "cuda").startswith("cpu")
    assert all(metric_device(n, {}, "cpu") == "cpu" for n in ("fid", "lpips", "syncnet"))


def test_landmark_source_puts_fan_on_the_device():
    """FAN gets --device (memo / cache keys carry the device type off the CPU); dlib stays on the CPU."""
    from metrics.landmark_source import LandmarkSource
    from metrics.lmd import LMD

    assert LandmarkSource("fan", device="cuda:0").device_type == "cuda"
    assert LandmarkSource("dlib", device="cuda").device_type == "cpu"
    assert LMD(device="cuda", backend="fan")._source.device == "cuda"
    from metrics.av_sync import AVSync

    assert AVSync(device="cuda", backend="fan")._source.device == "cuda"


def test_warnings_are_recorded_per_thread():
    """Two threads recording at once each get their own warnings; the main thread's are never swallowed, and
    the process's warning state is intact afterwards (catch_warnings in threads leaves a dead hook)."""
    from harness.core.thread_warnings import recorded_warnings

    go = threading.Barrier(2)
    logs: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        with recorded_warnings(UserWarning) as log:
            go.wait()
            for i in range(50):
                warnings.warn(f"{name} {i}", stacklevel=1)
                time.sleep(0.0005)
        logs[name] = [str(w.message) for w in log]

    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        t = threading.Thread(target=worker, args=("thread",))
        t.start()
        with recorded_warnings(UserWarning) as mine:
            go.wait()
            for i in range(50):
                warnings.warn(f"main {i}", stacklevel=1)
                time.sleep(0.0005)
        t.join()
        warnings.warn("after", stacklevel=1)
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
    assert logs["thread"] == [f"thread {i}" for i in range(50)]
    assert [str(w.message) for w in mine] == [f"main {i}" for i in range(50)]
    assert [str(w.message) for w in outside] == ["after", "a deprecation"]  # outside every recording: shown


def test_metrics_command_versions_prefetched(data_root, capsys):
    """`metrics --gen A B` with --prefetch 1 prints what --prefetch 0 prints."""
    gt = str(data_root / "styletalk/video/Obama_clip3.mp4")
    other = str(data_root / "styletalk/video/Obama_clip1.mp4")
    base = ["metrics", "--gen", gt, other, "--gt", gt, "--metrics", "psnr,ssim", "--max-frames", "8"]
    os.environ.setdefault("COLUMNS", "200")
    assert main(base + ["--prefetch", "0"]) == 0
    plain = capsys.readouterr().out
    assert main(base + ["--prefetch", "1"]) == 0
    assert capsys.readouterr().out == plain and "PSNR" in plain
