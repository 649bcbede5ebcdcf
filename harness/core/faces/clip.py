"""A clip's faces in one call: track -> stable 256x256 crops -> landmarks in crop pixels (cached).

Only boxes and landmarks are cached (small); crops are re-cut from the frames, which is cheap and
keeps the cache tiny. The key covers the video file's bytes, the exact frames taken (source
timestamps), fps, the detector/landmarker (with weights hash) and every parameter, plus CODE_VERSION.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.core.cache import Cache, default_cache, make_key
from harness.core.faces.crop import (DEFAULT_SCALE, DEFAULT_SHIFT_Y, DEFAULT_SIZE, CropTrack, crop_frames,
                                make_crop_track)
from harness.core.faces.detect import FaceDetector, box_iou, get_detector
from harness.core.faces.landmarks import LandmarkDetector, get_landmarker
from harness.core.faces.track import FaceTrack, track_faces

CODE_VERSION = "faces-1"
MAX_UPSCALE = 2.0  # crops upscaled more than this from the frame get a warning (a small face in a big frame)


@dataclass
class ClipFaces:
    """crops: uint8 [T,size,size,3]; crop_track: where they came from; landmarks: [T,68,2] float32 in
    crop pixels (nan rows where none); face_boxes: [T,4] the tracked face box in crop pixels (pass it
    to landmarks_on_crops for crops cut with the same crop track, e.g. generated frames)."""

    crops: np.ndarray
    crop_track: CropTrack
    landmarks: np.ndarray
    face_boxes: np.ndarray
    track: FaceTrack
    detector: str = ""
    landmarker: str = ""
    landmarker_sha256: str | None = None

    @property
    def found(self) -> np.ndarray:
        """[T] bool: frames with landmarks."""
        return ~np.isnan(self.landmarks).any(axis=(1, 2))


def _face_boxes_in_crop(track_boxes: np.ndarray, crop_track: CropTrack) -> np.ndarray:
    out = np.empty((len(track_boxes), 4), dtype=np.float32)
    for t, b in enumerate(track_boxes):
        out[t] = crop_track.to_crop(np.asarray(b[:4]).reshape(2, 2), t).reshape(4)
    return out


def clip_faces(
    video: Any,
    detector: str | FaceDetector = "dlib_hog",
    landmarker: str | LandmarkDetector = "dlib",
    cache: Cache | bool | None = True,
    every: int = 1,
    smooth: int = 5,
    pick: str | int = "largest",
    max_gap: int = 25,
    size: int = DEFAULT_SIZE,
    scale: float = DEFAULT_SCALE,
    shift_y: float = DEFAULT_SHIFT_Y,
    fixed_side: bool = True,
    pad: str = "edge",
) -> ClipFaces:
    """Track the subject's face in a harness.core.media.Video, cut stable crops, fit landmarks on the crops.
    cache: True = the default cache, False/None = no caching, or a Cache. Raises NoFaceError."""
    det = get_detector(detector) if isinstance(detector, str) else detector
    lm = get_landmarker(landmarker) if isinstance(landmarker, str) else landmarker
    frames = video.frames
    store = default_cache() if cache is True else (cache or None)
    params = dict(every=every, smooth=smooth, pick=pick, max_gap=max_gap, size=size, scale=scale,
                  shift_y=shift_y, fixed_side=fixed_side, pad=pad, detector=det.describe(),
                  landmarker=lm.describe(), fps=float(video.fps), n=len(frames), shape=list(frames.shape[1:]),
                  frames=_frames_identity(video))

    def compute() -> dict[str, np.ndarray]:
        from harness.core.thread_warnings import recorded_warnings

        with recorded_warnings(UserWarning) as said:  # kept in the cache entry, re-emitted below (thread-safe)
            track = track_faces(frames, det, every=every, smooth=smooth, pick=pick, max_gap=max_gap, name=video.path)
        ct = make_crop_track(track, frames.shape[1:3], size=size, scale=scale, shift_y=shift_y, fixed_side=fixed_side)
        crops = crop_chunked(frames, ct, pad=pad)
        fboxes = _face_boxes_in_crop(track.boxes, ct)
        lms = landmarks_on_crops(crops, lm, boxes=fboxes)
        return {"track_boxes": track.boxes, "raw_boxes": track.raw_boxes, "detected": track.detected,
                "n_tracks": np.array(track.n_tracks), "crop_boxes": ct.boxes, "face_boxes": fboxes,
                "landmarks": lms, "crops": crops,
                "track_warnings": np.array([str(w.message) for w in said], dtype=str)}

    arrays = None
    if store is not None:
        key = make_key("faces", CODE_VERSION, inputs=[video.path], **params)
        arrays = store.get_arrays(key)
    if arrays is None:
        arrays = compute()
        if store is not None:
            store.put_arrays(key, {k: v for k, v in arrays.items() if k != "crops"})
    track = FaceTrack(boxes=arrays["track_boxes"], detected=arrays["detected"].astype(bool),
                      raw_boxes=arrays["raw_boxes"], n_tracks=int(arrays["n_tracks"]), detector=det.name)
    _warn_missed(track, every, video.path)
    ct = CropTrack(boxes=arrays["crop_boxes"], size=size, scale=scale, shift_y=shift_y,
                   frame_shape=(int(frames.shape[1]), int(frames.shape[2])))
    crops = arrays["crops"] if "crops" in arrays else crop_chunked(frames, ct, pad=pad)
    import warnings

    for msg in arrays.get("track_warnings", np.zeros(0, str)).tolist():  # also on a cache hit
        warnings.warn(msg, stacklevel=2)
    side = float(np.median(ct.sides())) if len(ct) else float(size)
    if side < size / MAX_UPSCALE:
        warnings.warn(f"{video.path}: small face: the {size}x{size} crops are upscaled {size / side:.1f}x from "
                      f"{side:.0f} px of the frame (metrics see interpolated pixels)", stacklevel=2)
    return ClipFaces(crops=crops, crop_track=ct, landmarks=arrays["landmarks"].astype(np.float32),
                     face_boxes=arrays["face_boxes"], track=track, detector=det.name, landmarker=lm.name,
                     landmarker_sha256=lm.weights_sha256)


def _frames_identity(video: Any) -> str:
    """The exact frames taken, for the cache key: the source timestamps picked; for a streamed video (not decoded
    or not) the output range of the file, which fixes them (same file bytes, fps and range -> same frames)."""
    frames = video.frames
    if getattr(frames, "chunks", None) is not None:
        return f"stream:{frames.start}:{frames.end}:{float(frames.fps)!r}"
    return hashlib.sha256(np.asarray(video.source_timestamps, np.float64).tobytes()).hexdigest()


def crop_chunked(frames: Any, crop_track: CropTrack, pad: str = "edge") -> np.ndarray:
    """crop_frames, for frames in memory or decoding in chunks (StreamedFrames): only the crops are kept."""
    chunks = getattr(frames, "chunks", None)
    if chunks is None:
        return crop_frames(frames, crop_track, pad=pad)
    if len(frames) != len(crop_track):
        raise ValueError(f"{len(frames)} frames but a crop track of {len(crop_track)}")
    out = np.empty((len(frames), crop_track.size, crop_track.size, frames.shape[3]), dtype=np.uint8)
    pos = 0
    for chunk in chunks():
        part = CropTrack(boxes=crop_track.boxes[pos:pos + len(chunk)], size=crop_track.size, scale=crop_track.scale,
                         shift_y=crop_track.shift_y, frame_shape=crop_track.frame_shape)
        out[pos:pos + len(chunk)] = crop_frames(chunk, part, pad=pad)
        pos += len(chunk)
    return out


def missed_frames(track: FaceTrack, every: int = 1) -> np.ndarray:
    """Frames the detector searched and did not find the tracked face on (their boxes are interpolated)."""
    T = len(track.detected)
    searched = np.zeros(T, dtype=bool)
    searched[::max(1, int(every))] = True
    if T:
        searched[-1] = True
    return np.flatnonzero(searched & ~np.asarray(track.detected, bool))


def _warn_missed(track: FaceTrack, every: int, path: Any) -> None:
    """Say which frames had no face (gaps up to max_gap are interpolated, longer ones raised NoFaceError)."""
    import warnings

    from harness.core.faces.track import frame_ranges

    miss = missed_frames(track, every)
    if len(miss):
        warnings.warn(f"{path}: no face detected on {len(miss)} of {len(track.detected)} frames "
                      f"({frame_ranges(miss)}); their face boxes are interpolated from the neighbouring frames",
                      stacklevel=3)


def prior_box(size: int = DEFAULT_SIZE, scale: float = DEFAULT_SCALE, shift_y: float = DEFAULT_SHIFT_Y) -> np.ndarray:
    """The face box a crop made by make_crop_track implies: side size/scale, centred (minus shift)."""
    face = size / scale
    cx, cy = size / 2.0, size / 2.0 - shift_y * face
    return np.array([cx - face / 2, cy - face / 2, cx + face / 2, cy + face / 2], dtype=np.float32)


def _default_verifier() -> FaceDetector:
    """dlib HOG on a 160 px copy of the crop: the ~140 px face of a 256 crop is ~86 px there, above
    HOG's 80 px minimum, at a quarter of the full-size cost (retries at 2x when it misses). Shared per process."""
    return get_detector("dlib_hog", max_side=160, upsample=0, retry_upsample=True)


