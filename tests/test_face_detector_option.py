"""`run --face-detector dlib|mtcnn|s3fd` (issue 16 item 5): the ground truth's tracking detector. MTCNN tracks the
face of a real clip; the choice changes the face-track cache key, the metric protocols and the run identity
(stored for `rerun`); s3fd without its model file is exit 2 with one line naming the file and where it goes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import test_runner_support as sup
import yaml

from harness.cli import main
from harness.core.cache import Cache
from harness.core.errors import BenchError
from harness.core.faces.clip import clip_faces
from harness.core.faces.detect import box_iou
from harness.core.faces.tracking import tracking_detector, with_tracking
from harness.core.media import read_video
from harness.runner import RunConfig, run_benchmark

CLIP = "styletalk/video/Obama_clip3.mp4"


def test_mtcnn_tracks_a_real_clip_and_keys_its_own_cache_entry(data_root, tmp_path):
    v = read_video(data_root / CLIP, fps=25.0, max_frames=10)
    cache = Cache(tmp_path / "cache")
    dlib = clip_faces(v, tracking_detector("dlib"), cache=cache)
    mtcnn = clip_faces(v, tracking_detector("mtcnn", "cpu"), cache=cache)
    assert mtcnn.detector == "mtcnn" and dlib.detector == "dlib_hog"
    assert mtcnn.track.detected.all() and mtcnn.found.all()  # a face on every frame, landmarks on every crop
    iou = np.diag(box_iou(mtcnn.track.boxes, dlib.track.boxes))
    assert (iou > 0.5).all(), iou  # the same face (the two detectors frame it differently: not equal boxes)
    assert cache.info()["faces"]["entries"] == 2  # the option is in the face-track cache key
    again = clip_faces(v, tracking_detector("mtcnn", "cpu"), cache=cache)
    assert cache.info()["faces"]["entries"] == 2 and np.array_equal(again.track.boxes, mtcnn.track.boxes)
    assert tracking_detector("mtcnn", "cpu").describe()["device"] == "cpu"  # GPU boxes would key apart


def test_protocols_carry_the_detector_except_the_default():
    from metrics.base import get_metric

    p = get_metric("psnr").protocol()
    assert with_tracking(p, "dlib") is p  # runs made before the option keep their fingerprints
    fps = {p.fingerprint(), with_tracking(p, "mtcnn").fingerprint(), with_tracking(p, "s3fd").fingerprint()}
    assert len(fps) == 3 and "mtcnn detector" in with_tracking(p, "mtcnn").crop


def test_missing_s3fd_weights_is_exit_2_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    out = tmp_path / "o"
    rc = main(["run", "--split", "demo", "--methods", "ground_truth", "--out", str(out), "--face-detector", "s3fd",
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    want = tmp_path / "empty/hub/checkpoints/s3fd-619a316812.pth"
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--face-detector s3fd" in err and f"put it at {want}" in err and "weights import" in err, err
    assert not out.exists()  # refused before anything was written


def test_bad_face_detector_in_a_config_file_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"split": "demo", "methods": ["ground_truth"], "out": "x", "face-detector": "hog"}))
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(cfg) in err and "'face-detector': expected one of dlib, mtcnn, s3fd" in err


def test_run_with_mtcnn_records_it_and_resumes_only_with_it(data_root, tmp_path):
    from harness.commands.rerun import stored_config

    split = sup.small_split(tmp_path, data_root, n_frames=10)
    base = dict(split=split, methods=["static_frame"], root=str(data_root), clips=["Obama_clip3"], metrics=["psnr"],
                settings=["reconstruction"], write_videos=False, n_boot=100)
    out = tmp_path / "run"
    s = run_benchmark(RunConfig(out=str(out), face_detector="mtcnn", **base), progress=False)
    assert s["failures"] == [] and s["config"]["face_detector"] == "mtcnn"
    assert "mtcnn detector" in s["protocols"]["psnr"]["crop"]
    assert json.loads((out / "run.json").read_text())["identity"]["face_detector"] == "mtcnn"
    assert stored_config(out).face_detector == "mtcnn"  # what `rerun` replays
    rec = json.loads((out / "clips/static_frame/reconstruction/Obama_clip3.json").read_text())
    with pytest.raises(BenchError, match="differs in: face_detector"):
        run_benchmark(RunConfig(out=str(out), **base), progress=False)  # dlib into the mtcnn folder: refused
    again = run_benchmark(RunConfig(out=str(out), face_detector="mtcnn", **base), progress=False)
    assert json.loads((out / "clips/static_frame/reconstruction/Obama_clip3.json").read_text()) == rec  # resumed
    assert again["results"] == s["results"]
    dl = run_benchmark(RunConfig(out=str(tmp_path / "dlib"), **base), progress=False)
    assert "identity" in json.loads((tmp_path / "dlib/run.json").read_text())
    assert "face_detector" not in json.loads((tmp_path / "dlib/run.json").read_text())["identity"]
    assert "detector" not in dl["protocols"]["psnr"]["crop"]


@pytest.mark.slow  # three small runs, one in a worker process (~45 s on the loaded 2 cores)
def test_workers_track_with_the_chosen_detector(data_root, tmp_path):
    """The processes executor's workers (Evaluator.from_spec) track with the spec's detector: the same records'
    values and protocols as the local run (mtcnn boxes differ from dlib's, so dlib there would change PSNR)."""
    split = sup.small_split(tmp_path, data_root, n_frames=10)
    base = dict(split=split, methods=["copy_reference"], root=str(data_root), clips=["Obama_clip3"],
                metrics=["psnr"], settings=["reconstruction"], write_videos=False, n_boot=100, face_detector="mtcnn")
    local = run_benchmark(RunConfig(out=str(tmp_path / "local"), **base), progress=False)
    pooled = run_benchmark(RunConfig(out=str(tmp_path / "pool"), executor="processes", workers=1, **base),
                           progress=False)
    dlib = run_benchmark(RunConfig(out=str(tmp_path / "dlib"), **{**base, "face_detector": "dlib"}), progress=False)
    assert local["failures"] == pooled["failures"] == dlib["failures"] == []
    assert pooled["results"] == local["results"] and pooled["protocols"] == local["protocols"]
    assert (tmp_path / "pool/per_clip.csv").read_text() == (tmp_path / "local/per_clip.csv").read_text()
    psnr = {k: r["results"]["reconstruction"]["copy_reference"]["PSNR"]["mean"] for k, r in
            (("mtcnn", local), ("dlib", dlib))}
    assert psnr["mtcnn"] != psnr["dlib"], psnr  # the gate can fail: the detector does reach the crops
