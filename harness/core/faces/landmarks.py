"""68-point landmarks (iBUG 300-W order) behind one interface: (frame, face box) -> [68,2] (x,y) px.

Backends: dlib's shape predictor (offline default; file bundled in face_recognition_models) and
face-alignment's FAN (2DFAN-4, the landmarks used for LMD in the literature) when its official file
is present. Each landmarker records the sha256 of its weights so results name the exact model.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

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


class FANLandmarker(LandmarkDetector):
    """face-alignment's 2D FAN (2DFAN-4). Pre/post-processing is face-alignment's own (crop around the
    box centre shifted up by 0.12 h, scale (w+h)/195, heatmap argmax with quarter-pixel refinement,
    flip averaging). Prefers the 1.5 state-dict file (`fan_2d_pth`), else the TorchScript zip (`fan_2d`)."""

    name = "fan"

    def __init__(self, path: str | Path | None = None, device: str = "cpu", flip_input: bool = True):
        if path is None:
            path = weights.require(fan_weights_key())  # raises, naming the file face-alignment 1.5 loads
        self.path = Path(path)  # type: ignore[arg-type]
        self.weights_sha256 = weights.file_sha256(self.path)
        self.device = device
        self.flip_input = flip_input
        if self.path.suffix == ".zip":
            self._net = _load_fan_torchscript(self.path, device)
        else:
            self._net = _load_fan_state_dict(self.path, device)

    def landmarks(self, frame: np.ndarray, box: np.ndarray | None) -> np.ndarray | None:
        import torch
        from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE, crop, flip, get_preds_fromhm

        if box is None or not np.all(np.isfinite(box[:4])):
            return None
        d = np.asarray(box[:4], dtype=np.float64)
        center = np.array([d[2] - (d[2] - d[0]) / 2.0, d[3] - (d[3] - d[1]) / 2.0])
        center[1] = center[1] - (d[3] - d[1]) * CENTER_Y_OFFSET
        scale = (d[2] - d[0] + d[3] - d[1]) / REFERENCE_SCALE
        inp = crop(np.ascontiguousarray(frame), center, scale).transpose((2, 0, 1)).astype(np.float32) / 255.0
        x = torch.from_numpy(inp)[None].to(self.device)
        with torch.no_grad():
            out = self._net(x)
            out = (out[-1] if isinstance(out, (list, tuple)) else out).detach()
            if self.flip_input:
                fo = self._net(flip(x))
                out = out + flip((fo[-1] if isinstance(fo, (list, tuple)) else fo).detach(), is_label=True)
        hm = out.cpu().float().numpy()
        _, pts_img, _ = get_preds_fromhm(hm, center, scale)
        return np.asarray(pts_img, dtype=np.float32).reshape(68, 2)


LANDMARKERS: dict[str, Callable[..., LandmarkDetector]] = {"dlib": DlibLandmarker, "fan": FANLandmarker}


def get_landmarker(name: str = "dlib", **kwargs) -> LandmarkDetector:
    """A landmarker by name ("dlib" | "fan"); WeightsMissingError when its file is absent."""
    if isinstance(name, LandmarkDetector):
        return name
    if name not in LANDMARKERS:
        raise KeyError(f"unknown landmarker {name!r}; known: {sorted(LANDMARKERS)}")
    return LANDMARKERS[name](**kwargs)


__all__ = ["LandmarkDetector", "DlibLandmarker", "FANLandmarker", "fan_weights_key", "get_landmarker",
           "WeightsMissingError"]
