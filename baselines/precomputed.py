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
generate_chunks gives the same frames and notes chunk by chunk (the output decoded chunkwise), for a long clip.
"""
from __future__ import annotations

import csv as _csv
import hashlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.core.errors import MediaError
from harness.core.methods import Method, MethodInput, register

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")
MAX_MISSING = 0.10  # fraction of frames an output may lack before the clip fails
STABLE_POINTS = np.r_[17:48]  # iBUG brows, nose, eyes: they do not move with speech (the mouth does)
DETECT_SIDE = 256  # small crops are upscaled to this side for dlib's HOG detector (minimum face ~80 px)


def _length_notes(have: int, n: int, path: Path) -> dict[str, Any]:
    """The length rule on the frame count alone (trim to n; pad by holding the last frame; more than
    MAX_MISSING missing fails), as the note saying what is done."""
    if have < n and (have == 0 or (n - have) > MAX_MISSING * n):
        raise MediaError(f"{n - have} of {n} frames missing (more than {MAX_MISSING:.0%})", path)
    return {"frames_in_output": have, "frames_expected": n, "frames_padded": max(0, n - have),
            "frames_trimmed": max(0, have - n)}


def _fit_length(frames: np.ndarray, n: int, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Exactly n frames and the note saying what was done (trim to n; pad by holding the last frame)."""
    note = _length_notes(len(frames), n, path)
    if len(frames) < n:
        frames = np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])
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
        path = self.locate(inp.setting, inp.clip_id)
        n = int(inp.n_frames)
        from harness.core.media import read_video_or_frames

        # n + 1 frames: enough to tell "longer"; a PNG folder holds one frame per output frame at the run's fps
        frames, notes = _fit_length(read_video_or_frames(path, inp.fps, max_frames=n + 1).frames, n, path)
        notes["file"] = str(path)
        src = np.asarray(inp.source_frames)
        mode = self._mode(frames.shape[1:3], src.shape[1:3], path, notes)
        if mode == "face_crops":
            aligner = _CropAligner(self, path)
            frames = aligner.flush(aligner.add(frames, src[:len(frames)]))
            notes.update(aligner.notes())
        elif mode == "resized":
            frames = _resize(frames, src.shape[1:3])
        self.last_notes = notes
        return np.ascontiguousarray(frames, dtype=np.uint8)

    def generate_chunks(self, inp: MethodInput, size: int) -> Iterator[np.ndarray]:
        """generate() chunk by chunk (the same frames and notes), for a long clip whose source decodes in chunks
        (harness.evaluate): the output file is decoded chunkwise too (harness.core.media.open_video, or the PNG
        folder's files a chunk at a time), so no whole clip of full frames is ever held. The length notes are
        set before the first chunk, the alignment notes once the last chunk is out."""
        from harness.core.frame_chunks import ForwardFrames, fitted_chunks

        path = self.locate(inp.setting, inp.clip_id)
        n = int(inp.n_frames)
        out = _open_output(path, inp.fps, n + 1)
        notes = _length_notes(len(out), n, path)
        notes["file"] = str(path)
        src = inp.source_frames
        mode = self._mode(tuple(out.shape[1:3]), tuple(src.shape[1:3]), path, notes)
        self.last_notes = notes
        aligner = _CropAligner(self, path) if mode == "face_crops" else None
        reader = ForwardFrames(src, size) if aligner is not None else None
        pos = 0
        for chunk in fitted_chunks(out, n, size):  # the raw output, trimmed / last-frame padded to n
            if aligner is not None and reader is not None:  # the source frames in order, the last held past the end
                done = aligner.add(chunk, reader.take([min(i, len(src) - 1) for i in range(pos, pos + len(chunk))]))
                pos += len(chunk)
            else:
                done = _resize(chunk, src.shape[1:3]) if mode == "resized" else chunk
            yield from _split(np.ascontiguousarray(done, dtype=np.uint8), size)
        if aligner is not None:
            aligner.flush(None)
            notes.update(aligner.notes())

    def _mode(self, out_hw: tuple[int, ...], src_hw: tuple[int, ...], path: Path, notes: dict[str, Any]) -> str:
        """full_frames / resized / face_crops for an output of out_hw against the source's src_hw (notes updated)."""
        oh, ow = (int(x) for x in out_hw)
        sh, sw = (int(x) for x in src_hw)
        notes["output_size"] = [ow, oh]
        crops = (oh == ow and oh < min(sh, sw)) if self.crops == "auto" else bool(self.crops)
        if crops:
            if oh != ow:
                raise MediaError(f"crops={self.crops}: output {ow}x{oh} is not square", path)
            notes["mode"] = "face_crops"
        elif (oh, ow) != (sh, sw):
            if abs(ow / oh - sw / sh) > 0.01:
                raise MediaError(f"output {ow}x{oh} has another aspect ratio than the source {sw}x{sh} and is "
                                 f"not a square face crop", path)
            notes.update(mode="resized", resized_from=[ow, oh])
        else:
            notes["mode"] = "full_frames"
        return notes["mode"]

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


