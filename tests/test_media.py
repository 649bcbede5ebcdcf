"""harness.core.media on the real clips: decode, VFR resampling by timestamps, audio alignment, write/read, bad input."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import MediaError
from harness.core.media import (align_audio, audio_frames, n_output_frames, probe_audio, probe_video, read_audio,
                           read_video, samples_per_frame, write_video)

# frames at 25 fps = round(duration * 25), duration from the stream headers (measured; see splits/demo.yaml)
EXPECTED_25FPS = {
    "styletalk/video/Obama_clip1.mp4": 502, "styletalk/video/Obama_clip2.mp4": 752,
    "styletalk/video/Obama_clip3.mp4": 500, "styletalk/video/andrew_clip_1.mp4": 627,
    "styletalk/video/andrew_clip_2.mp4": 677, "styletalk/video/feifeili_clip1.mp4": 252,
    "styletalk/video/feifeili_clip2_short.mp4": 377, "styletalk/video/feifeili_clip3.mp4": 177,
    "video-retalking/face/1.mp4": 153, "video-retalking/face/2.mp4": 125, "video-retalking/face/3.mp4": 125,
    "video-retalking/face/4.mp4": 166, "video-retalking/face/5.mp4": 122,
}


@pytest.mark.parametrize("rel", sorted(EXPECTED_25FPS))
def test_every_clip_probes_and_decodes(data_root: Path, rel: str) -> None:
    info = probe_video(data_root / rel)
    assert n_output_frames(info, 25.0) == EXPECTED_25FPS[rel]
    seg = read_video(data_root / rel, fps=25.0, start=20, max_frames=8)  # a short segment, not the whole clip
    assert seg.frames.shape == (8, info.height, info.width, 3) and seg.frames.dtype == np.uint8
    assert np.allclose(seg.timestamps, np.arange(20, 28) / 25.0)
    assert seg.frames.std() > 5  # real pictures, not blank


def test_vfr_resampled_by_timestamps(data_root: Path) -> None:
    path = data_root / "video-retalking/face/1.mp4"
    info = probe_video(path)
    assert info.variable_frame_rate and info.has_audio
    v = read_video(path, fps=25.0)
    assert len(v) == round(info.duration * 25) == 153
    assert np.all(np.diff(v.timestamps) > 0)
    assert np.all(np.diff(v.source_timestamps) >= 0)
    # rule: the picked source frame is the last one at or before the output instant (frame 0: the first frame)
    native = read_video(path, fps=None)
    assert len(native) == info.n_frames == 135
    src = native.timestamps
    for i in range(1, len(v)):
        j = np.searchsorted(src, v.timestamps[i] + 1e-6, side="right") - 1
        assert v.source_timestamps[i] == pytest.approx(src[max(j, 0)])
        assert np.array_equal(v.frames[i], native.frames[max(j, 0)])
    assert v.source_timestamps[0] == pytest.approx(src[0])


def test_25fps_source_is_identity(data_root: Path) -> None:
    v = read_video(data_root / "video-retalking/face/2.mp4", fps=25.0, max_frames=30)
    assert np.allclose(v.source_timestamps, v.timestamps)


def test_seek_matches_sequential_decode(data_root: Path) -> None:
    path = data_root / "video-retalking/face/4.mp4"
    full = read_video(path, fps=25.0, max_frames=70)
    seg = read_video(path, fps=25.0, start=50, max_frames=20)
    assert np.array_equal(seg.frames, full.frames[50:70])
    assert np.allclose(seg.source_timestamps, full.source_timestamps[50:70])


def test_audio_track_and_alignment(data_root: Path) -> None:
    assert samples_per_frame(25.0, 16000) == 640
    path = data_root / "video-retalking/face/2.mp4"  # AAC 44.1 kHz stereo
    a = read_audio(path)
    assert a.dtype == np.float32 and a.ndim == 1 and np.abs(a).max() <= 1.0
    assert abs(len(a) / 16000 - probe_audio(path).duration) < 0.05
    n = len(read_video(path, fps=25.0))
    aligned = audio_frames(a, n)
    assert aligned.shape == (n * 640,)
    # segment reads agree with the full read
    seg = read_audio(path, start_s=1.0, duration_s=0.5)
    assert np.allclose(seg, a[16000:24000])
    wav = read_audio(data_root / "video-retalking/audio/2.wav")  # 48 kHz stereo wav
    assert abs(len(wav) / 16000 - 5.013) < 0.02


def test_write_read_round_trip_with_audio(tmp_path: Path) -> None:
    T, H, W = 30, 63, 81  # odd dims get edge-padded to even
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([(xx * 3 + t * 5) % 256, (yy * 4) % 256, np.full_like(xx, 128)], -1)
                       for t in range(T)]).astype(np.uint8)
    t = np.arange(T * 640) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = write_video(tmp_path / "rt.mp4", frames, fps=25.0, audio=audio)
    info = probe_video(out)
    assert (info.width, info.height) == (82, 64) and info.codec == "h264" and info.has_audio
    v = read_video(out, fps=25.0)
    assert len(v) == T
    assert np.abs(v.frames[:, :H, :W].astype(int) - frames).mean() < 6
    back = read_audio(out)
    assert abs(len(back) - len(audio)) < 2048  # AAC frame padding
    m = min(len(back), len(audio))
    core = slice(2048, m - 2048)
    assert np.corrcoef(back[core], audio[core])[0, 1] > 0.95 or np.abs(back[core] - audio[core]).mean() < 0.05


# ---- bad input: MediaError naming the file --------------------------------------------------------------
def _assert_media_error(fn, path: Path, *args, match: str = "") -> None:
    with pytest.raises(MediaError) as exc:
        fn(path, *args)
    assert str(path) in str(exc.value)
    assert match in str(exc.value)


def test_truncated_mp4(data_root: Path, tmp_path: Path) -> None:
    src = (data_root / "video-retalking/face/2.mp4").read_bytes()  # moov at the end: the header is lost
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src[: len(src) // 2])
    _assert_media_error(read_video, cut)
    _assert_media_error(probe_video, cut)


def test_truncated_faststart_mp4(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (50, 64, 64, 3), dtype=np.uint8)  # noise: big packets
    full = write_video(tmp_path / "full.mp4", frames)  # faststart: header first, data cut
    data = full.read_bytes()
    cut = tmp_path / "cut_fs.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    _assert_media_error(read_video, cut, match="truncated")


def test_audio_only_as_video(data_root: Path, tmp_path: Path) -> None:
    _assert_media_error(read_video, data_root / "video-retalking/audio/1.wav", match="no video stream")
    m4a = tmp_path / "speech.m4a"
    write_video(tmp_path / "v.mp4", np.zeros((5, 16, 16, 3), np.uint8), audio=np.zeros(3200, np.float32))
    import av  # make an audio-only m4a by remuxing the AAC track
    with av.open(str(tmp_path / "v.mp4")) as src, av.open(str(m4a), "w", format="ipod") as dst:
        ain = src.streams.audio[0]
        aout = dst.add_stream_from_template(ain)
        for pkt in src.demux(ain):
            if pkt.dts is not None:
                pkt.stream = aout
                dst.mux(pkt)
    assert len(read_audio(m4a)) > 0
    _assert_media_error(read_video, m4a, match="no video stream")


def test_no_audio_and_empty_files(data_root: Path, tmp_path: Path) -> None:
    _assert_media_error(read_audio, data_root / "styletalk/video/Obama_clip1.mp4", match="no audio stream")
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    _assert_media_error(read_audio, empty)
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    _assert_media_error(read_video, zero, match="empty")
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video at all\n" * 100)
    _assert_media_error(read_video, junk)
    _assert_media_error(read_video, tmp_path / "missing.mp4", match="does not exist")


def test_align_audio_short_wav(data_root: Path, tmp_path: Path) -> None:
    a = np.zeros(100 * 640 - 800, np.float32)  # 0.05 s short: padded with a warning
    with pytest.warns(UserWarning):
        assert align_audio(a, 100, path="x.wav").shape == (64000,)
    with pytest.raises(MediaError, match="shorter"):
        align_audio(np.zeros(100 * 640 - 3200, np.float32), 100, path="x.wav")  # 0.2 s short
    assert align_audio(np.ones(70000, np.float32), 100).shape == (64000,)  # longer: trimmed


@pytest.mark.parametrize("suffix,codec", [(".avi", "mpeg4"), (".mov", "mpeg4"), (".mov", "libx264"), (".mp4", "libx265")])
def test_other_containers_and_codecs(tmp_path: Path, suffix: str, codec: str) -> None:
    """AVI/MOV, MPEG-4 Part 2 and HEVC decode through the same path (made here with PyAV's encoders)."""
    import av

    path = tmp_path / f"clip{suffix}"
    frames = np.stack([np.full((48, 64, 3), 10 * t, np.uint8) for t in range(20)])
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for pkt in s.encode(vf):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)
    info = probe_video(path)
    assert info.codec in ("mpeg4", "h264", "hevc") and info.n_frames == 20
    v = read_video(path, fps=25.0)
    assert len(v) == round(info.duration * 25)
    assert abs(int(v.frames[-1].mean()) - int(frames[-1].mean())) < 12


def test_frame_folder_reads_real_frames_and_names_a_bad_image(data_root: Path, tmp_path: Path) -> None:
    """A folder of PNG frames (what other repositories write) reads back exactly; an unreadable image is a
    one-line MediaError naming that file, not a PIL traceback."""
    from PIL import Image

    from harness.core.media import read_video_or_frames

    src = read_video(data_root / "styletalk/video/Obama_clip1.mp4", max_frames=3).frames
    for i, fr in enumerate(src):
        Image.fromarray(fr).save(tmp_path / f"{i:04d}.png")
    v = read_video_or_frames(tmp_path, fps=25.0)
    np.testing.assert_array_equal(v.frames, src)  # PNG is lossless
    assert v.info.n_frames == 3 and v.timestamps[1] == pytest.approx(1 / 25)
    (tmp_path / "0001.png").write_bytes(b"not a png")
    with pytest.raises(MediaError, match="unreadable frame image") as e:
        read_video_or_frames(tmp_path)
    assert "0001.png" in str(e.value)
