"""SyncNet LSE-C / LSE-D: our port against the syncnet-python package (packaging of joonson/syncnet_python).

The official syncnet_v2.model is absent here, so a randomly initialised network is saved in the official
format (a torch.save'd state dict with S's parameter names, BatchNorm statistics randomised, no
num_batches_tracked keys as in the 2017 file) and loaded by both sides through their real loading code.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from harness import weights
from harness.errors import MetricUnavailable

SEG_START, SEG_FRAMES = 50, 60  # 2.4 s of Obama_clip1 at 25 fps


def _package_module(name: str) -> ModuleType:
    """Import one module file of the installed syncnet_python package without its __init__, which imports
    the whole pipeline (ffmpeg-python, scenedetect<0.7, S3FD) that evaluate() itself never uses."""
    pkg = weights._package_dir("syncnet_python")
    if pkg is None:
        pytest.skip("syncnet-python (reference package) is not installed")
    mod_name = f"_ref_syncnet_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, pkg / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules[mod_name] = mod
    return mod


@pytest.fixture()
def random_official_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A random SyncNet in the official file format at <REALTALK_BENCH_WEIGHTS>/syncnet/syncnet_v2.model."""
    ref_model = _package_module("SyncNetModel")
    torch.manual_seed(0)
    net = ref_model.S()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "weights" / "syncnet" / "syncnet_v2.model"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setenv("REALTALK_BENCH_WEIGHTS", str(tmp_path / "weights"))
    assert weights.require("syncnet_v2") == path
    return path


