"""SyncNet face crops with the reference geometry of joonson/syncnet_python.

Reference: joonson/syncnet_python, run_pipeline.py `crop_video` (commit 6efbb1c305c23f47a62b09cf4215a8ac45e97d49)
and SyncNetInstance.py `evaluate` (commit dae7abec1d1d97827337d1e8b692ec5ce5e8f5e5). Per face-track box:
  s = max(w, h) / 2, x, y = box centre; s, x, y each median-filtered over the track with
  scipy.signal.medfilt(kernel_size=13) (zero-padded at the ends: the first/last 6 frames are pulled
  toward smaller values, kept because the reference does it);
  cs = 0.4, bsi = int(s * (1 + 2 cs)); the frame is padded by bsi on every side with constant 110;
  crop rows int(my - s) : int(my + s (1 + 2 cs)), cols int(mx - s (1 + cs)) : int(mx + s (1 + cs)) with
  (mx, my) = (x, y) + bsi on the padded frame (a 2.8 s x 2.8 s box, centre 0.4 s above the crop centre);
  cv2.resize to 224x224 (its default INTER_LINEAR).
The reference then writes the crops to an XVID .avi and evaluate() re-reads it through ffmpeg JPEGs with
cv2.imread (BGR, raw 0..255) and feeds 5-frame windows. We skip the lossy codec round trip (it would make the
value depend on the encoder build) and pass the 224 crops straight on; colour order and windows are handled by
metrics.syncnet_lse.frames_to_input. Boxes come from the harness's face track of the ground truth (not the
reference's S3FD), applied to the generated full-resolution frames; the median filter runs over the clip.
A long clip's frames are cut as they stream past (SyncNetCropper: the same crops), never all held.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.signal import medfilt

from harness.core.errors import MediaError

CROP_SCALE = 0.4
MEDIAN_KERNEL = 13
PAD_VALUE = 110
SIZE = 224


def smoothed_centres(face_boxes: np.ndarray, kernel: int = MEDIAN_KERNEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s, x, y) per frame: half-size and centre of each box, median-filtered as the reference does."""
    b = np.asarray(face_boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] < 4 or len(b) == 0:
        raise MediaError(f"SyncNet crop needs face boxes [T,4] (x1,y1,x2,y2), got {b.shape}")
    s = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2
    y = (b[:, 1] + b[:, 3]) / 2
    x = (b[:, 0] + b[:, 2]) / 2
    with warnings.catch_warnings():  # clips shorter than the kernel: zero-padded, exactly as the reference
        warnings.filterwarnings("ignore", message="kernel_size exceeds volume extent")
        return tuple(medfilt(v, kernel_size=kernel) for v in (s, x, y))  # type: ignore[return-value]


def crop_one(frame: np.ndarray, s: float, x: float, y: float, cs: float = CROP_SCALE) -> np.ndarray:
    """One 224x224 crop (same channel order as `frame`) with the reference's padding and slice bounds."""
    bsi = int(s * (1 + 2 * cs))
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), mode="constant", constant_values=PAD_VALUE)
    my, mx = y + bsi, x + bsi
    face = padded[int(my - s):int(my + s * (1 + 2 * cs)), int(mx - s * (1 + cs)):int(mx + s * (1 + cs))]
    if face.size == 0:
        raise MediaError(f"SyncNet crop is empty (box half-size {s:.1f} px at ({x:.1f}, {y:.1f}))")
    return cv2.resize(np.ascontiguousarray(face), (SIZE, SIZE))


@dataclass
class CutCrops:
    """ClipInput.generated_full for a clip whose full frames are never all held (a long clip decoded in chunks):
    SyncNet's 224 crops, already cut from them by SyncNetCropper. syncnet_crops takes it as the frames."""

    crops: np.ndarray  # uint8 [T,224,224,3]

    def __len__(self) -> int:
        return len(self.crops)


class SyncNetCropper:
    """syncnet_crops fed chunk by chunk: the median-filtered centres need the whole track, which is known before
    the first frame (the ground truth's face boxes), so every frame's crop is the one syncnet_crops cuts."""

    def __init__(self, face_boxes: np.ndarray, cs: float = CROP_SCALE, kernel: int = MEDIAN_KERNEL):
        self.s, self.x, self.y = smoothed_centres(face_boxes, kernel)
        self.cs = cs
        self.crops = np.empty((len(self.s), SIZE, SIZE, 3), np.uint8)
        self.pos = 0

    def add(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise MediaError(f"SyncNet crop needs frames [T,H,W,3], got {frames.shape}")
        if self.pos + len(frames) > len(self.s):
            raise MediaError(f"SyncNet crop: more than {len(self.s)} frames for {len(self.s)} face boxes")
        for f in frames:
            t = self.pos
            self.crops[t] = crop_one(f, self.s[t], self.x[t], self.y[t], self.cs)
            self.pos += 1

    def result(self) -> CutCrops:
        if self.pos != len(self.s):
            raise MediaError(f"SyncNet crop: {self.pos} frames but {len(self.s)} face boxes")
        return CutCrops(self.crops)


def syncnet_crops(frames: np.ndarray | CutCrops, face_boxes: np.ndarray, cs: float = CROP_SCALE,
                  kernel: int = MEDIAN_KERNEL) -> np.ndarray:
    """uint8 [T,H,W,3] full frames + [T,4] face-track boxes (full-frame px) -> uint8 [T,224,224,3] crops
    (CutCrops: the crops SyncNetCropper already cut, checked against the boxes)."""
    if isinstance(frames, CutCrops):
        if len(frames) != len(face_boxes):
            raise MediaError(f"SyncNet crop: {len(frames)} frames but {len(face_boxes)} face boxes")
        return frames.crops
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"SyncNet crop needs frames [T,H,W,3], got {frames.shape}")
    if len(frames) != len(face_boxes):
        raise MediaError(f"SyncNet crop: {len(frames)} frames but {len(face_boxes)} face boxes")
    s, x, y = smoothed_centres(face_boxes, kernel)
    return np.stack([crop_one(frames[t], s[t], x[t], y[t], cs) for t in range(len(frames))])
