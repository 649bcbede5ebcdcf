"""Face detectors behind one interface: frame (uint8 RGB [H,W,3]) -> boxes [K,5] (x1,y1,x2,y2,score).

Backends: dlib HOG (offline default, bundled with dlib), MTCNN (facenet_pytorch, weights bundled) and
S3FD (face-alignment's network, used only when its official weights file is present); the two torch networks
take device= and name its type in params(). `run --face-detector` picks the ground truth's (faces/tracking.py). Large frames are
detected on a downscaled copy and the boxes are mapped back, because detection cost grows with pixels
while talking-head faces are big.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import cv2
import numpy as np

from harness.core import weights
from harness.core.errors import MediaError
from harness.core.faces.models import shared

EMPTY = np.zeros((0, 5), dtype=np.float32)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise MediaError(f"expected a uint8 RGB frame [H,W,3], got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


def _downscale(frame: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """(image, factor) with image = frame resized by factor so that its longer side <= max_side."""
    h, w = frame.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return frame, 1.0
    f = max_side / max(h, w)
    small = cv2.resize(frame, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return small, f


def _finish(boxes: np.ndarray, factor: float, shape: tuple[int, ...]) -> np.ndarray:
    """Undo the downscale, clip to the frame, sort by score (best first)."""
    if len(boxes) == 0:
        return EMPTY.copy()
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 5).copy()
    out[:, :4] /= factor
    h, w = shape[:2]
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    keep = (out[:, 2] - out[:, 0] > 1) & (out[:, 3] - out[:, 1] > 1)
    out = out[keep]
    return out[np.argsort(-out[:, 4], kind="stable")]


def device_type(device: str) -> str:
    """'cuda:1' -> 'cuda': in a detector's params (cache keys), since GPU and CPU convolutions round differently
    (the ground-truth feature caches key on the device type the same way)."""
    return str(device).split(":")[0]


class FaceDetector(ABC):
    """Finds faces in one RGB frame. `name` identifies the backend in cache keys and run summaries."""

    name: str = "abstract"

    @abstractmethod
    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Boxes [K,5] float32 (x1,y1,x2,y2,score) in the frame's pixels, best score first."""

    def params(self) -> dict:
        """Settings that change the output (part of cache keys)."""
        return {}

    def describe(self) -> dict:
        return {"name": self.name, **self.params()}


class DlibHogDetector(FaceDetector):
    """dlib's frontal HOG+SVM detector. Minimum face ~80 px at upsample=0 (~40 px at 1); when nothing
    is found at `upsample`, one retry at upsample+1 catches small faces without slowing the common case."""

    name = "dlib_hog"

    def __init__(self, upsample: int = 0, max_side: int | None = 400, retry_upsample: bool = True,
                 threshold: float = 0.0, full_res_retry: bool = True):
        import dlib

        # a small face in a big frame (a 1080x1920 phone video) shrinks below HOG's minimum on the downscaled
        # copy: when nothing is found there, one more pass on the full-resolution frame (only then: no cost
        # for the usual big talking-head face)
        self.full_res_retry = bool(full_res_retry)
        self._det = dlib.get_frontal_face_detector()
        import threading

        self._lock = threading.Lock()  # dlib's object_detector is not safe for concurrent use; instances are shared
        self.upsample = int(upsample)
        self.max_side = max_side
        self.retry_upsample = retry_upsample
        self.threshold = float(threshold)

    def params(self) -> dict:
        return {"upsample": self.upsample, "max_side": self.max_side, "retry": self.retry_upsample,
                "threshold": self.threshold, "full_res_retry": self.full_res_retry}

    def _run(self, img: np.ndarray, upsample: int) -> np.ndarray:
        with self._lock:
            rects, scores, _ = self._det.run(img, upsample, self.threshold)
        return np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1, s] for r, s in zip(rects, scores)],
                        dtype=np.float32).reshape(-1, 5)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        frame = _check_frame(frame)
        small, f = _downscale(frame, self.max_side)
        boxes = self._run(small, self.upsample)
        if len(boxes) == 0 and self.retry_upsample:
            boxes = self._run(small, self.upsample + 1)
        if len(boxes) == 0 and self.full_res_retry and f < 1.0:
            boxes, f = self._run(frame, self.upsample), 1.0
        return _finish(boxes, f, frame.shape)


