"""Builders for the bad-input corpus and the odd-but-valid media: every file is made at test time from the
real clips in ../shared/data with PyAV / numpy (nothing binary is committed). Short and small on purpose."""
from __future__ import annotations

import os
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from harness.core.media import read_audio, read_video, write_video

FPS = 25.0
SR = 16000
BASE_CLIP = "styletalk/video/Obama_clip3.mp4"  # 256x256 face crop, 30 fps, no audio track
BASE_WAV = "styletalk/wav/Obama_clip3.wav"  # its 16 kHz speech


def write_case_table(env: str, header: list[str], rows: list[tuple[str, ...]]) -> None:
    """The rows as a markdown table at the path in $env (CORPUS_TABLE, ODD_MEDIA_TABLE: the case tables of
    docs/input-rules.md); nothing when it is unset or no row was recorded. Cells are one line, '|' escaped."""
    out = os.environ.get(env)
    if not out or not rows:
        return
    cell = lambda text: str(text).strip().replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    Path(out).write_text("\n".join(lines) + "\n")


def base_frames(root: Path, n: int = 30) -> np.ndarray:
    """The first n frames at 25 fps of a real talking-face clip (uint8 [n,256,256,3])."""
    return read_video(root / BASE_CLIP, fps=FPS, max_frames=n).frames


def base_audio(root: Path, n_frames: int = 30) -> np.ndarray:
    return read_audio(root / BASE_WAV, SR, duration_s=n_frames / FPS)


def encode(path: Path, frames: np.ndarray, codec: str = "libx264", fps: float = FPS, pix_fmt: str = "yuv420p",
           audio: np.ndarray | None = None, sample_rate: int = SR, audio_codec: str = "aac", layout: str = "mono",
           options: dict[str, str] | None = None, rotate: int | None = None, container_format: str | None = None,
           gray: bool = False) -> Path:
    """Encode frames (and audio [S] or [C,S] float32) with any PyAV codec; rotate sets the display matrix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format=container_format) as out:
        vs = out.add_stream(codec, rate=rate)
        vs.height, vs.width = frames.shape[1], frames.shape[2]
        vs.pix_fmt = pix_fmt
        if options:
            vs.options = options
        as_ = None
        if audio is not None:
            as_ = out.add_stream(audio_codec, rate=int(sample_rate))
            as_.layout = layout
        if rotate is not None:
            vs.metadata["rotate"] = str(rotate)
        for i, f in enumerate(frames):
            if gray:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[..., 0]), format="gray")
            else:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i
            vf.time_base = 1 / rate
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        if as_ is not None and audio is not None:
            a = np.asarray(audio, np.float32)
            a = a[None] if a.ndim == 1 else a
            fmt = "fltp"
            pos, chunk = 0, 1024
            while pos < a.shape[1]:
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[:, pos:pos + chunk]), format=fmt, layout=layout)
                af.sample_rate = int(sample_rate)
                af.pts = pos
                af.time_base = Fraction(1, int(sample_rate))
                for pkt in as_.encode(af):
                    out.mux(pkt)
                pos += chunk
            for pkt in as_.encode(None):
                out.mux(pkt)
    return path


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SR, channels: int = 1, sampwidth: int = 2) -> Path:
    """PCM wav (16 or 24 bit, mono or interleaved multi-channel) with the stdlib writer."""
    a = np.asarray(audio, np.float64).reshape(-1)
    if channels > 1:
        a = np.repeat(a[:, None], channels, axis=1).reshape(-1)
    full = float(2 ** (8 * sampwidth - 1) - 1)
    ints = np.round(np.clip(a, -1, 1) * full).astype(np.int32)
    if sampwidth == 2:
        data = ints.astype("<i2").tobytes()
    elif sampwidth == 3:
        b = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        data = b.tobytes()
    else:
        raise ValueError(sampwidth)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(sample_rate)
        w.writeframes(data)
    return path


def good_clip(root: Path, path: Path, n: int = 30) -> Path:
    """A short real clip with its speech muxed in (H.264 + AAC 16 kHz)."""
    return write_video(path, base_frames(root, n), FPS, audio=base_audio(root, n))


def corrupt_middle(src: Path, dst: Path) -> int:
    """A copy of an intra-only video file whose middle packet's payload is overwritten with noise; returns
    that packet's index. The container index is intact, so the decoder meets the bad frame mid-stream."""
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        pkts = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    k = len(pkts) // 2
    pos, size = pkts[k]
    rng = np.random.default_rng(0)
    data[pos + 8:pos + size] = rng.integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return k
