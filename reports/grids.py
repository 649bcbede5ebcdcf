"""Comparison grids (rows = ground truth + methods, columns = frames; face crops with an enlarged mouth
strip, as the paper's Fig. 6) and side-by-side mp4s with the driving audio. Generated panels are labelled
with a caption strip outside the picture. Stored generated videos carry their GENERATED label in a band
below the frame (harness.core.labels.label_frames): everything here works on the top HxW region only."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from harness.core.faces.clip import clip_faces
from harness.core.labels import LABEL_BAND
from harness.core.faces.crop import crop_frames
from harness.core.media import Video, read_audio, read_video, write_video
from reports.load import RunData
from reports.tables import is_reference

REFERENCE_ROW = "ground_truth"
MOUTH = slice(48, 68)


CAPTION_H = 18


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    """img with a black caption strip added ABOVE it (never drawn over the picture, so never over a face)."""
    strip = np.zeros((CAPTION_H, img.shape[1], 3), dtype=np.uint8)
    cv2.putText(strip, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, img], axis=0)


def frame_region(frames: np.ndarray, height: int | None) -> np.ndarray:
    """The top height x W picture of stored frames, without the label band a generated video has below it.
    height=None (no unlabelled reference to read it from): drop the band when the bottom rows are one."""
    if height is None:
        h = frames.shape[1] - LABEL_BAND
        tail = frames[:, h:]
        looks_like_band = h > 0 and float(np.median(tail)) <= 16 and tail.max() > 128
        height = h if looks_like_band else frames.shape[1]
    return frames[:, :height]


def _mouth_box(landmarks: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """A fixed mouth window (x1, y1, x2, y2) in crop pixels from the reference landmarks (median over frames)."""
    pts = landmarks[:, MOUTH].reshape(-1, 2)
    pts = pts[~np.isnan(pts).any(axis=1)]
    if len(pts) == 0:
        return size // 4, size * 5 // 8, size * 3 // 4, size * 7 // 8
    cx, cy = np.median(pts, axis=0)
    w = max(np.percentile(pts[:, 0], 95) - np.percentile(pts[:, 0], 5), size * 0.2) * 1.4
    h = w / 2.0
    x1, y1 = int(np.clip(cx - w / 2, 0, size - 2)), int(np.clip(cy - h / 2, 0, size - 2))
    return x1, y1, int(min(x1 + w, size)), int(min(y1 + h, size))


def _frame_indices(n: int, columns: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, max(n - 1, 0), columns)})


def _clip_videos(run: RunData, clip_id: str, setting: str, methods: list[str] | None) -> dict[str, Path]:
    """The run's stored videos of one clip, ground truth first (the reference row), then the methods."""
    found = {m: run.video(m, setting, clip_id) for m in (methods or run.methods())}
    found = {m: p for m, p in found.items() if p.exists()}
    order = ([REFERENCE_ROW] if REFERENCE_ROW in found else []) + [m for m in found if m != REFERENCE_ROW]
    return {m: found[m] for m in order}


def _decoded(run: RunData, videos: dict[str, Path], fps: float | None) -> dict[str, Video]:
    """Each method's video, frames cut to the picture (top HxW, H = an unlabelled reference video's height)."""
    raw = {m: read_video(p, fps=fps) for m, p in videos.items()}
    refs = [v.frames.shape[1] for m, v in raw.items() if is_reference(run, m)]
    height = min(refs) if refs else None
    return {m: v if is_reference(run, m) else replace(v, frames=frame_region(v.frames, height)) for m, v in raw.items()}


def _title(run: RunData, m: str) -> str:
    return m if is_reference(run, m) else f"{m} (generated)"


def comparison_grid(run: RunData, clip_id: str, setting: str, out_path: Path, columns: int = 6,
                    methods: list[str] | None = None) -> Path | None:
    """Write a PNG grid for one clip; None when the run has no videos for it."""
    videos = _clip_videos(run, clip_id, setting, methods)
    if not videos:
        return None
    decoded = _decoded(run, videos, fps=None)
    ref = decoded[next(iter(videos))]
    faces = clip_faces(ref)
    idx = _frame_indices(len(ref.frames), columns)
    mx1, my1, mx2, my2 = _mouth_box(faces.landmarks, faces.crop_track.size)
    rows = []
    for m in videos:
        frames = decoded[m].frames
        n = min(len(frames), len(faces.crop_track.boxes))
        crops = crop_frames(frames[:n], replace(faces.crop_track, boxes=faces.crop_track.boxes[:n]))
        tiles = []
        for i in idx:
            crop = crops[min(i, n - 1)]
            mouth = cv2.resize(crop[my1:my2, mx1:mx2], (crop.shape[1], crop.shape[1] * (my2 - my1) // max(mx2 - mx1, 1)),
                               interpolation=cv2.INTER_CUBIC)
            tiles.append(np.concatenate([crop, mouth], axis=0))
        rows.append(_caption(np.concatenate(tiles, axis=1), f"{_title(run, m)}  frames {idx}"))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = np.concatenate(rows, axis=0)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return out_path


def side_by_side(run: RunData, clip_id: str, setting: str, out_path: Path, height: int = 256,
                 methods: list[str] | None = None) -> Path | None:
    """One mp4 with every method's full frame side by side (captioned above) and the driving audio."""
    videos = _clip_videos(run, clip_id, setting, methods)
    if not videos:
        return None
    order = list(videos)
    decoded = _decoded(run, videos, fps=25.0)
    n = min(len(v.frames) for v in decoded.values())
    panels = []
    for m in order:
        f = decoded[m].frames[:n]
        w = int(round(f.shape[2] * height / f.shape[1])) // 2 * 2
        title = _title(run, m)
        panels.append(np.stack([_caption(cv2.resize(x, (w, height), interpolation=cv2.INTER_AREA), title) for x in f]))
    frames = np.concatenate(panels, axis=2)
    if frames.shape[2] % 2:
        frames = frames[:, :, :-1]
    audio = read_audio(videos[order[-1]], 16000)
    return write_video(out_path, frames, fps=25.0, audio=audio[: n * 640], sample_rate=16000)
