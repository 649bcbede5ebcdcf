"""Overlapped metric execution (metrics/overlap.py): the dlib-bound metrics run in a side worker process while
the torch ones run here; the values are the serial path's bit for bit, the worker's network passes are counted
here, and a worker that raises or dies costs only its own metrics.

Real clip: video-retalking/face/2.mp4 (844x844, 25 fps), N frames; the "generated" version is its frames
blurred (a new video with the same face geometry), made at test time.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest

from _process_state import fresh_process
from metrics.compute import aligned_pair, compute_pair
from metrics.overlap import MAX_BYTES, SideWorker, runs_on_side
from metrics.passes import PASSES

CLIP = "video-retalking/face/2.mp4"
N = 6
ALL = ["fid", "csim", "lmd", "ssim", "psnr"]


@pytest.fixture(scope="module")
def pair(data_root: Path):
    import cv2

    from harness.core.media import read_video

    gt = read_video(data_root / CLIP, fps=25.0, max_frames=N)
    gen = dataclasses.replace(gt, frames=np.stack([cv2.GaussianBlur(f, (5, 5), 0) for f in gt.frames]))
    return aligned_pair(gen, gt)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REALTALK_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("REALTALK_BENCH_NO_CACHE", raising=False)
    return tmp_path


def score(pair, names: list[str], side: SideWorker | None = None, gen: np.ndarray | None = None):
    return compute_pair(pair.gen_crops if gen is None else gen, pair.gt_crops, None, names, gen_full=pair.gen_full,
                        face_boxes=pair.face_boxes, side=side)


def same(a: dict, b: dict) -> bool:
    """Equal values, NaN equal to NaN (a metric with no generated face gives NaN distances on both paths)."""
    def eq(x, y):
        return (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)) or x == y
    return a.keys() == b.keys() and all(a[k].keys() == b[k].keys() and all(eq(a[k][v], b[k][v]) for v in a[k])
                                        for k in a)


def test_overlapped_equals_serial(pair, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fid, csim, lmd, ssim, psnr, both cold: csim and lmd in the worker give the serial values, extra and
    protocols exactly, in the serial order; the worker's passes (ground-truth landmarks and identity reference,
    generated crops) are counted in this process's PASSES, and its models loaded once."""
    fresh_process()
    serial = score(pair, ALL)
    assert not serial.errors and not serial.unavailable, (serial.errors, serial.unavailable)
    monkeypatch.setenv("REALTALK_BENCH_CACHE", str(cache / "cache2"))  # cold again: every feature recomputed
    fresh_process()
    with SideWorker(force=True) as side:
        over = score(pair, ALL, side)
        assert side.jobs == 1
    assert over.values == serial.values and list(over.values) == list(serial.values) == ALL
    assert over.extra == serial.extra and over.protocols == serial.protocols and not over.errors
    assert PASSES.times("landmarks", pair.gt_crops) == [1] * N  # computed in the worker, counted here
    assert PASSES.seen("landmarks", pair.gen_crops) == N
    assert PASSES.times("identity", pair.gt_crops[:1]) == [1] and PASSES.seen("identity", pair.gen_crops) == N
    assert PASSES.loads["identity"] == 1 and PASSES.seen("inception", pair.gen_crops) == N


