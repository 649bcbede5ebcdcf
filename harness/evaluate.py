"""One clip, one setting, one method -> generated frames -> metric values (the glue between the modules).

Per task: load the source frames (frame_range at 25 fps) and the driving audio (own speech in
reconstruction; the drive_audio / drive_clip speech in cross_audio, cut to the source length), let the
method generate, crop the generated frames with the GROUND TRUTH's crop track, and run every metric
that applies to the setting. Ground-truth work (media, face track, crops, landmarks) is done once per
clip and reused by every method; generated frames are cached per method fingerprint, so a rerun or a
resumed run does not regenerate. Nothing here raises for a bad clip: the outcome says what failed.
"""
from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.cache import Cache, default_cache, make_key
from harness.core.errors import BenchError, ManifestError
from harness.core.faults import fault_point
from harness.core.labels import label_frames
from harness.core.methods import Method, MethodInput
from harness.metric_feed import MetricFeed, fed_in_chunks
from metrics.base import ClipInput, Metric

GENERATED_VERSION = "gen-1"
def metric_applies(metric: Metric, setting: str) -> bool:
    """Cross-audio has no pixel ground truth: per-clip metrics that need it are skipped there.
    Split-level ones (FID) compare against the real crops' distribution, which is still valid."""
    return not (setting == "cross_audio" and "ground_truth" in metric.needs and not metric.split_level)


@dataclass
class ClipTask:
    """What to evaluate: picklable, so it can travel to a Ray worker."""

    method: str
    setting: str
    clip_id: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.method, self.setting, self.clip_id)


@dataclass
class ClipOutcome:
    """A finished (or failed) task: the store record, split-level states and the encoded video."""

    record: dict[str, Any]
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    video: bytes | None = None


@dataclass
class EvalSpec:
    """Everything a (possibly remote) worker needs to rebuild the evaluator: names and arguments, no objects."""

    methods: dict[str, dict[str, Any]]  # name -> constructor kwargs
    metrics: dict[str, dict[str, Any]]  # name -> resolved constructor kwargs (Metric.config()); a list = no kwargs
    clips: dict[str, Any]  # clip_id -> ClipEntry (all clips of the split, for drive_clip lookups)
    root: str
    fps: float = 25.0
    sample_rate: int = 16000
    device: str = "cpu"
    batch_size: int = 32
    write_videos: bool = True
    face_detector: str = "dlib"  # run --face-detector: the ground truth's tracking detector (faces/tracking.py)
    plugins: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # REALTALK_BENCH_* to export in workers

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, dict):  # older callers pass names only
            self.metrics = {n: {} for n in self.metrics}

    def token(self) -> str:
        import hashlib
        import json

        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str).encode()).hexdigest()


STREAM_ABOVE_BYTES = 1024 ** 3  # a clip whose decoded frames exceed this is decoded in chunks (StreamedFrames)
STREAM_CHUNK_FRAMES = 64  # generated frames per chunk on the streamed path (methods with generate_chunks) ...
STREAM_CHUNK_BYTES = 48 * 1024 ** 2  # ... at most this much of them (8 frames of 1080p): a chunk is held several
# times over (the method's, its crops' source, the video encoder's input), so its size adds to the peak


