"""68-point landmarks (iBUG 300-W order) behind one interface: (frame, face box) -> [68,2] (x,y) px.

Backends: dlib's shape predictor (offline default; file bundled in face_recognition_models) and
face-alignment's FAN (2DFAN-4, the landmarks used for LMD in the literature) when its official file
is present. Each landmarker records the sha256 of its weights so results name the exact model.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from harness.core import weights
from harness.core.errors import WeightsMissingError


class LandmarkDetector(ABC):
    """Landmarks of the face inside `box` (x1,y1,x2,y2[,score]) of an RGB uint8 frame."""

    name: str = "abstract"
    weights_sha256: str | None = None

    @abstractmethod
    def landmarks(self, frame: np.ndarray, box: np.ndarray | None) -> np.ndarray | None:
        """[68,2] float32 (x,y) in frame pixels, iBUG order; None when there is no box/face."""

    def landmarks_batch(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
        """landmarks() of many (frame, box) pairs; backends with a network override it to run one batched pass."""
        return [self.landmarks(f, b) for f, b in zip(frames, boxes)]

    def describe(self) -> dict:
        return {"name": self.name, "weights_sha256": self.weights_sha256}


class DlibLandmarker(LandmarkDetector):
    """dlib's 68-point ensemble-of-regression-trees predictor. It was trained on dlib HOG boxes, so it
    is most accurate with boxes from the dlib_hog detector."""

    name = "dlib"

    def __init__(self, path: str | Path | None = None):
        import dlib

        self.path = Path(path) if path else weights.require("dlib_landmarks68")
        self.weights_sha256 = weights.file_sha256(self.path)
        self._rect = dlib.rectangle
        self._pred = dlib.shape_predictor(str(self.path))

    def landmarks(self, frame: np.ndarray, box: np.ndarray | None) -> np.ndarray | None:
        if box is None or not np.all(np.isfinite(box[:4])):
            return None
        x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
        if x2 - x1 < 4 or y2 - y1 < 4:
            return None
        shape = self._pred(np.ascontiguousarray(frame), self._rect(x1, y1, x2 - 1, y2 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _load_fan_state_dict(path: Path, device: str):
    """face-alignment 1.5's own loading code (FaceAlignment._load_native), from an explicit path so
    that nothing is ever downloaded: FAN(4) + torch.load(weights_only=True) + load_state_dict."""
    import torch
    from face_alignment.models import FAN

    net = FAN(4)
    net.load_state_dict(torch.load(str(path), map_location=device, weights_only=True))
    return net.to(device).eval()


def _load_fan_torchscript(path: Path, device: str):
    """face-alignment 1.3/1.4's loading code: the official 2DFAN4 zip is a TorchScript archive."""
    import torch

    return torch.jit.load(str(path), map_location=device).eval()


def fan_weights_key() -> str:
    """The weights-table key of the FAN file FANLandmarker loads by default: face-alignment 1.5's state dict
    (`fan_2d_pth`) when present, else the 1.3/1.4 TorchScript zip (`fan_2d`) when present, else `fan_2d_pth`
    (the file to ask for). Metrics check availability and record the sha256 of this same file."""
    if weights.available("fan_2d_pth"):
        return "fan_2d_pth"
    return "fan_2d" if weights.available("fan_2d") else "fan_2d_pth"


def fold_fan(net: Any) -> Any:
    """face-alignment's FAN for inference: the two BatchNorms that directly follow a conv (the stem's bn1 and
    each stack's bn_end after conv_last) folded into it, weights in channels_last (oneDNN's NHWC convs).
    The ConvBlocks' BNs are pre-activation (BN -> ReLU -> conv, and their conv outputs are also concatenated
    raw), so they cannot fold and stay as they are (harness.core.torch_fold). Same maths; fp32 rounding
    differs (tests/test_fan_fast.py)."""
    import torch

    from harness.core.torch_fold import fold_batchnorm

    net = net.eval()
    fold_batchnorm(net.conv1, net.bn1)
    net.bn1 = torch.nn.Identity()
    for i in range(net.num_modules):
        fold_batchnorm(net._modules[f"conv_last{i}"], net._modules[f"bn_end{i}"])
        net._modules[f"bn_end{i}"] = torch.nn.Identity()
    return net.to(memory_format=torch.channels_last)


