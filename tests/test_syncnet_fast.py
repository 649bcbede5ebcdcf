"""SyncNet's inference form (metrics.syncnet_model.optimise_for_inference: BNs folded into the conv/linear layers
before them, the video CNN in channels_last_3d) against the network exactly as the official file loads.

Random weights in the official format (a torch.save'd state dict by the reference's parameter names) with random
BN statistics and affine parameters, so the fold is exercised (default BNs are near-identities). Real inputs: 5-frame
windows of a real clip's face crops (BGR, 224x224, raw 0..255 as the reference feeds them) and MFCC windows of its
audio. Tolerance derived from the computation: each fp32 path is compared with the float64 evaluation of the plain
network; the fast path's error must stay within 2x the plain path's own fp32 rounding error plus the effect of
rounding the folded weights to fp32 once (computed exactly: float64 evaluation of the folded fp32 weights).
"""
from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

N_WIN = 3


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory):
    from metrics.syncnet_model import SyncNetV2

    torch.manual_seed(0)
    net = SyncNetV2()
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=g))
    p = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save({k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}, p)
    return p


@pytest.fixture(scope="module")
def windows(data_root):
    """([N_WIN,3,5,224,224] BGR 0..255 video windows, [N_WIN,1,13,20] MFCC windows) of a real clip."""
    from harness.core.media import read_audio, read_video
    from metrics.syncnet_lse import mfcc_input

    frames = read_video(data_root / "styletalk/video/Obama_clip1.mp4", fps=25.0, start=50, max_frames=N_WIN + 4).frames
    audio = read_audio(data_root / "styletalk/wav/Obama_clip1.wav", 16000, start_s=2.0, duration_s=(N_WIN + 6) / 25.0)
    bgr = np.stack([cv2.resize(np.ascontiguousarray(f[:, :, ::-1]), (224, 224)) for f in frames])
    video = torch.from_numpy(bgr).permute(3, 0, 1, 2).float()  # [3,T,224,224]
    mfcc = mfcc_input(audio)
    v = torch.stack([video[:, i:i + 5] for i in range(N_WIN)])
    a = torch.stack([mfcc[None, :, 4 * i:4 * i + 20] for i in range(N_WIN)])
    return v, a


def test_folded_channels_last_syncnet_equals_the_plain_network(syncnet_file, windows):
    from metrics.syncnet_model import INFERENCE_IMPL, load_syncnet

    fast, plain = load_syncnet(syncnet_file), load_syncnet(syncnet_file, fast=False)
    assert INFERENCE_IMPL == "folded-cl3d" and fast.channels_last_3d
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    assert n_bn == 0 and sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in plain.modules()) == 14
    v, a = windows
    with torch.inference_mode():
        exact64 = copy.deepcopy(plain).double()
        folded64 = copy.deepcopy(fast).double()
        for name, x in (("video", v), ("audio", a)):
            f = (lambda n, t: n.forward_lip(t)) if name == "video" else (lambda n, t: n.forward_aud(t))
            exact = f(exact64, x.double())
            err_plain = (f(plain, x).double() - exact).abs().max().item()
            err_fast = (f(fast, x).double() - exact).abs().max().item()
            fold_effect = (f(folded64, x.double()) - exact).abs().max().item()
            print(f"{name}: max |plain - f64| {err_plain:.3g}, |fast - f64| {err_fast:.3g}, fold rounding "
                  f"{fold_effect:.3g}, scale {exact.abs().max().item():.3g}")
            assert 0 < err_plain < 1e-4 * exact.abs().max().item()
            assert err_fast <= 2 * err_plain + fold_effect, name


def test_fold_refuses_mismatched_channels():
    from harness.core.torch_fold import fold_batchnorm

    with pytest.raises(ValueError, match="cannot fold"):
        fold_batchnorm(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(4))
