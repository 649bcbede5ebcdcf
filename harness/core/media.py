"""Video/audio I/O through PyAV: decode, resample to a fixed frame rate by timestamps, write H.264 + AAC.

Why timestamps and not frame indices: real clips are often variable-frame-rate (phone recordings,
`video-retalking/face/1.mp4`). Output frame i shows the last source frame whose presentation time is
<= i/fps (the first frame for i = 0), so every output frame is the picture a viewer saw at that
instant, and frame i stays aligned with audio samples [i*sr/fps, (i+1)*sr/fps) (640 at 25 fps, 16 kHz).

One timeline: times are seconds from the container's start, shared by the video and audio streams,
so a video stream that starts 33 ms in (as face/1.mp4 does) keeps its offset against the audio.

Audio resampling uses PyAV's AudioResampler (libswresample: rate conversion and the down-mix to mono),
not scipy, so a file's audio decodes and resamples in one pass.
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np

from harness.core.errors import MediaError
from harness.core.faults import fault_point
from harness.core.heap import keep_large_allocations_mapped

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
AUDIO_EXTS = (".wav", ".mp3", ".m4a", ".flac", ".aac", ".ogg")
_EPS = 1e-6  # seconds; absorbs float error when comparing pts with the output grid


@dataclass
class VideoInfo:
    path: Path
    width: int
    height: int
    duration: float  # seconds from the container start to the end of the last video frame
    avg_fps: float
    n_frames: int  # source frames (container header, else counted by demuxing)
    codec: str
    has_audio: bool
    variable_frame_rate: bool
    rotation: int = 0  # display rotation (degrees counter-clockwise) applied by read_video; width/height: as displayed


@dataclass
class Video:
    path: Path
    frames: np.ndarray  # uint8 RGB [T,H,W,3]
    fps: float
    timestamps: np.ndarray  # seconds, output grid i/fps
    source_timestamps: np.ndarray  # pts (s) of the source frame picked for each output frame
    info: VideoInfo
    corrupt_frames: int = 0  # source frames that failed to decode (the previous frame is held in their place)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise MediaError("file does not exist", path)
    if not path.is_file():
        raise MediaError("not a regular file", path)
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)", path)
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        why = getattr(exc, "strerror", None) or str(exc)  # str(exc) repeats the path
        raise MediaError(f"cannot open as media (truncated or not a media file?): {why}", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"unreadable: {exc}", path) from exc


def _origin(container: av.container.InputContainer) -> float:
    """Start of the shared timeline (s): the container's start time (min over streams)."""
    st = container.start_time
    return float(st) / av.time_base if st is not None else 0.0


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "no streams"
        raise MediaError(f"no video stream (found: {kinds}); an audio-only file was passed as video?", path)
    return container.streams.video[0]