def test_worker_that_dies_is_its_metrics_error(pair, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker is SIGKILLed at its job (RTB_FAULT=side-metric, inherited by each fresh worker): retried once,
    then csim and lmd get a one-line error; psnr (here) is computed, equal to the serial value; no hang."""
    fresh_process()
    serial = score(pair, ["psnr"])
    monkeypatch.setenv("RTB_FAULT", "side-metric")
    with SideWorker(force=True) as side:
        over = score(pair, ["csim", "lmd", "psnr"], side)
    assert set(over.errors) == {"csim", "lmd"}
    for err in over.errors.values():
        assert "worker process died twice" in err and "\n" not in err
    assert over.values == serial.values


def test_metric_raising_in_the_worker(pair, cache: Path) -> None:
    """Noise crops as the generated video: CSIM raises NoFaceError in the worker (the serial text, exactly) and
    LMD gives its no-face values (NaN distances, FaceCov 0) as serially; psnr here."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, pair.gen_crops.shape, dtype=np.uint8)
    names = ["csim", "lmd", "psnr"]
    fresh_process()
    serial = score(pair, names, gen=noise)
    fresh_process()
    with SideWorker(force=True) as side:
        over = score(pair, names, side, gen=noise)
        assert side.jobs == 1
    assert over.errors == serial.errors and set(serial.errors) == {"csim"}
    assert serial.errors["csim"].startswith("NoFaceError:")
    assert same(over.values, serial.values) and over.values["lmd"]["FaceCov"] == 0.0
    assert over.extra == serial.extra and over.protocols == serial.protocols


def test_which_metrics_go_to_the_side() -> None:
    from metrics.base import get_metric

    assert runs_on_side(get_metric("csim", backend="dlib"), {"backend": "dlib"})
    assert runs_on_side(get_metric("lmd"), {})
    assert not runs_on_side(get_metric("lmd", backend="fan"), {"backend": "fan"})  # torch: multi-threaded here
    fn = lambda crops: np.full((len(crops), 68, 2), np.nan)  # noqa: E731 - a custom landmarker cannot travel
    assert not runs_on_side(get_metric("lmd", landmarks_fn=fn), {"landmarks_fn": fn})
    assert not runs_on_side(get_metric("ssim"), {}) and not runs_on_side(get_metric("fid"), {})
    auto = SideWorker(versions=1)
    assert not auto.wanted(N, 1000) and auto.wanted(100, 1000) and not auto.wanted(100, MAX_BYTES + 1)
    assert SideWorker(versions=3).wanted(N, 1000) and SideWorker(force=True).wanted(N, 1000)


def test_metrics_command_overlap_prints_what_serial_prints(data_root: Path, tmp_path: Path, cache: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`metrics --gen A B --overlap on` (version B decoded and scored while the worker finishes A's dlib metrics)
    prints the tables of --overlap off, in --gen order; the ground truth's landmarks are fitted once for both."""
    import cv2

    from harness.cli import main
    from harness.core.media import read_video, write_video

    src = read_video(data_root / CLIP, fps=25.0, max_frames=N)
    gt = write_video(tmp_path / "gt.mp4", src.frames, 25.0)
    gens = [str(write_video(tmp_path / "blur.mp4", np.stack([cv2.GaussianBlur(f, (5, 5), 0) for f in src.frames]),
                            25.0)),
            str(write_video(tmp_path / "bright.mp4", np.clip(src.frames.astype(np.int16) + 12, 0, 255).astype(np.uint8),
                            25.0))]
    base = ["metrics", "--gt", str(gt), "--gen", *gens, "--metrics", "csim,lmd,psnr"]
    os.environ.setdefault("COLUMNS", "200")
    fresh_process()
    assert main(base + ["--overlap", "off"]) == 0
    plain = capsys.readouterr().out
    fresh_process()  # warm now: the worker's ground-truth passes must be zero, its generated ones counted
    assert main(base + ["--overlap", "on"]) == 0
    assert capsys.readouterr().out == plain and plain.index("blur.mp4") < plain.index("bright.mp4")
    assert PASSES.frames["landmarks"] == 2 * N and PASSES.frames["identity"] == 2 * N  # the generated crops
    from harness.core.faces.clip import clip_faces
    from harness.core.media import read_video_or_frames

    gt_crops = clip_faces(read_video_or_frames(str(gt), 25.0, None)).crops
    assert sum(PASSES.times("landmarks", gt_crops)) == 0 and PASSES.times("identity", gt_crops[:1]) == [0]
