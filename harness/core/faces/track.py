"""One face track per clip: detect (every frame or every k), link boxes by IoU, pick the subject,
fill short gaps, median-smooth each coordinate over time (as syncnet_python's crop_video does).

Missing faces are errors, not silent garbage: no face anywhere, or a gap longer than `max_gap`
frames, raises NoFaceError naming the clip and the frame ranges.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.signal import medfilt

from harness.core.errors import NoFaceError
from harness.core.faces.detect import FaceDetector, box_iou, get_detector


@dataclass
class FaceTrack:
    """The subject's face box on every frame. boxes: [T,4] float (x1,y1,x2,y2), smoothed;
    detected: [T] bool, True where the detector saw this face (else interpolated); raw_boxes: before smoothing."""

    boxes: np.ndarray
    detected: np.ndarray
    raw_boxes: np.ndarray | None = None
    n_tracks: int = 1
    detector: str = ""

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class _Track:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)

    @property
    def last(self) -> np.ndarray:
        return self.boxes[-1]

    def area(self) -> float:
        b = np.asarray(self.boxes)
        return float(np.median((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))


def frame_ranges(idx: Sequence[int] | np.ndarray) -> str:
    """'3-7, 12, 20-24' for sorted frame indices (for error messages)."""
    idx = sorted(int(i) for i in idx)
    if not idx:
        return ""
    parts, start, prev = [], idx[0], idx[0]
    for i in idx[1:] + [None]:  # type: ignore[operator]
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def link_detections(dets: dict[int, np.ndarray], iou_threshold: float = 0.3, max_gap: int = 25) -> list[_Track]:
    """Greedy IoU linking in frame order: each box joins the track whose last box overlaps it most
    (IoU >= threshold, last seen <= max_gap frames ago), else starts a new track."""
    tracks: list[_Track] = []
    for f in sorted(dets):
        boxes = dets[f]
        if len(boxes) == 0:
            continue
        live = [t for t in tracks if f - t.frames[-1] <= max_gap + 1]
        taken: set[int] = set()
        if live:
            iou = box_iou(boxes, np.stack([t.last for t in live]))
            # best pairs first
            for bi, ti in sorted(np.ndindex(iou.shape), key=lambda p: -iou[p]):
                if iou[bi, ti] < iou_threshold or bi in taken or live[ti].frames[-1] == f:
                    continue
                live[ti].frames.append(f)
                live[ti].boxes.append(boxes[bi, :4].astype(np.float64))
                taken.add(bi)
        for bi in range(len(boxes)):
            if bi not in taken:
                tracks.append(_Track([f], [boxes[bi, :4].astype(np.float64)]))
    return tracks


def pick_track(tracks: list[_Track], pick: str | int = "largest", min_share: float = 0.5) -> _Track:
    """'largest': biggest median box among tracks seen on at least min_share of the longest track's
    detections (a one-frame false positive never wins); 'first': earliest start (ties: larger);
    int i: i-th track in order of appearance."""
    if isinstance(pick, (int, np.integer)) or (isinstance(pick, str) and pick.lstrip("-").isdigit()):
        order = sorted(tracks, key=lambda t: (t.frames[0], t.boxes[0][0]))
        return order[int(pick)]
    longest = max(len(t.frames) for t in tracks)
    eligible = [t for t in tracks if len(t.frames) >= min_share * longest]
    if pick == "largest":
        return max(eligible, key=lambda t: t.area())
    if pick == "first":
        return min(eligible, key=lambda t: (t.frames[0], -t.area()))
    raise ValueError(f"pick must be 'largest', 'first' or a track index, got {pick!r}")


def crossing_frames(chosen: _Track, other: _Track) -> list[int]:
    """Frames on which both tracks were seen and their boxes overlap (where a tracker can swap them)."""
    mine = dict(zip(chosen.frames, chosen.boxes))
    out = []
    for f, b in zip(other.frames, other.boxes):
        a = mine.get(f)
        if a is not None and box_iou(np.asarray(a)[None], np.asarray(b)[None])[0, 0] > 0:
            out.append(f)
    return out


def _warn_other_faces(chosen: _Track, tracks: list[_Track], pick: str | int, label: str,
                      min_share: float = 0.5) -> None:
    """Several faces seen for long (another person in the frame): say which one is scored, and on which frames
    their boxes cross (frames where the picked track may have jumped to the other face)."""
    import warnings

    longest = max(len(t.frames) for t in tracks)
    others = [t for t in tracks if t is not chosen and len(t.frames) >= min_share * longest]
    if not others:
        return
    cross = sorted({f for t in others for f in crossing_frames(chosen, t)})
    where = f"; the tracks cross at frames {frame_ranges(cross)}" if cross else "; the tracks never cross"
    warnings.warn(f"{label}: {len(others) + 1} faces tracked, scoring the {pick} one (median box "
                  f"{np.sqrt(chosen.area()):.0f} px{where})", stacklevel=3)


def smooth_boxes(boxes: np.ndarray, kernel: int = 5) -> np.ndarray:
    """Median filter each coordinate over time (edge-replicated, so the ends are not pulled to 0
    the way scipy's zero-padded medfilt would)."""
    if kernel <= 1 or len(boxes) < 2:
        return boxes.astype(np.float64).copy()
    k = int(kernel) | 1  # odd
    pad = k // 2
    padded = np.pad(boxes.astype(np.float64), ((pad, pad), (0, 0)), mode="edge")
    return np.stack([medfilt(padded[:, j], k)[pad:-pad] for j in range(boxes.shape[1])], axis=1)


def _detect_sampled(frames: Any, det: FaceDetector, sampled: list[int]) -> dict[int, np.ndarray]:
    """Detections on the sampled frames, in frame order. Frames that decode in chunks (harness.core.media.
    StreamedFrames: a long clip) are walked once, chunk by chunk, so no more than a chunk is ever decoded."""
    chunks = getattr(frames, "chunks", None)
    if chunks is None:
        return {f: det.detect(frames[f]) for f in sampled}
    want, dets, pos = set(sampled), {}, 0
    for chunk in chunks():
        for j in range(len(chunk)):
            if pos + j in want:
                dets[pos + j] = det.detect(chunk[j])
        pos += len(chunk)
    return dets


def track_faces(
    frames: np.ndarray | Sequence[np.ndarray],
    detector: FaceDetector | str = "dlib_hog",
    every: int = 1,
    smooth: int = 5,
    pick: str | int = "largest",
    max_gap: int = 25,
    iou_threshold: float = 0.3,
    name: str | Path | None = None,
) -> FaceTrack:
    """Face track over frames [T,H,W,3] (RGB uint8, or StreamedFrames). Detects on frames 0, every, 2*every, ... and the
    last one; boxes between detections are linearly interpolated, as are gaps up to max_gap frames
    (a run longer than that, or a missing face at the ends longer than that, raises NoFaceError)."""
    det = get_detector(detector) if isinstance(detector, str) else detector
    T = len(frames)
    label = str(name) if name is not None else "frames"
    if T == 0:
        raise NoFaceError("no frames to detect faces in", label)
    every = max(1, int(every))
    sampled = sorted(set(range(0, T, every)) | {T - 1})
    dets = _detect_sampled(frames, det, sampled)
    if not any(len(d) for d in dets.values()):
        raise NoFaceError(f"no face found in any of the {len(sampled)} frames searched (frames {frame_ranges(sampled)})"
                          f" with detector {det.name}", label)
    tracks = link_detections(dets, iou_threshold=iou_threshold, max_gap=max(max_gap, every))
    chosen = pick_track(tracks, pick)
    _warn_other_faces(chosen, tracks, pick, label)

    seen = np.array(chosen.frames)
    raw = np.stack(chosen.boxes)
    detected = np.zeros(T, dtype=bool)
    detected[seen] = True
    # gaps between consecutive sightings (and before the first / after the last one)
    limit = max(max_gap, every - 1)
    bad: list[int] = []
    edges = [-1, *seen.tolist(), T]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi - lo - 1 > limit:
            bad.extend(range(lo + 1, hi))
    if bad:
        raise NoFaceError(f"face missing for more than {max_gap} frames at frames {frame_ranges(bad)} "
                          f"(of {T}; detector {det.name})", label)
    t = np.arange(T)
    full = np.stack([np.interp(t, seen, raw[:, j]) for j in range(4)], axis=1)  # holds ends constant
    return FaceTrack(boxes=smooth_boxes(full, smooth), detected=detected, raw_boxes=full,
                     n_tracks=len(tracks), detector=det.name)
