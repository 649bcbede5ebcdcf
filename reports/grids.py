"""Comparison grids (rows = ground truth + methods, columns = frames; face crops with an enlarged mouth
strip, as the paper's Fig. 6) and side-by-side mp4s with the driving audio. Generated panels are labelled."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from harness.faces.clip import clip_faces
from harness.faces.crop import crop_frames
from harness.media import read_audio, read_video, write_video
from reports.load import RunData

REFERENCE_ROW = "ground_truth"
MOUTH = slice(48, 68)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


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


def comparison_grid(run: RunData, clip_id: str, setting: str, out_path: Path, columns: int = 6,
                    methods: list[str] | None = None) -> Path | None:
    """Write a PNG grid for one clip; None when the run has no videos for it."""
    videos = _clip_videos(run, clip_id, setting, methods)
    if not videos:
        return None
    ref_name = next(iter(videos))
    ref = read_video(videos[ref_name], fps=None)
    faces = clip_faces(ref)
    idx = _frame_indices(len(ref.frames), columns)
    mx1, my1, mx2, my2 = _mouth_box(faces.landmarks, faces.crop_track.size)
    rows = []
    for m in videos:
        frames = ref.frames if m == ref_name else read_video(videos[m], fps=None).frames
        n = min(len(frames), len(faces.crop_track.boxes))
        crops = crop_frames(frames[:n], replace(faces.crop_track, boxes=faces.crop_track.boxes[:n]))
        tiles = []
        for i in idx:
            crop = crops[min(i, n - 1)]
            mouth = cv2.resize(crop[my1:my2, mx1:mx2], (crop.shape[1], crop.shape[1] * (my2 - my1) // max(mx2 - mx1, 1)),
                               interpolation=cv2.INTER_CUBIC)
            tiles.append(np.concatenate([crop, mouth], axis=0))
        label = m if m == REFERENCE_ROW else f"{m} (generated)"
        row = np.concatenate(tiles, axis=1)
        rows.append(_label(row, f"{label}  frames {idx}"))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = np.concatenate(rows, axis=0)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return out_path


def side_by_side(run: RunData, clip_id: str, setting: str, out_path: Path, height: int = 256,
                 methods: list[str] | None = None) -> Path | None:
    """One mp4 with every method's full frame side by side (labelled) and the driving audio."""
    videos = _clip_videos(run, clip_id, setting, methods)
    if not videos:
        return None
    order = list(videos)
    decoded = {m: read_video(videos[m], fps=25.0).frames for m in order}
    n = min(len(f) for f in decoded.values())
    panels = []
    for m in order:
        f = decoded[m][:n]
        w = int(round(f.shape[2] * height / f.shape[1])) // 2 * 2
        label = m if m == REFERENCE_ROW else f"{m} (generated)"
        panels.append(np.stack([_label(cv2.resize(x, (w, height), interpolation=cv2.INTER_AREA), label) for x in f]))
    frames = np.concatenate(panels, axis=2)
    if frames.shape[2] % 2:
        frames = frames[:, :, :-1]
    audio = read_audio(videos[order[-1]], 16000)
    return write_video(out_path, frames, fps=25.0, audio=audio[: n * 640], sample_rate=16000)
