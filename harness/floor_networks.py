"""The networks of the floor table (harness/floor.py), each at the batch the harness runs it with, on fixed
random inputs of the real shapes (a CNN's time does not depend on pixel values).

Weights: the official file when it is installed; otherwise a randomly initialised network saved in the
official format into a temporary folder and read back through the harness's own loader (FLOPs and time do
not depend on weight values). dlib's face-recognition ResNet is C++: it is timed through dlib, and its FLOPs
are counted by torch.utils.flop_counter on `DlibResNetMirror`, a torch copy of its published architecture.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.core import weights
from harness.core.flops import count_bytes
from harness.core.latency import count_flops


@dataclass
class Probe:
    """A ready-to-time network call: `call()` processes `frames_per_call` frames and costs `flops_per_call`."""

    name: str
    batch: int
    frames_per_call: int
    call: Callable[[], Any]
    flops_per_call: float
    note: str = ""
    threads: int | None = None  # None: torch's default (all cores); 1 for single-threaded libraries
    torch_network: bool = True  # held to harness.floor.TARGET_RATIO; False: dlib (C++, no BLAS), alternative impls
    bytes_per_call: float | None = None  # eager memory traffic (harness.core.flops.count_bytes); None: not counted


def _weights_or_random(key: str, tmp: Path, make_state: Callable[[], dict]) -> tuple[Path, str]:
    """The installed file of `key`, or a random state dict torch.saved under the official file name."""
    if weights.available(key):
        return weights.require(key), "official weights"
    path = tmp / weights.REGISTRY[key].filename
    torch.manual_seed(0)
    torch.save(make_state(), path)
    return path, "random init, official format"


def _counted(name: str, batch: int, frames: int, fn: Callable[[], Any], note: str, threads: int | None = None,
             flops: float | None = None, nbytes: float | None = None) -> Probe:
    def call() -> Any:
        with torch.inference_mode():
            return fn()

    counted = flops if flops is not None else count_flops(call)
    if not counted:
        raise RuntimeError(f"{name}: torch.utils.flop_counter counted no FLOPs")
    moved = nbytes if nbytes is not None else count_bytes(call)
    return Probe(name, batch, frames, call, float(counted), note, threads, bytes_per_call=moved)


def batch_scaled_bytes(fn: Callable[[Any], Any], x: Any, batch: int) -> float | None:
    """Bytes moved by fn(x[:batch]) from counts at batch 1 and 2 (cheap for a big network): per-sample
    activation traffic (b2 - b1) times batch, plus what does not grow with the batch (weights: 2 b1 - b2)."""
    with torch.inference_mode():
        b1, b2 = count_bytes(lambda: fn(x[:1])), count_bytes(lambda: fn(x[:2]))
    if not b1 or not b2:
        return None
    return float((b2 - b1) * batch + (2 * b1 - b2))


# ---------------------------------------------------------------- Inception (FID)
def inception_probe(batch: int = 32, impl: str | None = None) -> Probe:
    """metrics.fid's network at FID's default batch (32), run as `impl` (metrics.fid.IMPLS; None = what FID
    runs). FLOPs are counted on one image (they scale with the batch) to keep the count cheap."""
    from metrics.fid import DEFAULT_IMPL, fid_backend, load_network

    backend = fid_backend()
    impl = impl or DEFAULT_IMPL[backend]
    net = load_network(backend, impl=impl)
    x = torch.rand(batch, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        flops = (count_flops(lambda: net(x[:1])) or 0) * batch
    used = impl == DEFAULT_IMPL[backend]
    nbytes = batch_scaled_bytes(net, x, batch) if impl != "torchscript" else None  # a graph hides its ops
    probe = _counted(f"inception {impl}", batch, batch, lambda: net(x),
                     f"{backend} weights" + (" (FID uses this)" if used else " (alternative, not judged)"), flops=flops,
                     nbytes=nbytes)
    probe.torch_network = used  # only the impl FID runs is held to the target; the others are for comparison
    return probe


# ---------------------------------------------------------------- identity (dlib ResNet)
class _DlibResBlock(nn.Module):
    """dlib `ares` / `ares_down`: relu(add_prev(BN(con3x3(relu(BN(con3x3,stride s)))), shortcut)); the shortcut of
    a down block is avg_pool<2,2,2,2> of the input; add_prev zero-pads to the larger channels and size."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        s = 2 if down else 1
        self.c1 = nn.Conv2d(cin, cout, 3, s, padding=0 if down else 1)  # dlib con<>: no padding when stride != 1
        self.a1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, padding=1)
        self.a2 = nn.BatchNorm2d(cout)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a2(self.c2(F.relu(self.a1(self.c1(x)))))
        sc = F.avg_pool2d(x, 2, 2) if self.down else x
        h, w, c = max(y.shape[2], sc.shape[2]), max(y.shape[3], sc.shape[3]), max(y.shape[1], sc.shape[1])

        def pad(t: torch.Tensor) -> torch.Tensor:
            return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

        return F.relu(pad(y) + pad(sc))


