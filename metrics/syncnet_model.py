"""The SyncNet v2 network, written so the official `syncnet_v2.model` loads into it by parameter name.

Layer order, shapes and attribute names (netcnnaud / netfcaud / netcnnlip / netfclip, nn.Sequential indices)
are those of joonson/syncnet_python `SyncNetModel.S`: the official file is a `torch.save`d state dict of
that module (SyncNetInstance.loadParameters copies it by name into S().state_dict()), so the names are the
file format. Inputs as the reference feeds them:
  audio: [N, 1, 13, 20]  13 MFCC x 20 steps (0.2 s at 100 Hz), unnormalised python_speech_features values
  video: [N, 3, 5, 224, 224]  BGR channels, 5 frames (3-D conv, not 15 stacked channels), raw 0..255 floats
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from harness.core.errors import WeightsMissingError


def _bn_relu(ch: int, dim: int, inplace: bool = True) -> list[nn.Module]:
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dim](ch)
    return [bn, nn.ReLU(inplace=inplace)]


class SyncNetV2(nn.Module):
    """Two-stream SyncNet: a 2-D CNN over an MFCC window and a 3-D CNN over a 5-frame face window,
    each followed by a 512 -> 512 -> `emb_dim` MLP; sync distance = L2 between the two embeddings."""

    def __init__(self, emb_dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, stride=1, padding=1), *_bn_relu(64, 2),            # 0-2
            nn.MaxPool2d(1, stride=1),                                              # 3
            nn.Conv2d(64, 192, 3, stride=1, padding=1), *_bn_relu(192, 2),          # 4-6
            nn.MaxPool2d(3, stride=(1, 2)),                                         # 7
            nn.Conv2d(192, 384, 3, padding=1), *_bn_relu(384, 2),                   # 8-10
            nn.Conv2d(384, 256, 3, padding=1), *_bn_relu(256, 2),                   # 11-13
            nn.Conv2d(256, 256, 3, padding=1), *_bn_relu(256, 2),                   # 14-16
            nn.MaxPool2d(3, stride=2),                                              # 17
            nn.Conv2d(256, 512, (5, 4), padding=0), *_bn_relu(512, 2, inplace=False),  # 18-20
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512), *_bn_relu(512, 1, inplace=False), nn.Linear(512, emb_dim),
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512), *_bn_relu(512, 1, inplace=False), nn.Linear(512, emb_dim),
        )
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2), padding=0), *_bn_relu(96, 3),        # 0-2
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),                                          # 3
            nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), *_bn_relu(256, 3),  # 4-6
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),                       # 7
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(256, 3),               # 8-10
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(256, 3),               # 11-13
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(256, 3),               # 14-16
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),                                          # 17
            nn.Conv3d(256, 512, (1, 6, 6), padding=0), *_bn_relu(512, 3),                       # 18-20
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """[N,1,13,20] MFCC windows -> [N, emb_dim]."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """[N,3,5,224,224] BGR frame windows -> [N, emb_dim]."""
        if getattr(self, "channels_last_3d", False):
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a syncnet_v2.model file: a plain torch-saved state dict (read with weights_only=True: no pickle code)."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes one clear error
        raise WeightsMissingError(f"cannot read SyncNet weights ({type(e).__name__}: {e})", p) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMissingError("not a SyncNet state dict (expected {name: tensor})", p)
    return state


# How load_syncnet runs the network by default (part of the ground-truth feature cache key in
# metrics/syncnet_lse.py: values differ from the plain network in fp32 rounding): every conv/linear -> BN pair
# folded into one layer (harness.core.torch_fold) and the 3-D video CNN in channels_last_3d (NDHWC, oneDNN's
# layout). Measured on the 2-core CPU, one thread, batch 20, interleaved best of 6: video 78.7 -> 50.0 ms per
# window (folding alone 65.2); audio 9.1 -> 8.9 ms. tests/test_syncnet_fast.py bounds the difference.
INFERENCE_IMPL = "folded-cl3d"


def optimise_for_inference(net: SyncNetV2) -> SyncNetV2:
    """Fold the BNs into the layers before them and put the video CNN in channels_last_3d, in place (eval only).
    The BNs become nn.Identity (indices unchanged); a folded net's state_dict no longer has their keys."""
    from harness.core.torch_fold import fold_sequential

    net.eval()
    for seq in (net.netcnnaud, net.netfcaud, net.netcnnlip, net.netfclip):
        fold_sequential(seq)
    net.netcnnlip.to(memory_format=torch.channels_last_3d)
    net.channels_last_3d = True
    return net


def load_syncnet(path: str | os.PathLike, device: str = "cpu", fast: bool = True) -> SyncNetV2:
    """Build SyncNetV2 and load the official file by parameter name, in eval mode; fast: then
    optimise_for_inference (INFERENCE_IMPL), fast=False: the network exactly as loaded.

    Strict on names and shapes; the only keys the file may lack are BatchNorm `num_batches_tracked`
    counters (newer PyTorch adds them; they do not affect eval). Unknown keys are an error, so a file of a
    different network cannot load silently.
    """
    state = load_state(path)
    net = SyncNetV2()
    own = net.state_dict()
    unknown = sorted(set(state) - set(own))
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    bad_shape = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if unknown or missing or bad_shape:
        raise WeightsMissingError(
            f"not a syncnet_v2 state dict: unknown keys {unknown[:3]}, missing {missing[:3]}, wrong shape {bad_shape[:3]}",
            path,
        )
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    net = net.to(device).eval()
    return optimise_for_inference(net) if fast else net