def landmarks_on_crops(
    crops: np.ndarray,
    landmarker: str | LandmarkDetector = "dlib",
    boxes: np.ndarray | None = None,
    detector: str | FaceDetector | None = "default",
    scale: float = DEFAULT_SCALE,
    shift_y: float = DEFAULT_SHIFT_Y,
    min_iou: float = 0.4,
) -> np.ndarray:
    """Landmarks [T,68,2] float32 (crop px) of face crops, nan rows where there is no face.

    boxes [T,4] (crop px; e.g. ClipFaces.face_boxes for crops cut along the same crop track): used
    as given. Otherwise the face box implied by the crop framing (prior_box) is tried first: the
    detector (dlib HOG on a small copy by default) only confirms that a face is there; the prior box is
    kept when the detection agrees (IoU >= min_iou), else the detection's box is used; no detection
    -> nan. detector=None trusts the prior box on every crop (fastest, never nan)."""
    lm = get_landmarker(landmarker) if isinstance(landmarker, str) else landmarker
    T = len(crops)
    out = np.full((T, 68, 2), np.nan, dtype=np.float32)
    fit = getattr(lm, "landmarks_batch", None) or (lambda fs, bs: [lm.landmarks(f, b) for f, b in zip(fs, bs)])
    if boxes is not None:
        chosen: list[np.ndarray | None] = [np.asarray(b, dtype=np.float32) for b in boxes]
    else:
        chosen = []
    size = crops.shape[1] if T else DEFAULT_SIZE
    prior = prior_box(size, scale, shift_y)
    det = None if boxes is not None else _default_verifier() if detector == "default" else (
        get_detector(detector) if isinstance(detector, str) else detector)
    for t in range(T if boxes is None else 0):
        box: np.ndarray | None = prior
        if det is not None:
            found = det.detect(crops[t])
            if len(found) == 0:
                chosen.append(None)
                continue
            iou = box_iou(found, prior[None])[:, 0]
            best = int(np.argmax(iou))
            box = prior if iou[best] >= min_iou else found[int(np.argmax(
                (found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1])))]
        chosen.append(box)
    for t, pts in enumerate(fit(crops, chosen)):  # one batched network pass for FAN (landmarks_batch)
        if pts is not None:
            out[t] = pts
    return out


def tracked_face_boxes(faces: object, n: int) -> np.ndarray | None:
    """The ground truth's face-track boxes [n,4] (full-frame px) for ClipInput.face_boxes: the tracked boxes
    before the track's own 5-frame median (raw_boxes) when kept, since syncnet_python's crop_video
    (metrics/syncnet_crop.py) applies its own 13-frame median; else the smoothed boxes; None when `faces` carries no track (stand-ins)."""
    track = getattr(faces, "track", None)
    if track is None:
        return None
    raw = getattr(track, "raw_boxes", None)
    boxes = np.asarray(raw if raw is not None else track.boxes, dtype=np.float64)
    return boxes[:n, :4]
