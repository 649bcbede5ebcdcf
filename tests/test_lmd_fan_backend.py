"""`--metric-arg lmd.backend=fan` end to end, with a randomly initialised FAN in the official file format.

The real 2DFAN4 weights cannot be had offline. Random FAN(4) weights are saved exactly as face-alignment 1.5
ships them (a torch.save'd state dict named 2DFAN4-11f355bf06.pth.tar in the torch hub checkpoint folder) and
go through the real loading code (harness.core.faces.landmarks.FANLandmarker). The values are meaningless; what
is tested is the path: the CLI argument reaches the metric, FAN (not dlib) fits the landmarks, the values are
finite, and the protocol names backend=fan, the file's own sha256 and its state ('unverified': the table pins
the official digest, so a random file is accepted only under REALTALK_BENCH_UNVERIFIED_WEIGHTS=1 and says so).
"""
from __future__ import annotations

import json
import math

import pytest

import test_runner_support as sup
from harness.core import weights

N_FRAMES = 8  # FAN(4) on CPU is ~0.7 s a frame (one thread, flip averaging): a few frames prove the path


@pytest.fixture
def torch_one_thread():
    """One intra-op thread on the shared 2-core machine (see tests/test_faces.py: 2 threads were ~10x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def random_fan(tmp_path, monkeypatch):
    """A random FAN(4) state dict at the path harness.core.weights looks for; returns (path, sha256)."""
    import torch
    from face_alignment.models import FAN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")  # random weights: the pinned digest differs
    dst = weights.REGISTRY["fan_2d_pth"].path()
    assert str(dst).startswith(str(tmp_path))
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), dst)
    digest = weights.file_sha256(dst)
    assert digest != weights.REGISTRY["fan_2d_pth"].sha256  # a random file, not the official one
    return dst, digest


@pytest.mark.slow  # ~80 s on the shared 2-core machine: 32 FAN(4) forwards (8 frames x 2 crops x flip)
@pytest.mark.filterwarnings("ignore:UNVERIFIED model file:UserWarning")
def test_run_with_lmd_backend_fan(random_fan, data_root, tmp_path, monkeypatch, torch_one_thread):
    """realtalk-bench run ... --metrics lmd --metric-arg lmd.backend=fan on 8 real frames of one clip."""
    from harness.cli import main
    from harness.core.faces import landmarks as lm_mod

    calls = {"fan": 0}
    real = lm_mod.FANLandmarker.landmarks_batch

    def counted(self, frames, boxes):  # landmarks_on_crops hands FAN all of a clip's faces at once
        calls["fan"] += sum(b is not None for b in boxes)
        return real(self, frames, boxes)

    monkeypatch.setattr(lm_mod.FANLandmarker, "landmarks_batch", counted)
    path, digest = random_fan
    (tmp_path / "split").mkdir()
    split = sup.small_split(tmp_path / "split", data_root, n_frames=N_FRAMES)
    out = tmp_path / "run"
    rc = main(["run", "--split", split, "--root", str(data_root), "--methods", "static_frame",
               "--settings", "reconstruction", "--clips", "Obama_clip3", "--metrics", "lmd",
               "--metric-arg", "lmd.backend=fan", "--out", str(out), "--no-videos", "--no-progress",
               "--executor", "local"])
    s = json.loads((out / "summary.json").read_text())
    assert rc == 0, s.get("failures")
    p = s["protocols"]["lmd"]
    assert p["backend"] == "fan" and p["settings"]["landmark_backend"] == "fan"
    assert p["weights_sha256"] == digest
    assert p["settings"]["weights_state"] == "unverified"
    assert s["metric_config"]["lmd"]["backend"] == "fan"
    vals = s["results"]["reconstruction"]["static_frame"]
    assert {"LMD", "M-LMD", "F-LMD"} <= set(vals)
    print({k: round(vals[k]["mean"], 3) for k in ("LMD", "M-LMD", "F-LMD")}, "sha256", digest[:12], p["settings"]["weights_state"])
    for name in ("LMD", "M-LMD", "F-LMD"):
        assert math.isfinite(vals[name]["mean"]) and vals[name]["n_clips"] == 1, (name, vals[name])
    # FAN fitted every generated and ground-truth frame that has a face (dlib never ran for LMD)
    assert calls["fan"] >= N_FRAMES + 1


def test_fan_availability_and_digest_name_the_loaded_file(tmp_path, monkeypatch):
    """The metric checks and records the file FANLandmarker loads. It used to check only the TorchScript zip
    (fan_2d), so with face-alignment 1.5's file alone LMD was 'unavailable' and the run still exited 0."""
    import torch
    from face_alignment.models import FAN

    from metrics.landmark_source import LandmarkSource

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")
    src = LandmarkSource("fan")
    ok, why = src.availability()
    assert not ok and "2DFAN4-11f355bf06.pth.tar" in why  # names the file face-alignment 1.5 loads
    dst = weights.REGISTRY["fan_2d_pth"].path()
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), dst)
    assert src.availability() == (True, "")
    assert src.weights() == (weights.file_sha256(dst), "unverified")