def stream_chunk_frames(frame_shape: tuple[int, ...]) -> int:
    """Generated frames per chunk for frames of frame_shape (H, W, 3): STREAM_CHUNK_FRAMES, fewer for big frames."""
    return max(1, min(STREAM_CHUNK_FRAMES, STREAM_CHUNK_BYTES // max(1, int(np.prod(frame_shape)))))


class ClipIO:
    """Media and face access through the real modules (tests may substitute a subclass).

    stream_above_bytes: a clip whose frames at fps would take more than this is opened with
    harness.core.media.open_video (frames decoded chunk by chunk: face tracking on one pass, crops cut on a
    second, only the 256x256 crops kept), so a 5-minute 1080p clip (43.5 GiB decoded) fits in a few GB."""

    def __init__(self, stream_above_bytes: int | None = None):
        self.stream_above_bytes = STREAM_ABOVE_BYTES if stream_above_bytes is None else int(stream_above_bytes)

    def load_media(self, entry: Any, root: str, fps: float, sample_rate: int) -> tuple[Any, np.ndarray]:
        from harness.core.splits import load_clip_media

        streamed = self._open_streamed(entry, root, fps, sample_rate)
        if streamed is not None:
            return streamed
        return load_clip_media(entry, root, fps=fps, sample_rate=sample_rate)

    def _open_streamed(self, entry: Any, root: str, fps: float, sample_rate: int) -> tuple[Any, np.ndarray] | None:
        """load_clip_media's result with StreamedFrames, for a clip too big to decode whole; None otherwise."""
        from harness.core.errors import MediaError
        from harness.core.media import align_audio, n_output_frames, open_video, probe_video, read_audio
        from harness.core.splits import resolve

        vpath = resolve(root, entry.video)
        try:
            info = probe_video(vpath)
        except MediaError:
            return None  # load_clip_media says what is wrong, in its words
        start, end = entry.frame_range if entry.frame_range else (0, None)
        n = n_output_frames(info, fps) - start if end is None else end - start
        if n * info.width * info.height * 3 <= getattr(self, "stream_above_bytes", STREAM_ABOVE_BYTES):
            return None
        video = open_video(vpath, fps=fps, start=start, max_frames=None if end is None else end - start)
        n = len(video.frames)
        if end is not None and n != end - start:
            raise ManifestError(f"clip {entry.clip_id}: frame_range {entry.frame_range} exceeds the video "
                                f"({start + n} frames at {fps:g} fps)", vpath)
        apath = resolve(root, entry.audio_path())
        audio = read_audio(apath, sample_rate=sample_rate, start_s=start / fps, duration_s=n / fps)
        return video, align_audio(audio, n, fps, sample_rate, path=apath)

    def read_audio(self, path: Path, sample_rate: int, start_s: float, duration_s: float | None) -> np.ndarray:
        from harness.core.media import read_audio

        return read_audio(path, sample_rate=sample_rate, start_s=start_s, duration_s=duration_s)

    face_detector: str = "dlib"  # run --face-detector, on `device` (set by the runner / Evaluator.from_spec)
    device: str = "cpu"

    def faces(self, video: Any) -> Any:
        from harness.core.faces.clip import clip_faces
        from harness.core.faces.tracking import tracking_detector

        return clip_faces(video, detector=tracking_detector(self.face_detector, self.device))

    def crop(self, frames: np.ndarray, crop_track: Any) -> np.ndarray:
        from harness.core.faces.crop import crop_frames

        return crop_frames(frames, crop_track)

    def write_video(self, path: Path, frames: np.ndarray, fps: float, audio: np.ndarray, sample_rate: int) -> None:
        from harness.core.media import write_video

        write_video(path, frames, fps=fps, audio=audio, sample_rate=sample_rate)

    def video_writer(self, path: Path, n_frames: int, fps: float, audio: np.ndarray, sample_rate: int) -> Any:
        """write_video chunk by chunk (harness.core.media.VideoWriter: the same file)."""
        from harness.core.media import VideoWriter

        return VideoWriter(path, n_frames, fps=fps, audio=audio, sample_rate=sample_rate)


def _slice_track(crop_track: Any, n: int) -> Any:
    if len(crop_track) == n:
        return crop_track
    return dataclasses.replace(crop_track, boxes=np.asarray(crop_track.boxes)[:n])


def _checked_chunks(method: Method, chunks: Any, exp: tuple[int, ...]) -> Any:
    """A method's generate_chunks, checked as generate's whole array is (uint8, the source frame size, n in all)."""
    got = 0
    for chunk in chunks:
        chunk = np.asarray(chunk)
        if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[1:] != exp[1:] or got + len(chunk) > exp[0]:
            raise BenchError(f"method {method.name} generated a chunk {chunk.dtype} {chunk.shape} (after {got} "
                             f"frames), expected uint8 frames of {exp[1:]}, {exp[0]} in all")
        got += len(chunk)
        yield chunk
    if got != exp[0]:
        raise BenchError(f"method {method.name} generated {got} frames, expected {exp[0]}")


def _err(exc: BaseException) -> str:
    if isinstance(exc, BenchError):
        return f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def video_shape(gt: dict[str, Any]) -> str:
    shape = gt["video"].frames.shape
    return f"{shape[2]}x{shape[1]}"


class Evaluator:
    """Runs ClipTasks with instantiated methods and metrics; keeps the last clips' ground truth in memory."""

    def __init__(self, methods: dict[str, Method], metrics: dict[str, Metric], clips: dict[str, Any], root: str,
                 fps: float = 25.0, sample_rate: int = 16000, io_: ClipIO | None = None, cache: Cache | None = None,
                 write_videos: bool = True, gt_memo: int = 2):
        self.methods, self.metrics, self.clips = methods, metrics, clips
        self.root, self.fps, self.sample_rate = root, fps, sample_rate
        self.io = io_ or ClipIO()
        self.cache = cache if cache is not None else default_cache()
        self.write_videos = write_videos
        self._gt: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._gt_size = gt_memo
        from harness.core.faces.tracking import with_tracking

        track = getattr(self.io, "face_detector", "dlib")
        self._protocols = {n: with_tracking(m.protocol(), track).fingerprint() for n, m in metrics.items()}

    @classmethod
    def from_spec(cls, spec: EvalSpec, io_: ClipIO | None = None) -> "Evaluator":
        from harness.core.methods import get_method
        from metrics.base import get_metric

        for k, v in spec.env.items():
            os.environ.setdefault(k, v)
        from harness.plugins import load_plugins

        load_plugins(spec.plugins)
        methods = {n: get_method(kw.get("_method", n), **{k: v for k, v in kw.items() if k != "_method"})
                   for n, kw in spec.methods.items()}  # "_method": registry name when the key is a folder:NAME
        metrics = {n: get_metric(n, batch_size=spec.batch_size, device=spec.device, **kw)
                   for n, kw in spec.metrics.items()}
        io_ = io_ or ClipIO()
        io_.face_detector, io_.device = spec.face_detector, spec.device
        return cls(methods, metrics, spec.clips, spec.root, spec.fps, spec.sample_rate, io_=io_,
                   write_videos=spec.write_videos)

    # ground truth --------------------------------------------------------------------------------------
    def ground_truth(self, clip_id: str, setting: str) -> dict[str, Any]:
        """Source video + faces (shared by all methods), and the setting's driving audio."""
        key = (clip_id, setting)
        if key in self._gt:
            self._gt.move_to_end(key)
            return self._gt[key]
        entry = self.clips[clip_id]
        src = next((v for (c, _s), v in self._gt.items() if c == clip_id), None)
        t0 = time.perf_counter()
        if src is not None:
            video, own_audio, faces = src["video"], src["own_audio"], src["faces"]
            t_media = t_faces = 0.0
            said = src["input_warnings"]
        else:
            from harness.core.thread_warnings import recorded_warnings
            from metrics.compute import MIN_FRAMES

            # corrupt frames held, faces interpolated...; this thread's only (harness.prefetch runs this in another)
            with recorded_warnings(UserWarning) as caught:
                video, own_audio = self.io.load_media(entry, self.root, self.fps, self.sample_rate)
                if len(video.frames) < MIN_FRAMES:
                    from harness.core.errors import MediaError

                    raise MediaError(f"clip {clip_id}: {len(video.frames)} frame(s); at least {MIN_FRAMES} are "
                                     "needed to evaluate a clip", video.path)
                t_media = time.perf_counter() - t0
                t1 = time.perf_counter()
                faces = self.io.faces(video)
                t_faces = time.perf_counter() - t1
            said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        t2 = time.perf_counter()
        audio, audio_path, drive = self._driving_audio(entry, setting, len(video.frames), own_audio)
        spf = int(round(self.sample_rate / self.fps))
        n = min(len(video.frames), len(audio) // spf)
        if n <= 0:
            raise BenchError(f"clip {clip_id}: no frames to evaluate in {setting} (driving audio {len(audio)} samples)")
        gt = {"video": video, "own_audio": own_audio, "faces": faces, "audio": audio[: n * spf].astype(np.float32),
              "audio_path": audio_path, "drive": drive, "n_frames": n, "input_warnings": said,
              "timings": {"load_media_s": t_media, "faces_s": t_faces, "drive_audio_s": time.perf_counter() - t2}}
        self.remember_ground_truth(clip_id, setting, gt)
        return gt

    def remember_ground_truth(self, clip_id: str, setting: str, gt: dict[str, Any]) -> None:
        """Memoise a ground truth (also one prepared ahead in harness.prefetch's thread), the last gt_memo kept."""
        self._gt[(clip_id, setting)] = gt
        self._gt.move_to_end((clip_id, setting))
        while len(self._gt) > self._gt_size:
            self._gt.popitem(last=False)

    def _driving_audio(self, entry: Any, setting: str, n_src: int, own: np.ndarray) -> tuple[np.ndarray, Path, str]:
        from harness.core.paths import data_root

        root = data_root(self.root)
        if setting == "reconstruction":
            return own, root / entry.audio_path(), "own"
        if setting != "cross_audio":
            raise BenchError(f"unknown setting {setting!r}")
        dur = n_src / self.fps
        if entry.drive_audio:
            p = root / entry.drive_audio
            return self.io.read_audio(p, self.sample_rate, 0.0, dur), p, entry.drive_audio
        if entry.drive_clip:
            other = self.clips[entry.drive_clip]
            start = other.frame_range[0] / self.fps if other.frame_range else 0.0
            p = root / other.audio_path()
            return self.io.read_audio(p, self.sample_rate, start, dur), p, f"clip:{entry.drive_clip}"
        raise ManifestError(f"clip {entry.clip_id} has neither drive_audio nor drive_clip: no cross-audio pair")

    # generation ----------------------------------------------------------------------------------------
    def generated(self, method: Method, task: ClipTask, gt: dict[str, Any]) -> tuple[np.ndarray, bool]:
        """Generated frames for the task, from the cache when this exact model already made them."""
        entry = self.clips[task.clip_id]
        video, n = gt["video"], gt["n_frames"]
        # reference and precomputed methods are not cached: their frames are a cheap decode, and a precomputed
        # method's per-clip notes (length / alignment, Method.last_notes) come from generate() itself
        cacheable = method.kind not in ("reference", "precomputed") and self.cache.enabled
        streamed = getattr(video.frames, "chunks", None) is not None
        if cacheable and streamed:  # a clip decoded in chunks: its frames would make a multi-GB npz (43 GB/5 min)
            gt.setdefault("not_cached", {})[task.method] = (
                f"generated frames not cached: the clip is decoded in chunks ({n} frames of {video_shape(gt)}, "
                f"more than {self.io_stream_gb():.1f} GiB decoded)")
            cacheable = False
        key = None
        if cacheable:
            key = make_key("generated", GENERATED_VERSION, inputs=[video.path, gt["audio_path"]], method=method.name,
                           fingerprint=method.fingerprint(), clip_id=task.clip_id, setting=task.setting,
                           frame_range=entry.frame_range, n_frames=n, fps=self.fps, sample_rate=self.sample_rate,
                           drive=gt["drive"])
            p = self.cache.file_path(key, ".npz")
            if p.exists():
                try:
                    with np.load(p, allow_pickle=False) as z:
                        return z["frames"], True
                except (OSError, ValueError, KeyError, EOFError):
                    p.unlink(missing_ok=True)
        chunked = getattr(method, "generate_chunks", None)
        if chunked is not None and streamed and key is None:
            inp = MethodInput(clip_id=task.clip_id, setting=task.setting, source_video=Path(video.path),
                              source_frames=video.frames, audio=gt["audio"], n_frames=n, fps=self.fps,
                              sample_rate=self.sample_rate, audio_path=Path(gt["audio_path"]), workdir=None,
                              source_timestamps=getattr(video, "source_timestamps", None))
            size = stream_chunk_frames(tuple(video.frames.shape[1:]))
            return _checked_chunks(method, chunked(inp, size), (n, *video.frames.shape[1:])), False
        with tempfile.TemporaryDirectory(prefix="rtb-gen-") as wd:
            inp = MethodInput(clip_id=task.clip_id, setting=task.setting, source_video=Path(video.path),
                              source_frames=video.frames, audio=gt["audio"], n_frames=n, fps=self.fps,
                              sample_rate=self.sample_rate, audio_path=Path(gt["audio_path"]), workdir=Path(wd),
                              source_timestamps=getattr(video, "source_timestamps", None))
            frames = method.generate(inp)
            fault_point("generate")  # frames made, not yet cached (tests/test_crash_points.py)
        frames = np.asarray(frames)
        exp = (n, *video.frames.shape[1:])
        if frames.dtype != np.uint8 or frames.shape != exp:
            raise BenchError(f"method {method.name} returned {frames.dtype} {frames.shape}, expected uint8 {exp}")
        if key is not None:
            buf = io.BytesIO()
            np.savez_compressed(buf, frames=frames)
            from harness.core.fsutil import atomic_write_bytes

            atomic_write_bytes(self.cache.file_path(key, ".npz"), buf.getvalue())
        return frames, False

    # the task ------------------------------------------------------------------------------------------
    def run(self, task: ClipTask) -> ClipOutcome:
        t_start = time.perf_counter()
        method = self.methods[task.method]
        rec: dict[str, Any] = {"method": task.method, "setting": task.setting, "clip_id": task.clip_id,
                               "status": "failed", "error": None, "method_fingerprint": None,
                               "values": {}, "extra": {}, "protocols": {}, "metric_errors": {},
                               "skipped_metrics": {}, "timings": {}}
        try:
            rec["method_fingerprint"] = method.fingerprint()
            entry = self.clips[task.clip_id]
            rec["frame_range"] = list(entry.frame_range) if entry.frame_range else None
            gt = self.ground_truth(task.clip_id, task.setting)
            rec["timings"].update(gt["timings"])
            gt["timings"] = {k: 0.0 for k in gt["timings"]}  # counted once, on the first method
            n = gt["n_frames"]
            rec["n_frames"], rec["drive"] = n, gt["drive"]
            if gt.get("input_warnings"):
                rec["input_warnings"] = list(gt["input_warnings"])  # what was held / interpolated, per clip
            t0 = time.perf_counter()
            method.last_notes = {}
            frames, from_cache = self.generated(method, task, gt)
            rec["timings"]["generate_s"] = time.perf_counter() - t0
            if method.last_notes:
                rec["method_notes"] = dict(method.last_notes)
            rec["generated_from_cache"] = from_cache
            t0 = time.perf_counter()
            from harness.core.faces.clip import tracked_face_boxes

            faces = gt["faces"]
            track = _slice_track(faces.crop_track, n)
            streamed = not isinstance(frames, np.ndarray)
            video_bytes = None
            boxes = tracked_face_boxes(faces, n)  # SyncNet's own crops (metrics/syncnet_crop.py)
            gen_full: Any = None if streamed else np.asarray(frames)[:n]
            feed = None
            if streamed:  # chunks: crops cut and the video written as they come; full frames never all in memory
                sync = self._sync_cropper(task.setting, boxes)  # SyncNet's 224 crops cut as the chunks pass
                gt_all = np.asarray(faces.crops)
                # metrics with a chunked path score each chunk's crops as they are cut (harness/metric_feed.py);
                # the generated crops are collected only for the others (1.5 GB per 7500 crops)
                runs = {k: m for k, m in self.metrics.items()
                        if self._not_run(m, task.setting, gt, n, streamed, sync is not None) is None}
                fed = {k: m for k, m in runs.items() if fed_in_chunks(m)}
                if fed:
                    feed = MetricFeed(fed, ClipInput(
                        clip_id=task.clip_id, generated=np.empty((0, *gt_all.shape[1:]), np.uint8),
                        ground_truth=gt_all[:n], audio=gt["audio"], identity=gt_all[0], fps=self.fps,
                        sample_rate=self.sample_rate, face_boxes=boxes), gt_all[:n])
                gen_crops, video_bytes = self._consume_chunks(frames, track, gt["audio"], method.kind != "reference",
                                                              rec, gt_all, sync, feed, collect=len(fed) < len(runs))
                gen_full = sync.result() if sync is not None else None
            else:
                gen_crops = self.io.crop(frames, track)
            rec["timings"]["crop_s"] = time.perf_counter() - t0 - (feed.total_s if feed is not None else 0.0)
            if streamed and method.last_notes:  # chunks: a method's notes are complete once they are consumed
                rec["method_notes"] = dict(method.last_notes)
            if task.method in gt.get("not_cached", {}):
                rec["generated_not_cached"] = gt["not_cached"][task.method]
            clip = ClipInput(clip_id=task.clip_id, generated=gen_crops, ground_truth=np.asarray(faces.crops)[:n],
                             audio=gt["audio"], identity=np.asarray(faces.crops)[0], fps=self.fps,
                             sample_rate=self.sample_rate, generated_full=gen_full, face_boxes=boxes)
            states: dict[str, dict[str, np.ndarray]] = {}
            rec["timings"]["metrics"] = {}
            for name, metric in self.metrics.items():
                why = self._not_run(metric, task.setting, gt, n, streamed, gen_full is not None)
                if why is not None:
                    rec[why[0]][name] = why[1]
                    continue
                t0 = time.perf_counter()
                fault_point("metric")
                try:
                    if feed is not None and name in feed.metrics:  # scored chunk by chunk: the result at the end
                        t0 -= feed.seconds[name]
                        res = feed.finish(name)
                        rec["values"][name] = {k: float(v) for k, v in res.values.items()}
                        if res.extra:
                            rec["extra"][name] = res.extra
                    elif metric.split_level:
                        states[name] = {k: np.asarray(v) for k, v in metric.clip_state(clip).items()}
                    else:
                        res = metric.compute_clip(clip)
                        rec["values"][name] = {k: float(v) for k, v in res.values.items()}
                        if res.extra:
                            rec["extra"][name] = res.extra
                    rec["protocols"][name] = self._protocols[name]
                except Exception as exc:  # noqa: BLE001 - one metric failing must not lose the others
                    rec["metric_errors"][name] = _err(exc)
                rec["timings"]["metrics"][name] = time.perf_counter() - t0
            if self.write_videos and not streamed:
                t0 = time.perf_counter()
                try:
                    video_bytes = self._encode(frames, gt["audio"], label=method.kind != "reference")
                except Exception as exc:  # noqa: BLE001 - the values stand without the video
                    rec["video_error"] = _err(exc)
                rec["timings"]["write_video_s"] = time.perf_counter() - t0
            rec["status"] = "ok"
            rec["timings"]["total_s"] = time.perf_counter() - t_start
            return ClipOutcome(rec, states, video_bytes)
        except Exception as exc:  # noqa: BLE001 - a failed clip is recorded and the run goes on
            rec["error"] = _err(exc)
            rec["timings"]["total_s"] = time.perf_counter() - t_start
            return ClipOutcome(rec)

    @staticmethod
    def _not_run(metric: Metric, setting: str, gt: dict[str, Any], n: int, streamed: bool, has_full: bool
                 ) -> tuple[str, str] | None:
        """Why a metric is not run on this clip, as (record field, reason): skipped (not defined in the setting,
        no speech) or an error (a streamed clip without the full frames it needs); None: it runs."""
        from metrics.compute import silent

        if not metric_applies(metric, setting):
            return "skipped_metrics", f"needs pixel ground truth, not defined in {setting}"
        if "audio" in metric.needs and silent(gt["audio"]):  # no speech: no sync to measure
            return "skipped_metrics", f"needs speech: {silent(gt['audio'])}"
        if streamed and "full_frames" in metric.needs and not has_full:
            return "metric_errors", (
                f"needs the full generated frames and the face boxes; a clip decoded in chunks ({n} frames "
                f"of {video_shape(gt)}) keeps neither without a face track")
        return None

    def io_stream_gb(self) -> float:
        return getattr(self.io, "stream_above_bytes", STREAM_ABOVE_BYTES) / 1024 ** 3

    def _sync_cropper(self, setting: str, boxes: np.ndarray | None) -> Any:
        """A metrics.syncnet_crop.SyncNetCropper when a metric of this setting cuts its own crops from the full
        frames (SyncNet) and the face boxes are known; None otherwise."""
        if boxes is None or not any("full_frames" in m.needs and metric_applies(m, setting)
                                    for m in self.metrics.values()):
            return None
        from metrics.syncnet_crop import SyncNetCropper

        return SyncNetCropper(boxes)

    def _consume_chunks(self, chunks: Any, track: Any, audio: np.ndarray, label: bool, rec: dict[str, Any],
                        gt_crops: np.ndarray | None = None, sync: Any = None, feed: MetricFeed | None = None,
                        collect: bool = True) -> tuple[np.ndarray | None, bytes | None]:
        """Generated crops (cut along the ground truth's crop track; None unless collect) and, with write_videos,
        the mp4 bytes, from a method's frame chunks: one chunk of full frames in memory at a time; each chunk's
        crops go to the feed's metrics as they are cut. A failing video write is recorded (video_error) and the
        values stand, as on the whole-array path."""
        n = len(track)
        crops: np.ndarray | None = None
        pos = 0
        video_bytes = None
        t_write = 0.0
        with tempfile.TemporaryDirectory(prefix="rtb-vid-") as d:
            path = Path(d) / "generated.mp4"
            writer = self.io.video_writer(path, n, self.fps, audio, self.sample_rate) if self.write_videos else None
            try:
                crops, pos, writer, t_write = self._crop_chunks(chunks, track, n, writer, label, rec, gt_crops, sync,
                                                                feed, collect)
            except BaseException as exc:
                rec.pop("_t_write", None)
                if writer is not None:  # close the half-written file (removed with the temp folder)
                    writer.__exit__(type(exc), exc, None)
                raise
            if writer is not None:
                t1 = time.perf_counter()
                try:
                    writer.__exit__(None, None, None)  # renamed into place
                    video_bytes = path.read_bytes()
                except Exception as exc:  # noqa: BLE001
                    rec["video_error"] = _err(exc)
                t_write += time.perf_counter() - t1
        if self.write_videos:
            rec["timings"]["write_video_s"] = t_write
        if pos == 0 or (collect and crops is None):
            raise BenchError("method generated no frames")
        return crops, video_bytes

    def _crop_chunks(self, chunks: Any, track: Any, n: int, writer: Any, label: bool, rec: dict[str, Any],
                     gt_crops: np.ndarray | None = None, sync: Any = None, feed: MetricFeed | None = None,
                     collect: bool = True) -> tuple[np.ndarray | None, int, Any, float]:
        """(crops, frames seen, the writer or None once it failed, seconds writing) over a method's chunks; each
        chunk's crops go to the feed first. collect=False: no crops kept (None; every metric is fed). While
        the crops equal the ground truth's (a method replaying the source), the ground truth's array is returned
        instead of a second copy (1.5 GB per 7500 crops)."""
        crops: np.ndarray | None = None
        same = collect and gt_crops is not None and len(gt_crops) >= n
        pos = 0
        for chunk in chunks:
            if sync is not None:
                sync.add(chunk)
            part = dataclasses.replace(track, boxes=np.asarray(track.boxes)[pos:pos + len(chunk)])
            c = self.io.crop(chunk, part)
            if feed is not None:
                feed.update(c)
            if not collect:
                pos += len(chunk)
                if writer is not None:
                    writer = self._write_chunk(writer, chunk, label, rec)
                continue
            if same and np.array_equal(c, gt_crops[pos:pos + len(c)]):
                pos += len(chunk)
                if writer is not None:
                    writer = self._write_chunk(writer, chunk, label, rec)
                continue
            if crops is None:
                crops = np.empty((n, *c.shape[1:]), dtype=np.uint8)
                if same:
                    crops[:pos] = gt_crops[:pos]
                same = False
            crops[pos:pos + len(chunk)] = c
            if writer is not None:
                writer = self._write_chunk(writer, chunk, label, rec)
            pos += len(chunk)
        if same and pos == n:
            crops = gt_crops if len(gt_crops) == n else gt_crops[:n]
        return crops, pos, writer, rec.pop("_t_write", 0.0)

    def _write_chunk(self, writer: Any, chunk: np.ndarray, label: bool, rec: dict[str, Any]) -> Any:
        """Append a chunk to the video; the writer, or None once it failed (video_error: the values stand)."""
        t1 = time.perf_counter()
        try:
            writer.write(label_frames(chunk) if label else chunk)
        except Exception as exc:  # noqa: BLE001 - the values stand without the video
            rec["video_error"] = _err(exc)
            writer.__exit__(type(exc), exc, None)
            writer = None
        rec["_t_write"] = rec.get("_t_write", 0.0) + time.perf_counter() - t1
        return writer

    def _encode(self, frames: np.ndarray, audio: np.ndarray, label: bool = True) -> bytes | None:
        """The method's video with the driving audio muxed, as mp4 bytes; frames synthesised by a model carry
        a GENERATED label in a band below the frame (label_frames; reference methods replay real frames and
        are not labelled)."""
        with tempfile.TemporaryDirectory(prefix="rtb-vid-") as d:
            p = Path(d) / "generated.mp4"
            self.io.write_video(p, label_frames(frames) if label else frames, self.fps, audio, self.sample_rate)
            return p.read_bytes()
