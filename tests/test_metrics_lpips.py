"""LPIPS: unavailable with a precise reason when AlexNet is absent; with a randomly initialised AlexNet in
the official file name, our offline wrapper equals lpips.LPIPS() loading that same file; batch independence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _metric_media import styletalk_crops
from harness.core import weights
from metrics.base import ClipInput
from metrics.frame_memo import clear_all
import metrics.lpips_metric as lm


@pytest.fixture
def random_alexnet_home(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")
    clear_all()  # no AlexNet loaded by an earlier test: this one must load the random file
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), hub / weights.REGISTRY["alexnet"].filename)
    yield tmp_path
    clear_all()  # and no later test gets the random one


def test_unavailable_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ok, reason = lm.LPIPS().availability()
    assert not ok
    assert reason == f"alexnet-owt-7be5be79.pth not at {tmp_path / 'hub' / 'checkpoints' / 'alexnet-owt-7be5be79.pth'}"


def test_wrapper_equals_lpips_package(random_alexnet_home, data_root):
    import lpips

    frames = styletalk_crops(data_root, "andrew_clip_1", n=12)
    gen, gt = frames[::-1].copy(), frames
    metric = lm.LPIPS(batch_size=5)
    assert metric.availability() == (True, "")
    assert metric.protocol().settings["weights_state"] == "unverified"
    with pytest.warns(UserWarning, match="UNVERIFIED"):
        res = metric.compute_clip(ClipInput("c", generated=gen, ground_truth=gt))
    ref_model = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()  # loads the hub file itself
    with torch.inference_mode():
        t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # noqa: E731
        ref = ref_model(t(gen), t(gt)).reshape(-1).double().numpy()
    err = np.abs(res.per_frame["LPIPS"] - ref).max()
    print(f"max |wrapper - lpips.LPIPS| = {err:.3g}")
    assert err < 1e-6
    assert res.values["LPIPS"] == pytest.approx(ref.mean(), abs=1e-6)
    same = metric.compute_clip(ClipInput("c", generated=gt, ground_truth=gt))
    assert same.values["LPIPS"] == pytest.approx(0.0, abs=1e-7)


def test_batch_size_independent(random_alexnet_home, data_root):
    frames = styletalk_crops(data_root, "andrew_clip_1", n=14)
    gen, gt = frames[::-1].copy(), frames
    vals = [lm.LPIPS(batch_size=b).compute_clip(ClipInput("c", generated=gen, ground_truth=gt)).per_frame["LPIPS"]
            for b in (1, 7, 32)]
    assert np.abs(vals[0] - vals[1]).max() < 1e-6 and np.abs(vals[1] - vals[2]).max() < 1e-6