def _resize(frames: np.ndarray, hw: tuple[int, ...]) -> np.ndarray:
    import cv2

    sh, sw = int(hw[0]), int(hw[1])
    interp = cv2.INTER_AREA if frames.shape[2] > sw else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (sw, sh), interpolation=interp) for f in frames])


def _split(frames: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(frames), size):
        yield frames[i:i + size]


class _PngFrames:
    """A PNG/JPG folder's frames, read a chunk of files at a time (read_video_or_frames' frames, unheld)."""

    def __init__(self, path: Path, max_frames: int):
        from harness.core.media import frame_image_files, read_frame_image

        self.path = path
        self.files = frame_image_files(path, max_frames)
        self.shape = (len(self.files), *read_frame_image(self.files[0]).shape)

    def __len__(self) -> int:
        return len(self.files)

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        from harness.core.media import read_frame_image

        stop = len(self) if stop is None else stop
        for i in range(start, stop, size):
            frames = [read_frame_image(f) for f in self.files[i:min(i + size, stop)]]
            if any(fr.shape != self.shape[1:] for fr in frames):
                raise MediaError("frame images of different sizes in the folder", self.path)
            yield np.stack(frames)


def _open_output(path: Path, fps: float, max_frames: int) -> Any:
    """The output's frames, decoded on demand: StreamedFrames for a video file, _PngFrames for a folder."""
    if path.is_dir():
        return _PngFrames(path, max_frames)
    from harness.core.media import open_video

    return open_video(path, fps=fps, max_frames=max_frames).frames


class _CropAligner:
    """Face crops pasted onto their ground-truth frames with the similarity transform (rotation, uniform scale,
    shift) that maps the crop's stable landmarks onto the ground truth's, fed chunk by chunk (the same frames as
    one call over the clip). A frame where either face is not found reuses the previous frame's transform; the
    leading frames before the first found one wait (their crops and source frames held; with a face in the
    first frames that is a chunk at most) and take the first found transform."""

    def __init__(self, method: "Precomputed", path: Path):
        self.method, self.path = method, path
        self.prev: np.ndarray | None = None
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.resid: list[float] = []
        self.scales: list[float] = []
        self.failed = 0
        self.total = 0

    def _matrix(self, crop: np.ndarray, src: np.ndarray) -> np.ndarray | None:
        import cv2

        a = self.method._points(crop)
        b = self.method._points(src)
        if a is None or b is None:
            return None
        m, _ = cv2.estimateAffinePartial2D(a[STABLE_POINTS], b[STABLE_POINTS], method=cv2.LMEDS)
        if m is not None:
            proj = a[STABLE_POINTS] @ m[:, :2].T + m[:, 2]
            self.resid.append(float(np.mean(np.linalg.norm(proj - b[STABLE_POINTS], axis=1))))
            self.scales.append(float(np.hypot(*m[:, 0])))
        return m

    @staticmethod
    def _paste(crop: np.ndarray, src: np.ndarray, m: np.ndarray) -> np.ndarray:
        import cv2

        h, w = src.shape[:2]
        ones = np.full(crop.shape[:2], 255, np.uint8)
        warped = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        mask = cv2.warpAffine(ones, m, (w, h), flags=cv2.INTER_LINEAR)[..., None].astype(np.float32) / 255.0
        return np.clip(warped * mask + src.astype(np.float32) * (1.0 - mask) + 0.5, 0, 255).astype(np.uint8)

    def add(self, crops: np.ndarray, src: np.ndarray) -> np.ndarray:
        """Aligned frames for what can be placed so far (crops[i] goes onto src[i], the last source frame held
        past its end)."""
        out = []
        for i in range(len(crops)):
            s = src[min(i, len(src) - 1)]
            m = self._matrix(crops[i], s)
            self.total += 1
            if m is None:
                self.failed += 1
                if self.prev is None:
                    self.pending.append((crops[i], s))
                    continue
                m = self.prev
            if self.pending:  # the first found transform, for the leading frames that waited
                out.extend(self._paste(c, ps, m) for c, ps in self.pending)
                self.pending = []
            self.prev = m
            out.append(self._paste(crops[i], s, m))
        return np.stack(out) if out else np.empty((0, *src.shape[1:]), np.uint8)

    def flush(self, frames: np.ndarray | None) -> np.ndarray:
        """The end of the clip: `frames` (the last add's output, or None); fails when no frame was aligned."""
        if self.prev is None:
            raise MediaError(f"face crops: no frame could be aligned to the ground truth (no face found in "
                             f"{self.total} of {self.total} frames)", self.path)
        return frames if frames is not None else np.empty((0, 0, 0, 3), np.uint8)

    def notes(self) -> dict[str, Any]:
        return {"align_residual_px": float(np.mean(self.resid)), "align_failed_frames": int(self.failed),
                "align_scale": float(np.mean(self.scales))}