class DlibResNetMirror(nn.Module):
    """dlib_face_recognition_resnet_model_v1's network (dlib examples/dnn_face_recognition_ex.cpp `anet_type`;
    layer defaults from dlib/dnn/layers.h): con<32,7,7,2,2> -> affine -> relu -> max_pool<3,3,2,2> ->
    3x ares<32> -> ares_down<64> + 3x ares<64> -> ares_down<128> + 2x ares<128> -> ares_down<256> + 2x ares<256>
    -> ares_down<256> -> avg_pool_everything -> fc_no_bias<128>; 150x150 RGB chip in. 29 conv layers.
    Used only to count FLOPs (weights random); its parameter count x 4 bytes is checked against the file size."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.bn = nn.BatchNorm2d(32)
        spec = [(32, 32, False)] * 3 + [(32, 64, True)] + [(64, 64, False)] * 3 + [(64, 128, True)] + \
               [(128, 128, False)] * 2 + [(128, 256, True)] + [(256, 256, False)] * 2 + [(256, 256, True)]
        self.blocks = nn.Sequential(*[_DlibResBlock(a, b, d) for a, b, d in spec])
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.stem(x))), 3, 2)
        return self.fc(self.blocks(x).mean(dim=(2, 3)))

    def dlib_parameter_count(self) -> int:
        """Floats dlib stores: conv weights + biases, affine gamma + beta per channel, fc weights."""
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        return sum(m.weight.numel() + m.bias.numel() + 2 * m.out_channels for m in convs) + self.fc.weight.numel()


def identity_probe(batch: int = 32) -> Probe:
    """dlib compute_face_descriptor on a batch of 150x150 chips (CSIM's default batch 32), single-threaded."""
    import dlib

    rec = dlib.face_recognition_model_v1(str(weights.require("dlib_face_recognition")))
    chips = list(np.random.default_rng(0).integers(0, 256, (batch, 150, 150, 3), dtype=np.uint8))
    mirror = DlibResNetMirror().eval()
    flops = count_flops(lambda: mirror(torch.zeros(1, 3, 150, 150))) or 0
    return Probe("identity (dlib ResNet v1, 1 proc)", batch, batch, lambda: rec.compute_face_descriptor(chips),
                 float(flops * batch), "dlib C++ (no BLAS build), FLOPs on DlibResNetMirror", threads=1, torch_network=False)


def _dlib_worker(batch: int, repeats: int) -> float:
    """In a pool worker: best seconds of one compute_face_descriptor batch (after one warm-up call)."""
    import time

    probe = identity_probe(batch)
    probe.call()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        probe.call()
        best = min(best, time.perf_counter() - t)
    return best


def dlib_per_core(workers: int, batch: int = 32, repeats: int = 3) -> tuple[float, list[float]]:
    """Aggregate seconds per frame of `workers` processes (one thread each) embedding at the same time:
    1 / sum(frames/s of each), and each worker's best batch time. harness.core.pool as the executor uses it."""
    from harness.core.pool import process_pool

    with process_pool(workers, threads=1) as pool:
        times = list(pool.map(_dlib_worker, [batch] * workers, [repeats] * workers))
    return 1.0 / sum(batch / t for t in times), times


# ---------------------------------------------------------------- SyncNet
def syncnet_probes(batch: int = 20, tmp: Path | None = None) -> list[Probe]:
    """SyncNet v2 video (5-frame windows, [B,3,5,224,224]) and audio ([B,1,13,20]) streams at LSE's default batch
    (20 windows; one window per frame), loaded by metrics.syncnet_model.load_syncnet."""
    from metrics.syncnet_model import SyncNetV2, load_syncnet

    tmp = tmp or Path(tempfile.mkdtemp(prefix="floor-"))
    path, how = _weights_or_random("syncnet_v2", tmp, lambda: SyncNetV2().state_dict())
    net = load_syncnet(path)
    g = torch.Generator().manual_seed(0)
    v = torch.rand(batch, 3, 5, 224, 224, generator=g) * 255
    a = torch.randn(batch, 1, 13, 20, generator=g)
    return [_counted("syncnet video", batch, batch, lambda: net.forward_lip(v), how),
            _counted("syncnet audio", batch, batch, lambda: net.forward_aud(a), how)]


# ---------------------------------------------------------------- LPIPS AlexNet
def lpips_probe(batch: int = 32, tmp: Path | None = None) -> Probe:
    """lpips' AlexNet on a generated/ground-truth pair of 256x256 crops per frame, built by metrics.lpips_metric."""
    import torchvision

    from metrics.lpips_metric import build_lpips

    tmp = tmp or Path(tempfile.mkdtemp(prefix="floor-"))
    path, how = _weights_or_random("alexnet", tmp, lambda: torchvision.models.alexnet(weights=None).state_dict())
    model = build_lpips(str(path))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1, torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1
    return _counted("lpips alexnet (pair)", batch, batch, lambda: model(x, y), how)


# ---------------------------------------------------------------- FAN
def fan_probe(batch: int = 16, tmp: Path | None = None) -> Probe:
    """face-alignment's FAN(4) as FANLandmarker.landmarks_batch runs it: `batch` 256x256 face crops, in network
    calls of FANLandmarker.batch_size faces + their flips (resolved at the call's thread count: FAN_CPU_BATCH at
    one thread, else FAN_BATCH; BN folded, channels_last). Per frame: two FAN passes (the face and its flip)."""
    from face_alignment.models import FAN

    from harness.core.faces.landmarks import FAN_CPU_BATCH, FANLandmarker

    tmp = tmp or Path(tempfile.mkdtemp(prefix="floor-"))
    path, how = _weights_or_random("fan_2d_pth", tmp, lambda: FAN(4).state_dict())
    fan = FANLandmarker(path=path)
    x = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        flops = (count_flops(lambda: fan.heatmaps(x[:1])) or 0) * batch

    def call() -> list[Any]:
        n = fan.batch_size
        return [fan.heatmaps(x[i:i + n]) for i in range(0, batch, n)]

    nb = batch_scaled_bytes(fan.heatmaps, x, FAN_CPU_BATCH)
    return _counted("fan 2DFAN4 (+flip)", batch, batch, call,
                    f"{how}; BN folded, channels_last, calls of {FAN_CPU_BATCH} faces + flips at 1 thread, else 16 "
                    f"(MB/frame at {FAN_CPU_BATCH})", flops=flops, nbytes=nb and nb * batch / FAN_CPU_BATCH)


# ---------------------------------------------------------------- RealTalk
def realtalk_probes(batch: int = 16, config: str = "small", clip_frames: int = 250) -> list[Probe]:
    """The A2E and renderer stages of realtalk/latency_stages.py as realtalk.inference runs them, fp32: the
    renderer at the pipeline's max_batch (16 frames per call); the A2E on one `clip_frames`-frame clip (10 s:
    RealTalkPipeline predicts all of a clip's overlapping windows in one call, 21 windows here)."""
    from realtalk import cpu_kernels
    from realtalk.fast import CPU_CHUNK
    from realtalk.latency_stages import build_networks, realtalk_stages

    a2e, ren, fm, cfg = build_networks(config)
    out = []
    for name, b, frames in (("a2e", 1, clip_frames), ("renderer", batch, 16)):
        st = next(s for s in realtalk_stages(a2e, ren, fm, cfg, batch=b, frames=frames) if s.name == name)
        x = st.make_inputs()
        with torch.inference_mode():  # as the pipeline runs; harness.core.flops sees the fused attention kernels
            flops = st.flops_per_call(x)
        what = f"1 clip of {frames} frames per call" if name == "a2e" else \
            f"{b} frames per call ({CPU_CHUNK}-frame network calls at 1 thread: realtalk.fast.CPU_CHUNK), warp prior" \
            f"; fused C kernels {'on' if cpu_kernels.available() else cpu_kernels.status()}"
        out.append(_counted(f"realtalk {name} ({config})", b, st.frames_per_call, (lambda s=st, i=x: s.run(i)),
                            f"random init, realtalk/latency_stages.py; {what}", flops=flops))
    return out


def inception_impls() -> list[str]:
    """The ways metrics.fid can run the installed backend's network, FID's own first."""
    from metrics.fid import DEFAULT_IMPL, IMPLS, fid_backend

    backend = fid_backend()
    rest = [i for i in IMPLS if i != DEFAULT_IMPL[backend] and not (backend == "pytorch-fid" and i == "torchscript")]
    return [DEFAULT_IMPL[backend], *rest]


def all_probes(names: list[str] | None = None) -> list[Probe]:
    """Every network of the table (or those whose name starts with one of `names`)."""
    tmp = Path(tempfile.mkdtemp(prefix="floor-"))
    builders: list[tuple[str, Callable[[], list[Probe]]]] = [
        ("inception", lambda: [inception_probe(impl=i) for i in inception_impls()]),
        ("identity", lambda: [identity_probe()]),
        ("syncnet", lambda: syncnet_probes(tmp=tmp)),
        ("lpips", lambda: [lpips_probe(tmp=tmp)]),
        ("fan", lambda: [fan_probe(tmp=tmp)]),
        ("realtalk", lambda: realtalk_probes()),
    ]
    out: list[Probe] = []
    for key, build in builders:
        if names and not any(key.startswith(n) or n.startswith(key) for n in names):
            continue
        out.extend(build())
    return out
