"""Precomputed outputs as a method: score the videos another repository already wrote, without running it.

`--methods folder:NAME=DIR` (or `precomputed` with `dir=`). DIR holds `<setting>/<clip_id>.<mp4|avi|mov|mkv>`
or a folder `<setting>/<clip_id>/` of PNG frames; or a CSV (`csv=`, columns clip_id, setting (optional), path
relative to DIR) maps clips to files. What real repositories write is accepted:
- any frame rate / codec: decoded with harness.core.media.read_video at the run's fps (resampled by timestamps);
- full frames at another resolution with the source's aspect ratio: resized to the source resolution;
- square face crops (square and smaller than the source frame, or `crops=true`): each frame is aligned onto
  the ground-truth frame by a similarity transform between stable landmarks (brows, nose, eyes) and pasted
  over it, so the harness's ground-truth crop track later cuts the same face region.
Length rule: the output is cut / last-frame padded to n_frames; more than 10% of the frames missing fails the
clip. Every adjustment is recorded per clip in `last_notes` (stored as the record's `method_notes`).
Fingerprint = sha256 over every file in DIR, so a changed output is never taken for an old record.
"""
from __future__ import annotations

import csv as _csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.errors import MediaError
from harness.core.methods import Method, MethodInput, register

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")
MAX_MISSING = 0.10  # fraction of frames an output may lack before the clip fails
STABLE_POINTS = np.r_[17:48]  # iBUG brows, nose, eyes: they do not move with speech (the mouth does)
DETECT_SIDE = 256  # small crops are upscaled to this side for dlib's HOG detector (minimum face ~80 px)


