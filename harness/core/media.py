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
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from harness.core.errors import MediaError

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
    with _open(p) as c:
        v = _video_stream(c, p)
        v.thread_type = "AUTO"
        origin = _origin(c)
        tb = v.time_base
        if fps is None:
            return _read_native(c, v, p, info, origin, start, max_frames)
        total = n_output_frames(info, fps)
        end = total if max_frames is None else min(total, start + max(int(max_frames), 0))
        if start >= total:
            raise MediaError(f"start frame {start} is past the end ({total} frames at {fps:g} fps)", p)
        n = end - start
        out = np.empty((n, info.height, info.width, 3), dtype=np.uint8)
        src_ts = np.empty(n, dtype=np.float64)
        grid = (np.arange(start, end, dtype=np.float64)) / fps
        if start > 0:  # seek to the keyframe at or before the first needed instant
            target = int((grid[0] + origin) / tb) if tb else 0
            c.seek(max(target, 0), stream=v, backward=True, any_frame=False)

        k = 0  # next output slot
        prev: tuple[float, av.VideoFrame] | None = None
        prev_arr: np.ndarray | None = None
        last_pts = -math.inf

        def emit(entry: tuple[float, av.VideoFrame], cache: np.ndarray | None) -> np.ndarray:
            arr = cache if cache is not None else entry[1].to_ndarray(format="rgb24")
            out[k] = arr
            src_ts[k] = entry[0]
            return arr

        bad: list[float] = []
        rot: int | None = None
        try:
            for frame in _decode_frames(c, v, bad):
                if frame.pts is None:
                    continue
                if rot is None:
                    rot = _rotation(frame)
                t = float(frame.pts * tb) - origin
                if t < last_pts - _EPS:  # out-of-order pts would break the 'last frame <= t' rule
                    continue
                last_pts = t
                if prev is None and start > 0 and t > grid[0] + _EPS:
                    # seek landed after the first instant we need: decode from the beginning instead
                    return _decode_from_start(p, info, fps, start, end)
                while k < n and t > grid[k] + _EPS:
                    src = prev if prev is not None else (t, frame)  # i = 0: the first frame
                    prev_arr = emit(src, prev_arr if prev is not None else None)
                    k += 1
                if k >= n:
                    break
                prev, prev_arr = (t, frame), None
        except av.FFmpegError as exc:
            if k == 0 and prev is None:
                raise MediaError(f"cannot decode video: {exc}", p) from exc
            # keep what decoded; the truncation check below decides
        while k < n and prev is not None:
            prev_arr = emit(prev, prev_arr)
            k += 1
        if k < n:
            raise MediaError(f"no decodable video frames (needed {n})", p)
        _check_corrupt(p, bad, info, tb, origin)
        # truncated: the last decoded frame lies well before the instants we were asked for
        frame_dur = 1.0 / max(info.avg_fps, 1.0)
        needed_until = grid[-1]
        if prev is not None and last_pts + 2 * frame_dur + 0.25 < needed_until:
            raise MediaError(
                f"truncated video: frames stop at {last_pts:.2f}s but the stream is {info.duration:.2f}s long",
                p)
        out, info = _upright(out, rot, info)
        return Video(path=p, frames=out, fps=float(fps), timestamps=grid, source_timestamps=src_ts, info=info,
                     corrupt_frames=len(bad))


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


def _decode_frames(c: av.container.InputContainer, v: av.video.stream.VideoStream, bad: list[float]):
    """Decoded frames packet by packet: a packet the decoder rejects (a corrupt frame mid-stream) is skipped and
    its pts (s) appended to `bad`, so the rest of the clip still decodes (c.decode() would stop there)."""
    for pkt in c.demux(v):
        try:
            frames = pkt.decode()
        except av.InvalidDataError:
            if pkt.size:
                bad.append(float(pkt.pts * v.time_base) if pkt.pts is not None and v.time_base else math.nan)
            continue
        yield from frames


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


def _decode_from_start(p: Path, info: VideoInfo, fps: float, start: int, end: int) -> Video:
    """Slow path when a seek overshoots: decode from frame 0 and keep [start, end)."""
    full = read_video(p, fps, 0, end)
    return Video(path=p, frames=full.frames[start:end].copy(), fps=full.fps, timestamps=full.timestamps[start:end],
                 source_timestamps=full.source_timestamps[start:end], info=full.info, corrupt_frames=full.corrupt_frames)


def _read_native(c: av.container.InputContainer, v: av.video.stream.VideoStream, p: Path, info: VideoInfo,
                 origin: float, start: int, max_frames: int | None) -> Video:
    frames: list[np.ndarray] = []
    ts: list[float] = []
    i = 0
    bad: list[float] = []
    rot: int | None = None
    try:
        for frame in _decode_frames(c, v, bad):
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
    _check_corrupt(p, bad, info, v.time_base, origin)
    arr, info = _upright(np.stack(frames), rot, info)
    t = np.asarray(ts)
    return Video(path=p, frames=arr, fps=info.avg_fps, timestamps=t, source_timestamps=t.copy(), info=info,
                 corrupt_frames=len(bad))


IMAGE_EXT = (".png", ".jpg", ".jpeg")


def read_video_or_frames(path: str | os.PathLike, fps: float = 25.0, max_frames: int | None = None) -> Video:
    """A Video from a video file (read_video), or from a folder of frames (sorted png/jpg, one per output
    frame, taken as `fps`): what other repositories write as their outputs."""
    p = Path(path)
    if not p.is_dir():
        return read_video(p, fps=fps, max_frames=max_frames)
    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXT)[:max_frames]
    if not files:
        raise MediaError(f"no {'/'.join(IMAGE_EXT)} frames in the folder", p)
    frames = []
    for f in files:
        try:
            with Image.open(f) as im:
                frames.append(np.asarray(im.convert("RGB")))
        except (OSError, UnidentifiedImageError) as exc:
            raise MediaError(f"unreadable frame image ({exc})", f) from None
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
    if frames.dtype != np.uint8:
        raise MediaError(f"frames must be uint8, got {frames.dtype}", p)
    T, H, W, _ = frames.shape
    ph, pw = H % 2, W % 2
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=p.suffix or ".mp4")
    os.close(fd)
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            vs = out.add_stream("libx264", rate=rate)
            vs.width, vs.height = W + pw, H + ph
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": str(int(crf)), "preset": "veryfast"}
            as_ = None
            aud = None
            if audio is not None:
                aud = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
                as_ = out.add_stream("aac", rate=int(sample_rate))
                as_.layout = "mono"
            a_pos = 0
            a_chunk = 1024
            for i in range(T):
                img = frames[i]
                if ph or pw:
                    img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                vf.pts = i
                vf.time_base = 1 / rate
                for pkt in vs.encode(vf):
                    out.mux(pkt)
                if as_ is not None and aud is not None:  # interleave: audio up to the end of this frame
                    until = aud.shape[0] if i == T - 1 else min(aud.shape[0], int((i + 1) * sample_rate / fps))
                    a_pos = _encode_audio(out, as_, aud, a_pos, until, a_chunk, sample_rate)
            for pkt in vs.encode(None):
                out.mux(pkt)
            if as_ is not None:
                for pkt in as_.encode(None):
                    out.mux(pkt)
        os.replace(tmp, p)
    except av.FFmpegError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise MediaError(f"cannot write video: {exc}", p) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


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