def _stream_end(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """End time (s, container timeline) of a stream from its header, else from the container."""
    tb = stream.time_base
    if stream.duration and tb is not None:
        start = stream.start_time or 0
        return float((start + stream.duration) * tb)
    if container.duration:
        return _origin(container) + float(container.duration) / av.time_base
    return None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Stream facts from the headers (and a packet scan when the header lacks a frame count)."""
    p = Path(path)
    with _open(p) as c:
        v = _video_stream(c, p)
        origin = _origin(c)
        end = _stream_end(c, v)
        n_frames = int(v.frames or 0)
        pts: list[int] = []
        if n_frames == 0 or end is None:
            try:
                for pkt in c.demux(v):
                    if pkt.pts is not None and pkt.size:
                        pts.append(pkt.pts)
            except av.FFmpegError as exc:
                raise MediaError(f"cannot read packets: {exc}", p) from exc
            n_frames = n_frames or len(pts)
            if end is None and pts:
                step = (max(pts) - min(pts)) / max(len(pts) - 1, 1)
                end = float((max(pts) + step) * v.time_base)
        if end is None or n_frames == 0:
            raise MediaError("video stream has no frames or no duration", p)
        duration = end - origin
        if duration <= 0:
            raise MediaError(f"non-positive video duration {duration:.3f}s", p)
        stream_dur = end - float((v.start_time or 0) * v.time_base) if v.start_time is not None else duration
        avg = float(v.average_rate) if v.average_rate else n_frames / max(stream_dur, _EPS)
        nominal = v.base_rate or v.guessed_rate
        vfr = bool(nominal and abs(float(nominal) - avg) / float(nominal) > 0.01)
        return VideoInfo(
            path=p, width=int(v.codec_context.width), height=int(v.codec_context.height),
            duration=float(duration), avg_fps=avg, n_frames=n_frames, codec=v.codec_context.name,
            has_audio=bool(c.streams.audio), variable_frame_rate=vfr,
        )


def n_output_frames(info: VideoInfo, fps: float) -> int:
    """Frames a full decode at `fps` gives: round(duration * fps) (half up)."""
    return _round_half_up(info.duration * fps)


def read_video(path: str | os.PathLike, fps: float | None = 25.0, start: int = 0,
               max_frames: int | None = None) -> Video:
    """Decode RGB frames resampled to `fps` by presentation timestamps (fps=None: native frames).

    start/max_frames count OUTPUT frames. Raises MediaError when the file ends before its header says
    it should (a truncated file) or cannot be decoded.
    """
    p = Path(path)
    info = probe_video(p)
    if start < 0:
        raise MediaError(f"negative start frame {start}", p)
    if fps is None:
        with _open(p) as c:
            v = _video_stream(c, p)
            _threads(v)
            return _read_native(c, v, p, info, _origin(c), start, max_frames)
    end = _output_end(p, info, fps, start, max_frames)
    n = end - start
    out = np.empty((n, info.height, info.width, 3), dtype=np.uint8)
    src_ts = np.empty(n, dtype=np.float64)
    log = _DecodeLog()
    for k, (arr, t) in enumerate(_resampled(p, info, fps, start, end, log)):
        out[k] = arr
        src_ts[k] = t
    grid = np.arange(start, end, dtype=np.float64) / fps
    out, info = _upright(out, log.rot, info)
    return Video(path=p, frames=out, fps=float(fps), timestamps=grid, source_timestamps=src_ts, info=info,
                 corrupt_frames=len(log.bad))


def _output_end(p: Path, info: VideoInfo, fps: float, start: int, max_frames: int | None) -> int:
    total = n_output_frames(info, fps)
    if start >= total:
        raise MediaError(f"start frame {start} is past the end ({total} frames at {fps:g} fps)", p)
    return total if max_frames is None else min(total, start + max(int(max_frames), 0))


DECODE_THREADS = 0  # the video decoder's threads; 0: FFmpeg's choice (cores + 1). Tests set 1 and 3 to check that
# a corrupt frame is found, counted and timed the same whatever the thread count (see _DecodeLog)


@dataclass
class _DecodeLog:
    """What one decode pass learnt besides the pixels: the corrupt frames and the display rotation.

    A corrupt frame is a packet that produced no frame, or a frame FFmpeg flags as corrupt (dropped, so the
    previous frame is held, as for a rejected packet). Found by pts, not by where the decoder raised: with frame
    threads FFmpeg reports the error a few packets late (an intra-only clip corrupted at 0.60 s raised at 0.68 s
    with 3 threads), and with one thread it conceals the same frame and flags it instead of raising; counting
    only the exceptions missed it on a one-core machine. `bad` (source pts in s) is filled by finish()."""

    bad: list[float] = field(default_factory=list)
    rot: int | None = None
    packets: set[int] = field(default_factory=set)  # pts of the non-empty packets demuxed
    decoded: set[int] = field(default_factory=set)  # pts of the frames handed on
    errors: int = 0  # packets the decoder rejected (counted as corrupt when their pts is unknown)
    complete: bool = False  # the demuxer reached the end (False: the reader stopped early, or decoding failed)

    def reset(self) -> None:
        self.bad.clear()
        self.packets.clear()
        self.decoded.clear()
        self.errors, self.complete = 0, False

    def finish(self, tb: Fraction | None) -> None:
        """bad = the demuxed packets without a decoded frame; when decoding stopped early, only those before the
        last decoded frame (frames come out in presentation order, later ones were still in flight)."""
        missing = self.packets - self.decoded
        if not self.complete:
            last = max(self.decoded, default=None)
            missing = {q for q in missing if last is not None and q < last}
        self.bad[:] = [float(q * tb) if tb else math.nan for q in sorted(missing)]
        if not self.bad and self.errors:
            self.bad[:] = [math.nan] * self.errors


def _resampled(p: Path, info: VideoInfo, fps: float, start: int, end: int, log: _DecodeLog
               ) -> Iterator[tuple[np.ndarray, float]]:
    """(RGB frame as stored, pts of the source frame it shows) for output frames [start, end): the ONE decode
    loop behind read_video and StreamedFrames, so a chunked read gives the whole-file read's frames bit for bit.
    A held frame is yielded as the same array object (consumers copy). Raises MediaError as read_video."""
    n = end - start
    grid = np.arange(start, end, dtype=np.float64) / fps
    with _open(p) as c:
        v = _video_stream(c, p)
        _threads(v)
        origin = _origin(c)
        tb = v.time_base
        if start > 0:  # seek to the keyframe at or before the first needed instant
            target = int((grid[0] + origin) / tb) if tb else 0
            c.seek(max(target, 0), stream=v, backward=True, any_frame=False)
        k = 0  # next output slot
        prev: tuple[float, av.VideoFrame] | None = None
        prev_arr: np.ndarray | None = None
        last_pts = -math.inf
        try:
            for frame in _decode_frames(c, v, log):
                if frame.pts is None:
                    continue
                if log.rot is None:
                    log.rot = _rotation(frame)
                t = float(frame.pts * tb) - origin
                if t < last_pts - _EPS:  # out-of-order pts would break the 'last frame <= t' rule
                    continue
                last_pts = t
                if prev is None and start > 0 and t > grid[0] + _EPS:
                    # seek landed after the first instant we need: decode from the beginning instead
                    log.reset()
                    for i, item in enumerate(_resampled(p, info, fps, 0, end, log)):
                        if i >= start:
                            yield item
                    return
                while k < n and t > grid[k] + _EPS:
                    if prev is not None:
                        if prev_arr is None:
                            prev_arr = prev[1].to_ndarray(format="rgb24")
                        yield prev_arr, prev[0]
                    else:  # i = 0: the first frame
                        yield frame.to_ndarray(format="rgb24"), t
                    k += 1
                if k >= n:
                    break
                prev, prev_arr = (t, frame), None
        except av.FFmpegError as exc:
            if k == 0 and prev is None:
                raise MediaError(f"cannot decode video: {exc}", p) from exc
            # keep what decoded; the truncation check below decides
        while k < n and prev is not None:
            if prev_arr is None:
                prev_arr = prev[1].to_ndarray(format="rgb24")
            yield prev_arr, prev[0]
            k += 1
        if k < n:
            raise MediaError(f"no decodable video frames (needed {n})", p)
        log.finish(tb)
        _check_corrupt(p, log.bad, info, tb, origin)
        # truncated: the last decoded frame lies well before the instants we were asked for
        frame_dur = 1.0 / max(info.avg_fps, 1.0)
        if prev is not None and last_pts + 2 * frame_dur + 0.25 < grid[-1]:
            raise MediaError(
                f"truncated video: frames stop at {last_pts:.2f}s but the stream is {info.duration:.2f}s long",
                p)


STREAM_CHUNK_BYTES = 48 * 1024 ** 2  # decoded pixels per chunk of a streamed read (8 frames of 1080p; a chunk is
# held twice while it is handed on, and its size only sets how often Python loops, not the decode speed)


class StreamedFrames:
    """read_video's frames [T,H,W,3] uint8, decoded chunk by chunk on demand, so a long clip never holds all its
    full-resolution frames. chunks() is the bounded path; len/shape/dtype are free; [i] and [a:b] decode just
    that range (a seek); np.asarray() decodes everything (a consumer that is not chunk-aware stays correct, at
    read_video's memory). The first full pass records source_timestamps and corrupt_frames."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: Path, info: VideoInfo, fps: float, start: int, end: int, rot: int):
        self.path, self.info, self.fps, self.start, self.end, self.rot = path, info, float(fps), start, end, rot
        h, w = (info.width, info.height) if rot in (90, 270) else (info.height, info.width)
        self.shape = (end - start, h, w, 3)
        self.source_timestamps: np.ndarray | None = None
        self.corrupt_frames = 0

    def __len__(self) -> int:
        return self.shape[0]

    def chunk_size(self) -> int:
        return max(1, STREAM_CHUNK_BYTES // int(np.prod(self.shape[1:])))

    def chunks(self, size: int | None = None, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Upright frames [start, stop) (clip indices) in chunks of `size` (default: STREAM_CHUNK_BYTES)."""
        size = size or self.chunk_size()
        stop = len(self) if stop is None else min(int(stop), len(self))
        if stop <= start:
            return
        n = stop - start
        log = _DecodeLog()
        ts = np.empty(n, dtype=np.float64)
        buf = np.empty((min(size, n), *self.shape[1:]), dtype=np.uint8)
        k = j = 0
        for arr, t in _resampled(self.path, self.info, self.fps, self.start + start, self.start + stop, log):
            buf[j] = np.rot90(arr, k=self.rot // 90) if self.rot else arr
            ts[k] = t
            k, j = k + 1, j + 1
            if j == len(buf):
                yield buf[:j].copy()
                j = 0
        if j:
            yield buf[:j].copy()
        if start == 0 and stop == len(self):
            self.source_timestamps, self.corrupt_frames = ts, len(log.bad)

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in self.chunks():
            yield from chunk

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            i = int(idx) + (len(self) if idx < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"frame {idx} of {len(self)}")
            return next(self.chunks(1, i, i + 1))[0]
        if isinstance(idx, slice) and idx.step in (None, 1):
            a, b, _ = idx.indices(len(self))
            parts = list(self.chunks(None, a, b))
            return np.concatenate(parts) if parts else np.empty((0, *self.shape[1:]), np.uint8)
        return np.asarray(self)[idx]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.uint8)
        k = 0
        for chunk in self.chunks():
            out[k:k + len(chunk)] = chunk
            k += len(chunk)
        return out if dtype is None else out.astype(dtype)


def open_video(path: str | os.PathLike, fps: float = 25.0, start: int = 0, max_frames: int | None = None) -> Video:
    """read_video without decoding: a Video whose frames are StreamedFrames (same frames, decoded in chunks when
    iterated). Its source_timestamps / corrupt_frames are filled by the first full pass over frames.chunks()
    (until then source_timestamps is None). Opens the file and decodes its first frame (the display rotation),
    so a missing or unreadable file fails here, as read_video does."""
    import dataclasses

    p = Path(path)
    info = probe_video(p)
    if start < 0:
        raise MediaError(f"negative start frame {start}", p)
    end = _output_end(p, info, fps, start, max_frames)
    keep_large_allocations_mapped()  # frames decoded one after another must not fragment the heap
    log = _DecodeLog()
    first = _resampled(p, info, fps, start, start + 1, log)
    try:
        next(first)
    finally:
        first.close()
    rot = log.rot or 0
    frames = StreamedFrames(p, info, fps, start, end, rot)
    if rot:
        info = dataclasses.replace(info, width=frames.shape[2], height=frames.shape[1], rotation=rot)
    grid = np.arange(start, end, dtype=np.float64) / fps
    return StreamedVideo(path=p, frames=frames, fps=float(fps), timestamps=grid, source_timestamps=None,  # type: ignore[arg-type]
                         info=info)


@dataclass
class StreamedVideo(Video):
    """A Video whose frames are StreamedFrames (open_video): source_timestamps / corrupt_frames come from the
    frames' first full pass."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("source_timestamps", "corrupt_frames"):
            fr = object.__getattribute__(self, "frames")
            got = getattr(fr, name)
            if got is not None:
                return got
        return object.__getattribute__(self, name)


def _rotation(frame: av.VideoFrame) -> int:
    """The display matrix's rotation (degrees counter-clockwise, a multiple of 90) of a decoded frame; 0 if none."""
    try:
        r = int(round(float(frame.rotation or 0) / 90.0)) * 90
    except (AttributeError, TypeError, ValueError):
        return 0
    return r % 360


def _upright(frames: np.ndarray, rot: int | None, info: VideoInfo) -> tuple[np.ndarray, VideoInfo]:
    """Frames as a player shows them: the display rotation applied (a phone's portrait video stored sideways)."""
    if not rot:
        return frames, info
    import dataclasses

    up = np.ascontiguousarray(np.rot90(frames, k=rot // 90, axes=(1, 2)))
    return up, dataclasses.replace(info, width=int(up.shape[2]), height=int(up.shape[1]), rotation=rot)


MAX_CORRUPT = 0.10  # fraction of a clip's source frames that may fail to decode before the file is refused


def _threads(v: av.video.stream.VideoStream) -> None:
    v.thread_type = "AUTO"
    if DECODE_THREADS:
        v.codec_context.thread_count = DECODE_THREADS


def _decode_frames(c: av.container.InputContainer, v: av.video.stream.VideoStream, log: _DecodeLog):
    """Decoded frames packet by packet: a packet the decoder rejects (a corrupt frame mid-stream) is skipped, so
    the rest of the clip still decodes (c.decode() would stop there), and so is a frame FFmpeg flags as corrupt;
    `log` records the pts of packets and of frames handed on (its finish() names the corrupt ones)."""
    for pkt in c.demux(v):
        fault_point("decode")  # tests/test_crash_points.py
        if pkt.size and pkt.pts is not None:
            log.packets.add(pkt.pts)
        try:
            frames = pkt.decode()
        except av.InvalidDataError:
            log.errors += bool(pkt.size)
            continue
        for f in frames:
            if f.is_corrupt:
                continue
            if f.pts is not None:
                log.decoded.add(f.pts)
            yield f
    log.complete = True


def _check_corrupt(p: Path, bad: list[float], info: VideoInfo, tb: Fraction | None, origin: float) -> None:
    """Warn about frames that failed to decode (held: the previous frame shows); too many -> MediaError."""
    if not bad:
        return
    where = ", ".join(f"{t - origin:.2f}s" for t in bad[:5]) + (" ..." if len(bad) > 5 else "")
    if len(bad) > MAX_CORRUPT * max(info.n_frames, 1):
        raise MediaError(f"{len(bad)} of {info.n_frames} video frames are corrupt (more than {MAX_CORRUPT:.0%}; "
                         f"at {where})", p)
    warnings.warn(f"{p}: {len(bad)} corrupt video frame(s) at {where} not decodable; the previous frame is held "
                  "in their place", stacklevel=3)


def _read_native(c: av.container.InputContainer, v: av.video.stream.VideoStream, p: Path, info: VideoInfo,
                 origin: float, start: int, max_frames: int | None) -> Video:
    frames: list[np.ndarray] = []
    ts: list[float] = []
    i = 0
    log = _DecodeLog()
    rot: int | None = None
    try:
        for frame in _decode_frames(c, v, log):
            if frame.pts is None:
                continue
            if rot is None:
                rot = _rotation(frame)
            if i >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
                ts.append(float(frame.pts * v.time_base) - origin)
                if max_frames is not None and len(frames) >= max_frames:
                    break
            i += 1
    except av.FFmpegError as exc:
        if not frames:
            raise MediaError(f"cannot decode video: {exc}", p) from exc
    if not frames:
        raise MediaError(f"no video frames from index {start}", p)
    log.finish(v.time_base)
    _check_corrupt(p, log.bad, info, v.time_base, origin)
    arr, info = _upright(np.stack(frames), rot, info)
    t = np.asarray(ts)
    return Video(path=p, frames=arr, fps=info.avg_fps, timestamps=t, source_timestamps=t.copy(), info=info,
                 corrupt_frames=len(log.bad))


IMAGE_EXT = (".png", ".jpg", ".jpeg")


def frame_image_files(folder: Path, max_frames: int | None = None) -> list[Path]:
    """A frame folder's images in order (sorted png/jpg), or MediaError when it has none."""
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXT)[:max_frames]
    if not files:
        raise MediaError(f"no {'/'.join(IMAGE_EXT)} frames in the folder", folder)
    return files


def read_frame_image(path: Path) -> np.ndarray:
    """One frame image as RGB uint8 [H,W,3], or MediaError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise MediaError(f"unreadable frame image ({exc})", path) from None


def read_video_or_frames(path: str | os.PathLike, fps: float = 25.0, max_frames: int | None = None) -> Video:
    """A Video from a video file (read_video), or from a folder of frames (sorted png/jpg, one per output
    frame, taken as `fps`): what other repositories write as their outputs."""
    p = Path(path)
    if not p.is_dir():
        return read_video(p, fps=fps, max_frames=max_frames)
    frames = [read_frame_image(f) for f in frame_image_files(p, max_frames)]
    if len({fr.shape for fr in frames}) > 1:
        raise MediaError("frame images of different sizes in the folder", p)
    arr = np.stack(frames)
    t = np.arange(len(arr)) / fps
    h, w = arr.shape[1:3]
    info = VideoInfo(path=p, width=w, height=h, duration=len(arr) / fps, avg_fps=fps, n_frames=len(arr),
                     codec="frames", has_audio=False, variable_frame_rate=False)
    return Video(path=p, frames=arr, fps=fps, timestamps=t, source_timestamps=t, info=info)


def read_audio(path: str | os.PathLike, sample_rate: int = 16000, start_s: float = 0.0,
               duration_s: float | None = None) -> np.ndarray:
    """float32 mono in [-1, 1] at `sample_rate` from a wav/mp3/m4a/flac or a video's audio track.

    Sample 0 is the container start (the same origin as read_video's frame times): a track that starts
    late is front-padded with zeros. Resampling and down-mix: PyAV's AudioResampler (libswresample).
    """
    p = Path(path)
    with _open(p) as c:
        if not c.streams.audio:
            kinds = ", ".join(s.type for s in c.streams) or "no streams"
            raise MediaError(f"no audio stream (found: {kinds}); a video without sound needs a separate speech file "
                             "(--audio, or the manifest's audio:)", p)
        a = c.streams.audio[0]
        origin = _origin(c)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
        chunks: list[np.ndarray] = []
        first_t: float | None = None
        try:
            for frame in c.decode(a):
                if first_t is None and frame.pts is not None and frame.time_base is not None:
                    first_t = float(frame.pts * frame.time_base) - origin
                for rf in resampler.resample(frame):
                    chunks.append(rf.to_ndarray().reshape(-1))
            for rf in resampler.resample(None):
                chunks.append(rf.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            if not chunks:
                raise MediaError(f"cannot decode audio: {exc}", p) from exc
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise MediaError("audio stream has no samples (empty file?)", p)
    if first_t:
        shift = _round_half_up(abs(first_t) * sample_rate)
        audio = np.concatenate([np.zeros(shift, np.float32), audio]) if first_t > 0 else audio[shift:]
    s0 = max(_round_half_up(start_s * sample_rate), 0)
    s1 = None if duration_s is None else s0 + _round_half_up(duration_s * sample_rate)
    audio = audio[s0:s1]
    if audio.size == 0:
        raise MediaError(f"no audio samples at {start_s:.2f}s (file is shorter)", p)
    return np.clip(audio, -1.0, 1.0)


def samples_per_frame(fps: float = 25.0, sample_rate: int = 16000) -> int:
    """Audio samples per video frame (640 at 25 fps / 16 kHz); rounded where not an integer."""
    return _round_half_up(sample_rate / fps)


def audio_frames(audio: np.ndarray, n_frames: int, fps: float = 25.0, sample_rate: int = 16000) -> np.ndarray:
    """Trim or zero-pad audio to exactly the samples covering n_frames frames."""
    n = _round_half_up(n_frames * sample_rate / fps)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[0] >= n:
        return audio[:n]
    return np.concatenate([audio, np.zeros(n - audio.shape[0], np.float32)])


def align_audio(audio: np.ndarray, n_frames: int, fps: float = 25.0, sample_rate: int = 16000,
                path: str | os.PathLike | None = None, tolerance_s: float = 0.1) -> np.ndarray:
    """audio_frames, but a shortfall is an error: zero-pad with a warning if it is within tolerance_s,
    else MediaError (the audio does not belong to, or is cut short of, the video)."""
    need = _round_half_up(n_frames * sample_rate / fps)
    short = need - int(np.asarray(audio).shape[0])
    if short > 0:
        short_s = short / sample_rate
        if short_s > tolerance_s + _EPS:
            raise MediaError(
                f"audio is {short_s:.3f}s shorter than the {n_frames} video frames it must cover "
                f"(tolerance {tolerance_s:g}s)", path)
        warnings.warn(f"{path}: audio {short_s:.3f}s short of the video; zero-padded", stacklevel=2)
    return audio_frames(audio, n_frames, fps, sample_rate)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 25.0, audio: np.ndarray | None = None,
                sample_rate: int = 16000, crf: int = 18) -> Path:
    """Write H.264 (yuv420p) mp4, with AAC audio muxed when given. Odd sizes are edge-padded to even
    (yuv420p needs even dims). Written to a temp file then renamed, so readers never see half a file."""
    p = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise MediaError(f"frames must be a non-empty uint8 [T,H,W,3] array, got shape {frames.shape}", p)
    with VideoWriter(p, int(frames.shape[0]), fps, audio, sample_rate, crf) as w:
        w.write(frames)
    return p


class VideoWriter:
    """write_video chunk by chunk (a long clip's frames never all in memory): the same streams, options and
    audio interleaving, so writing [T,H,W,3] in one call or in chunks gives the same file. n_frames: the total
    to expect (the last frame carries the rest of the audio). Use as a context manager: the temp file is renamed
    into place on a clean exit, removed on an error."""

    def __init__(self, path: str | os.PathLike, n_frames: int, fps: float = 25.0, audio: np.ndarray | None = None,
                 sample_rate: int = 16000, crf: int = 18):
        self.path, self.n, self.fps, self.sr, self.crf = Path(path), int(n_frames), fps, int(sample_rate), int(crf)
        self.aud = None if audio is None else np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
        self.i = self.a_pos = 0
        self.out: Any = None
        self.vs: Any = None
        self.as_: Any = None
        self.pad = (0, 0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=self.path.suffix or ".mp4")
        os.close(fd)

    def __enter__(self) -> "VideoWriter":
        return self

    def _start(self, h: int, w: int) -> None:
        rate = Fraction(self.fps).limit_denominator(1001)
        self.rate = rate
        self.pad = (h % 2, w % 2)
        self.out = av.open(self.tmp, mode="w", format="mp4", options={"movflags": "+faststart"})
        self.vs = self.out.add_stream("libx264", rate=rate)
        self.vs.width, self.vs.height = w + self.pad[1], h + self.pad[0]
        self.vs.pix_fmt = "yuv420p"
        self.vs.options = {"crf": str(self.crf), "preset": "veryfast"}
        if self.aud is not None:
            self.as_ = self.out.add_stream("aac", rate=self.sr)
            self.as_.layout = "mono"

    def write(self, frames: np.ndarray) -> None:
        """Append frames uint8 [k,H,W,3] (every chunk the same H, W)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise MediaError(f"frames must be a uint8 [T,H,W,3] array, got shape {frames.shape}", self.path)
        if frames.dtype != np.uint8:
            raise MediaError(f"frames must be uint8, got {frames.dtype}", self.path)
        try:
            if self.out is None and len(frames):
                self._start(int(frames.shape[1]), int(frames.shape[2]))
            ph, pw = self.pad
            for img in frames:
                if ph or pw:
                    img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                vf.pts = self.i
                vf.time_base = 1 / self.rate
                for pkt in self.vs.encode(vf):
                    self.out.mux(pkt)
                if self.as_ is not None and self.aud is not None:  # interleave: audio up to the end of this frame
                    aud = self.aud
                    until = aud.shape[0] if self.i == self.n - 1 else min(aud.shape[0],
                                                                          int((self.i + 1) * self.sr / self.fps))
                    self.a_pos = _encode_audio(self.out, self.as_, aud, self.a_pos, until, 1024, self.sr)
                self.i += 1
        except av.FFmpegError as exc:
            raise MediaError(f"cannot write video: {exc}", self.path) from exc

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                if self.out is None:
                    raise MediaError("no frames written", self.path)
                try:
                    if self.as_ is not None and self.aud is not None and self.a_pos < self.aud.shape[0]:
                        self.a_pos = _encode_audio(self.out, self.as_, self.aud, self.a_pos, self.aud.shape[0],
                                                   1024, self.sr)  # fewer frames than announced: keep the audio
                    for pkt in self.vs.encode(None):
                        self.out.mux(pkt)
                    if self.as_ is not None:
                        for pkt in self.as_.encode(None):
                            self.out.mux(pkt)
                    self.out.close()
                    self.out = None
                except av.FFmpegError as e:
                    raise MediaError(f"cannot write video: {e}", self.path) from e
                os.replace(self.tmp, self.path)
        finally:
            if self.out is not None:
                try:
                    self.out.close()
                except av.FFmpegError:
                    pass
            Path(self.tmp).unlink(missing_ok=True)


def _encode_audio(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, aud: np.ndarray,
                  pos: int, until: int, chunk: int, sample_rate: int) -> int:
    while pos < until:
        n = min(chunk, until - pos)
        af = av.AudioFrame.from_ndarray(aud[pos:pos + n].reshape(1, -1), format="flt", layout="mono")
        af.sample_rate = int(sample_rate)
        af.pts = pos
        af.time_base = Fraction(1, int(sample_rate))
        for pkt in stream.encode(af):
            out.mux(pkt)
        pos += n
    return pos


@dataclass
class AudioInfo:
    path: Path
    duration: float
    sample_rate: int
    channels: int
    codec: str


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Header facts of a file's first audio stream (a wav/mp3/m4a or a video's track)."""
    p = Path(path)
    with _open(p) as c:
        if not c.streams.audio:
            raise MediaError("no audio stream", p)
        a = c.streams.audio[0]
        if a.duration and a.time_base is not None:
            dur = float(a.duration * a.time_base)
        elif c.duration:
            dur = float(c.duration) / av.time_base
        else:
            dur = 0.0
        if dur <= 0:
            raise MediaError("audio stream has no samples (empty file?)", p)
        return AudioInfo(path=p, duration=dur, sample_rate=int(a.codec_context.sample_rate),
                         channels=int(a.codec_context.channels), codec=a.codec_context.name)
