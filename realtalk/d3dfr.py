"""Deep3DFaceRecon's coefficient regressor (ResNet-50 -> 257 BFM coefficients), loading the official
checkpoint format {'net_recon': state_dict} (weights key "d3dfr", e.g. epoch_20.pth).

Architecture as the official ReconNetWrapper with use_last_fc=False: a torchvision-layout ResNet-50
without its fc ("backbone.*": conv1, bn1, layer1..4; avgpool -> [B,2048,1,1]) and seven 1x1 conv heads
("final_layers.0..6": id 80, exp 64, tex 80, angle 3, gamma 27, trans xy 2, trans z 1) concatenated to
257. Input: RGB in [0,1], 224x224.

Alignment: the official pipeline aligns each frame to a 224 crop with 5 landmarks (lm3d_std); here the
256 harness crop is resized to 224 (same framing family, not the identical similarity transform), so
with the real checkpoint the pose/translation are in this resized-crop frame, which is also the frame
BFMFaceModel.project scales to 256.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from realtalk.bfm import split_coeffs

HEAD_DIMS = (80, 64, 80, 3, 27, 2, 1)
INPUT_SIZE = 224


class ReconNet(nn.Module):
    """ResNet-50 backbone + 7 conv1x1 heads -> [B,257] (official ReconNetWrapper key layout)."""

    fc_dim = sum(HEAD_DIMS)

    def __init__(self) -> None:
        super().__init__()
        backbone = torchvision.models.resnet50(weights=None)
        del backbone.fc  # official: use_last_fc=False, no fc in the state dict
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.final_layers = nn.ModuleList([nn.Conv2d(2048, d, kernel_size=1, bias=True) for d in HEAD_DIMS])
        for m in self.final_layers:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))
        return b.avgpool(x)  # [B,2048,1,1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.flatten(torch.cat([layer(f) for layer in self.final_layers], 1), 1)


class D3DFRRegressor:
    """Loaded network + preprocessing for 256 crops."""

    def __init__(self, net: ReconNet, device: str = "cpu"):
        self.net = net.eval().to(device)
        self.device = device

    @torch.no_grad()
    def predict(self, crops: np.ndarray, batch: int = 16) -> dict[str, np.ndarray]:
        """crops uint8 [T,H,W,3] RGB -> dict of [T,k] float32 (id, exp, tex, angle, gamma, trans)."""
        outs = []
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(np.ascontiguousarray(crops[i:i + batch])).to(self.device)
            x = x.permute(0, 3, 1, 2).float() / 255.0
            if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
                x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                  antialias=True)
            outs.append(self.net(x).cpu())
        coeffs = torch.cat(outs, 0) if outs else torch.zeros(0, ReconNet.fc_dim)
        return {k: v.numpy().astype(np.float32) for k, v in split_coeffs(coeffs).items()}


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The net_recon state dict of an official checkpoint ('module.' prefixes stripped)."""
    from harness.core.errors import WeightsMissingError

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad weights file
        raise WeightsMissingError(f"cannot load Deep3DFaceRecon checkpoint: {exc}", path) from exc
    state = ckpt.get("net_recon", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise WeightsMissingError("checkpoint has no 'net_recon' state dict", path)
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_regressor(path: str | Path | None = None, device: str = "cpu") -> D3DFRRegressor:
    """Build ReconNet and load the official checkpoint (weights key 'd3dfr' unless path is given)."""
    from harness.core.errors import WeightsMissingError
    from harness.core.weights import require

    path = Path(path) if path is not None else require("d3dfr")
    net = ReconNet()
    state = load_state(path)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.fc")]
    if missing or unexpected:
        raise WeightsMissingError(
            f"checkpoint does not match ReconNet: missing {missing[:3]}, unexpected {unexpected[:3]}", path)
    return D3DFRRegressor(net, device)