def _segment(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    from harness.media import read_audio, read_video

    frames = read_video(data_root / "styletalk/video/Obama_clip1.mp4", fps=25.0, start=SEG_START,
                        max_frames=SEG_FRAMES).frames
    audio = read_audio(data_root / "styletalk/wav/Obama_clip1.wav", 16000, start_s=SEG_START / 25.0,
                       duration_s=SEG_FRAMES / 25.0)
    assert frames.shape == (SEG_FRAMES, 256, 256, 3) and len(audio) == SEG_FRAMES * 640
    return frames, audio


def test_network_names_and_shapes_match_reference() -> None:
    from metrics.syncnet_model import SyncNetV2

    ref = _package_module("SyncNetModel").S().state_dict()
    ours = SyncNetV2().state_dict()
    assert list(ours) == list(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)


def test_parity_with_reference_evaluate(data_root: Path, random_official_weights: Path, tmp_path: Path) -> None:
    """What is compared: the package's SyncNetInstance.evaluate() runs unmodified on a temp dir holding what
    its pipeline gives it (224x224 BGR JPEG frames + 16 kHz int16 audio.wav), with the package's S loaded by
    its loadParameters(); its forward_lip/forward_aud outputs are recorded and fed to its calc_pdist to get
    the per-offset distances it averages. Our metric gets the same pixels (the JPEGs decoded back, as RGB:
    JPEG is lossy, so both sides must see the decoded images) and the same audio as float32, through
    harness.weights.require() and our own loader. Equal: per-window per-offset distances, LSE-C, LSE-D, offset.
    Not covered: the reference's S3FD crop; ours resizes the harness's 256 crop (see metrics/syncnet_lse.py).
    """
    from scipy.io import wavfile

    from metrics.syncnet_lse import SyncNetLSE, audio_to_int16_scale

    frames, audio = _segment(data_root)
    work = tmp_path / "pyavi"
    work.mkdir()
    for i, f in enumerate(frames):
        bgr224 = cv2.resize(np.ascontiguousarray(f[:, :, ::-1]), (224, 224), interpolation=cv2.INTER_LINEAR)
        assert cv2.imwrite(str(work / f"{i + 1:06d}.jpg"), bgr224)
    wavfile.write(work / "audio.wav", 16000, audio_to_int16_scale(audio).astype(np.int16))
    decoded_rgb = np.stack([cv2.imread(str(work / f"{i + 1:06d}.jpg"))[:, :, ::-1] for i in range(len(frames))])

    inst_mod = _package_module("SyncNetInstance")
    ref_net = _package_module("SyncNetModel").S()
    inst = inst_mod.SyncNetInstance(ref_net, device="cpu")
    inst.loadParameters(str(random_official_weights))
    feats: dict[str, list[torch.Tensor]] = {"lip": [], "aud": []}
    lip, aud = ref_net.forward_lip, ref_net.forward_aud
    ref_net.forward_lip = lambda x: feats["lip"].append(lip(x)) or feats["lip"][-1]  # type: ignore[method-assign]
    ref_net.forward_aud = lambda x: feats["aud"].append(aud(x)) or feats["aud"][-1]  # type: ignore[method-assign]
    with torch.no_grad():
        ref_offset, ref_conf, ref_minval = inst.evaluate(SimpleNamespace(tmp_dir=str(work), batch_size=20, vshift=15))
    ref_dists = torch.stack(inst_mod.calc_pdist(torch.cat(feats["lip"]), torch.cat(feats["aud"]), vshift=15)).numpy()

    ours = SyncNetLSE(batch_size=20).evaluate(decoded_rgb, audio)
    assert ours["dists"].shape == ref_dists.shape == (SEG_FRAMES - 5, 31)
    scale = float(np.abs(ref_dists).max())
    err = float(np.abs(ours["dists"] - ref_dists).max())
    print(f"parity: max |d_ours - d_ref| = {err:.3g} (distances up to {scale:.3g}); "
          f"LSE-D {ours['LSE-D']:.6f} vs {ref_minval:.6f}, LSE-C {ours['LSE-C']:.6f} vs {ref_conf:.6f}, "
          f"offset {ours['offset']} vs {ref_offset}")
    assert err <= 1e-5 * max(1.0, scale)
    assert ours["offset"] == ref_offset
    assert ours["LSE-D"] == pytest.approx(ref_minval, rel=1e-5, abs=1e-5)
    assert ours["LSE-C"] == pytest.approx(ref_conf, rel=1e-5, abs=1e-5)


def test_metric_api_and_batch_independence(data_root: Path, random_official_weights: Path) -> None:
    from metrics.base import ClipInput, get_metric

    frames, audio = _segment(data_root)
    frames, audio = frames[:20], audio[: 20 * 640]
    clip = ClipInput("obama1_seg", generated=frames, audio=audio)
    m = get_metric("syncnet", batch_size=20)
    ok, why = m.availability()
    assert ok, why
    a = m.compute_clip(clip)
    b = get_metric("syncnet", batch_size=3).compute_clip(clip)
    assert set(a.values) == {"LSE-C", "LSE-D"} and a.extra["n_windows"] == 15
    assert -15 <= a.extra["offset"] <= 15 and len(a.extra["mean_dist_per_offset"]) == 31
    assert a.values["LSE-C"] >= 0
    for k in a.values:
        assert a.values[k] == pytest.approx(b.values[k], rel=1e-5, abs=1e-5)
    assert a.extra["offset"] == b.extra["offset"]
    p = m.protocol()
    assert p.weights_sha256 == weights.file_sha256(random_official_weights) and p.resolution == 224 and p.fps == 25.0


def test_unavailable_without_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from metrics.base import ClipInput, get_metric

    monkeypatch.setenv("REALTALK_BENCH_WEIGHTS", str(tmp_path / "empty"))
    m = get_metric("syncnet")
    ok, why = m.availability()
    assert not ok and "syncnet_v2.model" in why and str(tmp_path / "empty" / "syncnet") in why
    assert m.protocol().weights_sha256 is None
    with pytest.raises(MetricUnavailable, match="syncnet_v2.model"):
        m.compute_clip(ClipInput("x", generated=np.zeros((10, 256, 256, 3), np.uint8), audio=np.zeros(6400, np.float32)))


def test_wrong_file_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import WeightsMissingError
    from metrics.syncnet_model import load_syncnet

    p = tmp_path / "syncnet_v2.model"
    torch.save({"conv.weight": torch.zeros(3)}, p)
    with pytest.raises(WeightsMissingError, match="not a syncnet_v2 state dict"):
        load_syncnet(p)