def _fan_crop_input(frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """face-alignment's preprocessing of one face: crop around the box centre shifted up by 0.12 h at scale
    (w+h)/195 to 256x256 -> float32 [3,256,256] in [0,1]; returns (input, center, scale)."""
    from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE, crop

    d = np.asarray(box[:4], dtype=np.float64)
    center = np.array([d[2] - (d[2] - d[0]) / 2.0, d[3] - (d[3] - d[1]) / 2.0])
    center[1] = center[1] - (d[3] - d[1]) * CENTER_Y_OFFSET
    scale = (d[2] - d[0] + d[3] - d[1]) / REFERENCE_SCALE
    inp = crop(np.ascontiguousarray(frame), center, scale).transpose((2, 0, 1)).astype(np.float32) / 255.0
    return inp, center, scale


# Faces per FAN call (each with its flip: 2x as many images) when batch_size is not given. Measured on the shared
# 2-core CPU, one thread, 16 faces in calls of 2 / 4 / 16, interleaved in one process: 1056 / 1063 / 1241 ms CPU
# per face (a 16-face call's 32 x 256x256 activations page-fault and miss the caches; FLOP floor 759 ms). With 2
# threads 16 was faster (bench floor: 1.9x vs 2.8x the floor; multi-threaded ops need the work), as on GPUs.
FAN_CPU_BATCH = 4  # at one intra-op thread
FAN_BATCH = 16  # more threads, or a GPU


class FANLandmarker(LandmarkDetector):
    """face-alignment's 2D FAN (2DFAN-4). Pre/post-processing is face-alignment's own (crop around the
    box centre shifted up by 0.12 h, scale (w+h)/195, heatmap argmax with quarter-pixel refinement,
    flip averaging). Prefers the 1.5 state-dict file (`fan_2d_pth`), else the TorchScript zip (`fan_2d`).

    Speed (issue 16): the state-dict network runs BN-folded in channels_last (fold_fan), and landmarks_batch
    runs `batch_size` faces (default: FAN_CPU_BATCH at one CPU thread, else FAN_BATCH) AND their flipped copies in one
    network call (FAN has no cross-sample ops in eval mode, so a batch equals one-at-a-time up to fp32
    rounding). fast=False keeps the network as loaded."""

    name = "fan"

    def __init__(self, path: str | Path | None = None, device: str = "cpu", flip_input: bool = True,
                 batch_size: int | None = None, fast: bool = True):
        if path is None:
            path = weights.require(fan_weights_key())  # raises, naming the file face-alignment 1.5 loads
        self.path = Path(path)  # type: ignore[arg-type]
        self.weights_sha256 = weights.file_sha256(self.path)
        self.device = device
        self.flip_input = flip_input
        self._batch = max(1, int(batch_size)) if batch_size else None
        self.fast = fast and self.path.suffix != ".zip"  # a TorchScript graph is run as shipped
        if self.path.suffix == ".zip":
            self._net = _load_fan_torchscript(self.path, device)
        else:
            net = _load_fan_state_dict(self.path, device)
            self._net = fold_fan(net) if self.fast else net

    @property
    def batch_size(self) -> int:
        """Faces per network call: the given batch_size, else FAN_CPU_BATCH on CPU at one intra-op thread
        (resolved per call: a pool worker sets its threads after building) and FAN_BATCH otherwise."""
        import torch

        if self._batch:
            return self._batch
        cpu1 = not str(self.device).startswith("cuda") and torch.get_num_threads() == 1
        return FAN_CPU_BATCH if cpu1 else FAN_BATCH

    def heatmaps(self, x: Any) -> Any:
        """[B,3,256,256] in [0,1] -> [B,68,64,64] heatmaps (plus the flipped input's, flipped back, when
        flip_input): face-alignment's `out + flip(net(flip(x)), is_label=True)`, both halves in one call."""
        import torch
        from face_alignment.utils import flip

        def last(o: Any) -> Any:
            return (o[-1] if isinstance(o, (list, tuple)) else o).detach()

        b = x.shape[0]
        inp = torch.cat([x, flip(x)]) if self.flip_input else x
        if self.fast:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = last(self._net(inp))
            if self.flip_input:
                out = out[:b] + flip(out[b:], is_label=True)
        return out.contiguous()

    def landmarks(self, frame: np.ndarray, box: np.ndarray | None) -> np.ndarray | None:
        return self.landmarks_batch([frame], [box])[0]

    def landmarks_batch(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
        """[68,2] float32 per (frame, box), None where the box is missing; batch_size faces per network call."""
        import torch
        from face_alignment.utils import get_preds_fromhm

        out: list[np.ndarray | None] = [None] * len(frames)
        todo = [i for i, b in enumerate(boxes) if b is not None and np.all(np.isfinite(np.asarray(b)[:4]))]
        for lo in range(0, len(todo), self.batch_size):
            idx = todo[lo:lo + self.batch_size]
            prep = [_fan_crop_input(frames[i], np.asarray(boxes[i])) for i in idx]
            x = torch.from_numpy(np.stack([p[0] for p in prep])).to(self.device)
            hm = self.heatmaps(x).cpu().float().numpy()
            for j, (i, (_, center, scale)) in enumerate(zip(idx, prep)):
                _, pts_img, _ = get_preds_fromhm(hm[j:j + 1], center, scale)
                out[i] = np.asarray(pts_img, dtype=np.float32).reshape(68, 2)
        return out


LANDMARKERS: dict[str, Callable[..., LandmarkDetector]] = {"dlib": DlibLandmarker, "fan": FANLandmarker}


def get_landmarker(name: str = "dlib", **kwargs) -> LandmarkDetector:
    """A landmarker by name ("dlib" | "fan"); WeightsMissingError when its file is absent. One shared instance
    per (name, kwargs, weights file) per process (harness.core.faces.models)."""
    from harness.core.faces.models import shared

    if isinstance(name, LandmarkDetector):
        return name
    if name not in LANDMARKERS:
        raise KeyError(f"unknown landmarker {name!r}; known: {sorted(LANDMARKERS)}")
    return shared("landmarker", name, kwargs, lambda: LANDMARKERS[name](**kwargs))


__all__ = ["LandmarkDetector", "DlibLandmarker", "FANLandmarker", "fan_weights_key", "get_landmarker",
           "WeightsMissingError"]
