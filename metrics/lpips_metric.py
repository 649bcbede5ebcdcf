"""LPIPS (lpips 0.1.4, net='alex', version='0.1') on the 256x256 crops, inputs scaled to [-1,1], per frame
then mean (lower is better).

Offline: lpips.LPIPS() builds torchvision's AlexNet with pretrained weights, which torch.hub fetches when
alexnet-owt-7be5be79.pth is not in $TORCH_HOME/hub/checkpoints. We construct it with pnet_rand=True (no
torchvision weights requested at all; the linear heads still load from the lpips package) and load the
verified hub file (weights key `alexnet`) into lpips' AlexNet slices ourselves: features.N -> net.sliceK.N.
"""
from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np

from harness.core import weights
from metrics.base import ClipInput, ClipResult, Metric, Protocol, register
from metrics.frame_memo import register as register_memo
from metrics.ssim import _pair

_LOCK = threading.Lock()
_NETS: dict[tuple[str, str], Any] = register_memo({})  # frame_memo.clear_all() forgets it


def build_lpips(alexnet_path: str, device: str = "cpu", channels_last: bool = True, compile: bool = False) -> Any:
    """lpips.LPIPS(net='alex', version='0.1') with the AlexNet trunk from `alexnet_path`, never downloading.
    channels_last: the AlexNet convs in NHWC (oneDNN's layout; inputs follow in lpips_frames): same maths, fp32
    rounding differs (tests/test_lpips_fast.py); 58 -> 46 ms per pair on the 2-core CPU (batch 16, one thread,
    interleaved best of 6). Folding does not apply (AlexNet has no BatchNorm); running both images of a pair as
    one batch of 2B was measured too and was not faster (50 ms).
    compile (opt-in, LPIPS(compile=True)): the whole model through torch.compile (inductor, default mode,
    dynamic=False: one compile per batch shape): measured on the shared 2-core CPU, one thread, batch 32,
    interleaved in one process: 798 vs 1080 ms thread CPU per batch (-26%), equal to eager to 1.5e-8, but the
    first call compiles for 40-65 s wall (gcc; inductor's on-disk cache makes later processes cheaper), so a
    short `metrics` call would be slower: off by default (README, bench floor)."""
    import lpips
    import torch

    model = lpips.LPIPS(pretrained=True, net="alex", version="0.1", pnet_rand=True, verbose=False)
    sd = torch.load(alexnet_path, map_location="cpu", weights_only=True)
    owner = {}  # features index -> slice name, from lpips' own slicing
    for sname, seq in model.net.named_children():
        for idx in seq._modules:
            owner[int(idx)] = sname
    trunk = {}
    for k, v in sd.items():
        if k.startswith("features."):
            _, idx, rest = k.split(".", 2)
            trunk[f"{owner[int(idx)]}.{idx}.{rest}"] = v
    model.net.load_state_dict(trunk, strict=True)
    model = model.eval().to(device)
    if channels_last:
        model.net.to(memory_format=torch.channels_last)
    if compile:
        return torch.compile(model, dynamic=False)
    return model


def lpips_frames(model: Any, gen: np.ndarray, gt: np.ndarray, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """Per-frame LPIPS [T] of uint8 RGB frames."""
    import torch

    def to_t(a: np.ndarray) -> torch.Tensor:  # NHWC memory as it comes: a channels_last NCHW view, no copy
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return t.contiguous(memory_format=torch.channels_last)

    out = []
    with torch.inference_mode():
        for i in range(0, len(gen), batch_size):
            d = model(to_t(gen[i:i + batch_size]), to_t(gt[i:i + batch_size]))
            out.append(d.reshape(-1).double().cpu().numpy())
    return np.concatenate(out)


@register
class LPIPS(Metric):
    """Learned perceptual distance of generated vs ground-truth crops."""

    name: ClassVar[str] = "lpips"
    outputs: ClassVar[tuple[str, ...]] = ("LPIPS",)
    higher_is_better: ClassVar[dict[str, bool]] = {"LPIPS": False}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def __init__(self, batch_size: int = 32, device: str = "cpu", compile: bool | str = False) -> None:
        super().__init__(batch_size, device)
        self.compile = compile.strip().lower() in ("1", "true", "yes") if isinstance(compile, str) else bool(compile)

    def config(self) -> dict[str, Any]:
        return {"compile": True} if self.compile else {}  # the default leaves existing run records unchanged

    def availability(self) -> tuple[bool, str]:
        state, path, _ = weights.check("alexnet")
        if state in ("found", "unverified"):
            return True, ""
        w = weights.REGISTRY["alexnet"]
        return False, f"{w.filename} not at {path}" + ("" if state == "missing" else f" ({state})")

    def protocol(self) -> Protocol:
        _, _, digest = weights.check("alexnet")
        return Protocol(metric="LPIPS", backend="lpips-0.1.4", weights_sha256=digest,
                        crop="gt crop track, 256x256 RGB uint8", resolution=256, fps=25.0,
                        settings={"net": "alex", "version": "0.1", "input": "x/127.5-1 in [-1,1]",
                                  "reduce": "per frame, then mean", "weights_state": weights.state_label("alexnet"),
                                  **({"impl": "torch.compile (inductor, default mode)"} if self.compile else {})})

    def _model(self) -> Any:
        path = weights.require("alexnet")
        key = (str(path), self.device) + (("compiled",) if self.compile else ())
        with _LOCK:
            if key not in _NETS:
                _NETS[key] = build_lpips(str(path), self.device, compile=self.compile)
            return _NETS[key]

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        gen, gt = _pair(clip)
        per = lpips_frames(self._model(), gen, gt, self.batch_size, self.device)
        return ClipResult(values={"LPIPS": float(per.mean())}, per_frame={"LPIPS": per}, extra={"frames": len(per)})