def _fit_length(frames: np.ndarray, n: int, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Exactly n frames and the note saying what was done (trim to n; pad by holding the last frame)."""
    have = len(frames)
    note = {"frames_in_output": have, "frames_expected": n, "frames_padded": max(0, n - have),
            "frames_trimmed": max(0, have - n)}
    if have < n:
        if have == 0 or (n - have) > MAX_MISSING * n:
            raise MediaError(f"{n - have} of {n} frames missing (more than {MAX_MISSING:.0%})", path)
        frames = np.concatenate([frames, np.repeat(frames[-1:], n - have, axis=0)])
    return frames[:n], note


@register
class Precomputed(Method):
    """Frames read from a folder of videos some other code generated (not run here: no Runtime)."""

    name = "precomputed"
    kind = "precomputed"

    def __init__(self, dir: str | Path, name: str | None = None, csv: str | Path | None = None,
                 crops: bool | str = "auto", detector: str = "dlib_hog", landmarker: str = "dlib"):
        self.dir = Path(dir).expanduser()
        if not self.dir.is_dir():
            raise MediaError("precomputed output folder does not exist", self.dir)
        self.display_name = name or "precomputed"
        self.csv = Path(csv).expanduser() if csv else None
        if self.csv is not None and not self.csv.is_absolute() and not self.csv.exists():
            self.csv = self.dir / self.csv
        if self.csv is not None and not self.csv.is_file():
            raise MediaError("precomputed CSV does not exist", self.csv)
        self.crops = crops
        self.detector_name, self.landmarker_name = detector, landmarker
        self._fp: str | None = None
        self._map: dict[tuple[str | None, str], Path] | None = None
        self._faces: tuple[Any, Any] | None = None
        self.last_notes: dict[str, Any] = {}

    # identity ---------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 over (relative path, sha256) of every file in DIR (and the CSV): computed once per instance."""
        if self._fp is None:
            from harness.core.cache import file_digest

            h = hashlib.sha256(b"precomputed:v1\n")
            files = sorted(p for p in self.dir.rglob("*") if p.is_file())
            if self.csv is not None and self.dir not in self.csv.resolve().parents:
                files.append(self.csv)
            for p in files:
                rel = p.relative_to(self.dir).as_posix() if self.dir in p.parents else f"csv:{p.name}"
                h.update(f"{rel}\t{file_digest(p)}\n".encode())
            h.update(f"crops={self.crops}".encode())
            self._fp = "precomputed:" + h.hexdigest()
        return self._fp

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(name=self.display_name, dir=str(self.dir), csv=str(self.csv) if self.csv else None,
                 label="precomputed outputs read from a folder (not run here: no Runtime)")
        return d

    # lookup -----------------------------------------------------------------------------------------
    def _csv_map(self) -> dict[tuple[str | None, str], Path]:
        if self._map is None:
            self._map = {}
            if self.csv is not None:
                with open(self.csv, newline="") as f:
                    rows = list(_csv.DictReader(f))
                if rows and ("clip_id" not in rows[0] or "path" not in rows[0]):
                    raise MediaError("CSV needs columns clip_id, path (setting optional)", self.csv)
                for r in rows:
                    p = Path(r["path"])
                    self._map[(r.get("setting") or None, r["clip_id"])] = p if p.is_absolute() else self.dir / p
        return self._map

    def locate(self, setting: str, clip_id: str) -> Path:
        """The output for (setting, clip): CSV row, else <dir>/<setting>/<clip_id>.<ext> or a PNG folder."""
        if self.csv is not None:
            m = self._csv_map()
            p = m.get((setting, clip_id)) or m.get((None, clip_id))
            if p is None:
                raise MediaError(f"no row for clip {clip_id} (setting {setting})", self.csv)
            if not p.exists():
                raise MediaError(f"output for clip {clip_id} missing", p)
            return p
        base = self.dir / setting / clip_id
        for ext in VIDEO_EXTS:
            if base.with_name(clip_id + ext).is_file():
                return base.with_name(clip_id + ext)
        if base.is_dir() and any(base.glob("*.png")):
            return base
        raise MediaError(f"output for clip {clip_id} missing (also tried {', '.join(VIDEO_EXTS[1:])}, a PNG folder)",
                         base.with_name(clip_id + ".mp4"))

    # generation -------------------------------------------------------------------------------------
    def generate(self, inp: MethodInput) -> np.ndarray:
        import cv2

        path = self.locate(inp.setting, inp.clip_id)
        n = int(inp.n_frames)
        from harness.core.media import read_video_or_frames

        # n + 1 frames: enough to tell "longer"; a PNG folder holds one frame per output frame at the run's fps
        frames, notes = _fit_length(read_video_or_frames(path, inp.fps, max_frames=n + 1).frames, n, path)
        notes["file"] = str(path)
        src = np.asarray(inp.source_frames)
        sh, sw = src.shape[1:3]
        oh, ow = frames.shape[1:3]
        notes["output_size"] = [int(ow), int(oh)]
        crops = (oh == ow and oh < min(sh, sw)) if self.crops == "auto" else bool(self.crops)
        if crops:
            if oh != ow:
                raise MediaError(f"crops={self.crops}: output {ow}x{oh} is not square", path)
            frames, align = self._align_crops(frames, src, path)
            notes.update(mode="face_crops", **align)
        elif (oh, ow) != (sh, sw):
            if abs(ow / oh - sw / sh) > 0.01:
                raise MediaError(f"output {ow}x{oh} has another aspect ratio than the source {sw}x{sh} and is "
                                 f"not a square face crop", path)
            interp = cv2.INTER_AREA if ow > sw else cv2.INTER_LINEAR
            frames = np.stack([cv2.resize(f, (sw, sh), interpolation=interp) for f in frames])
            notes.update(mode="resized", resized_from=[int(ow), int(oh)])
        else:
            notes.update(mode="full_frames")
        self.last_notes = notes
        return np.ascontiguousarray(frames, dtype=np.uint8)

    def _face_models(self) -> tuple[Any, Any]:
        if self._faces is None:
            from harness.core.faces.detect import get_detector
            from harness.core.faces.landmarks import get_landmarker

            self._faces = (get_detector(self.detector_name), get_landmarker(self.landmarker_name))
        return self._faces

    def _points(self, frame: np.ndarray) -> np.ndarray | None:
        """68 landmarks of the largest face, in frame px (small crops are upscaled for the detector)."""
        import cv2

        det, lmk = self._face_models()
        s = max(1.0, DETECT_SIDE / max(frame.shape[:2]))
        img = cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC) if s > 1 else frame
        boxes = det.detect(img)
        if len(boxes) == 0:
            return None
        box = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
        pts = lmk.landmarks(img, box)
        return None if pts is None else pts / s

    def _align_crops(self, crops: np.ndarray, src: np.ndarray, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        """Paste each crop onto its ground-truth frame with the similarity transform (rotation, uniform scale,
        shift) that maps the crop's stable landmarks onto the ground truth's. A frame where either face is not
        found reuses the previous frame's transform (the first found one for leading frames)."""
        import cv2

        t = len(crops)
        mats: list[np.ndarray | None] = []
        resid: list[float] = []
        for i in range(t):
            a = self._points(crops[i])
            b = self._points(src[min(i, len(src) - 1)])
            m = None
            if a is not None and b is not None:
                m, _ = cv2.estimateAffinePartial2D(a[STABLE_POINTS], b[STABLE_POINTS], method=cv2.LMEDS)
                if m is not None:
                    proj = a[STABLE_POINTS] @ m[:, :2].T + m[:, 2]
                    resid.append(float(np.mean(np.linalg.norm(proj - b[STABLE_POINTS], axis=1))))
            mats.append(m)
        failed = sum(m is None for m in mats)
        if failed == t:
            raise MediaError(f"face crops: no frame could be aligned to the ground truth (no face found in "
                             f"{t} of {t} frames)", path)
        first = next(m for m in mats if m is not None)
        out = np.empty_like(src[:t]) if len(src) >= t else np.empty((t, *src.shape[1:]), np.uint8)
        h, w = src.shape[1:3]
        ones = np.full(crops.shape[1:3], 255, np.uint8)
        prev = first
        for i in range(t):
            m = mats[i] if mats[i] is not None else prev
            prev = m
            warped = cv2.warpAffine(crops[i], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            mask = cv2.warpAffine(ones, m, (w, h), flags=cv2.INTER_LINEAR)[..., None].astype(np.float32) / 255.0
            base = src[min(i, len(src) - 1)].astype(np.float32)
            out[i] = np.clip(warped * mask + base * (1.0 - mask) + 0.5, 0, 255).astype(np.uint8)
        scale = float(np.mean([np.hypot(*m[:, 0]) for m in mats if m is not None]))
        return out, {"align_residual_px": float(np.mean(resid)), "align_failed_frames": int(failed),
                     "align_scale": scale}