class MTCNNDetector(FaceDetector):
    """facenet_pytorch's MTCNN (P/R/O-Net weights ship inside the package, so it works offline)."""

    name = "mtcnn"

    def __init__(self, max_side: int | None = 640, min_face_size: int = 40, threshold: float = 0.9,
                 device: str = "cpu"):
        from facenet_pytorch import MTCNN

        self.max_side = max_side
        self.min_face_size = min_face_size
        self.threshold = threshold
        self.device = str(device)
        self._net = MTCNN(keep_all=True, min_face_size=min_face_size, device=device, post_process=False)

    def params(self) -> dict:
        return {"max_side": self.max_side, "min_face_size": self.min_face_size, "threshold": self.threshold,
                "device": device_type(self.device)}

    def detect(self, frame: np.ndarray) -> np.ndarray:
        import torch

        frame = _check_frame(frame)
        small, f = _downscale(frame, self.max_side)
        with torch.no_grad():
            boxes, probs = self._net.detect(small)
        if boxes is None:
            return EMPTY.copy()
        out = np.concatenate([np.asarray(boxes, np.float32), np.asarray(probs, np.float32)[:, None]], axis=1)
        return _finish(out[out[:, 4] >= self.threshold], f, frame.shape)


class S3FDDetector(FaceDetector):
    """face-alignment's S3FD, loaded through face-alignment's own SFDDetector from the official file
    (torch hub checkpoints/s3fd-619a316812.pth, a plain state dict). Needs weights key `s3fd`."""

    name = "s3fd"

    def __init__(self, max_side: int | None = 640, threshold: float = 0.5, device: str = "cpu",
                 path: str | None = None):
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        self.path = str(path or weights.require("s3fd"))
        self.weights_sha256 = weights.file_sha256(self.path)
        self.max_side = max_side
        self.threshold = threshold
        self.device = str(device)
        self._det = SFDDetector(device=device, path_to_detector=self.path, filter_threshold=threshold)

    def params(self) -> dict:
        return {"max_side": self.max_side, "threshold": self.threshold, "sha256": self.weights_sha256,
                "device": device_type(self.device)}

    def detect(self, frame: np.ndarray) -> np.ndarray:
        frame = _check_frame(frame)
        small, f = _downscale(frame, self.max_side)
        boxes = self._det.detect_from_image(small.copy())  # RGB in, as face-alignment expects
        return _finish(np.asarray(boxes, dtype=np.float32).reshape(-1, 5), f, frame.shape)


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "dlib_hog": DlibHogDetector,
    "mtcnn": MTCNNDetector,
    "s3fd": S3FDDetector,
}


def get_detector(name: str = "dlib_hog", **kwargs) -> FaceDetector:
    """A detector by name ("dlib_hog" | "mtcnn" | "s3fd"); kwargs go to its constructor. One shared instance
    per (name, kwargs, weights file) per process (harness.core.faces.models): detectors keep no per-call state."""
    if isinstance(name, FaceDetector):
        return name
    if name not in DETECTORS:
        raise KeyError(f"unknown face detector {name!r}; known: {sorted(DETECTORS)}")
    return shared("detector", name, kwargs, lambda: DETECTORS[name](**kwargs))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a [N,>=4] and b [M,>=4] (x1,y1,x2,y2)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, np.shape(a)[-1])[:, :4]
    b = np.asarray(b, dtype=np.float64).reshape(-1, np.shape(b)[-1])[:, :4]
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
