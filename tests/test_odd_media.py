"""Odd but valid media just work (issue 15 item 2): each built at test time from the real clips in ../shared/data
and scored through the metrics path (`realtalk-bench metrics`: read -> ground truth's crop track -> metrics).
A file against itself must give LMD 0 and SSIM 1 (identical crops: the metrics' own fixed points).

Set ODD_MEDIA_TABLE=PATH to write the table of every case (case, what was read, result, warnings) as markdown."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _corpus_media as cm  # noqa: E402

from harness.cli import main  # noqa: E402
from harness.core.media import probe_audio, probe_video, read_audio, read_video  # noqa: E402

N = 30
TABLE: list[tuple[str, str, str, str]] = []


def _record(case: str, media: str, result: str, said: list[str] | str = "") -> None:
    """One row of the ODD_MEDIA_TABLE: written only after the test's asserts passed (a failing case has no row)."""
    text = said if isinstance(said, str) else " / ".join(said)
    TABLE.append((case, media, result, text.strip() or "—"))


def _scores(values: dict) -> str:
    return f"LMD {values['LMD']:g}, M-LMD {values['M-LMD']:g}, FaceCov {values['FaceCov']:g}, SSIM {values['SSIM']:.12g}"


@pytest.fixture(scope="module", autouse=True)
def _write_table():
    yield
    cm.write_case_table("ODD_MEDIA_TABLE", ["case", "read as", "result", "warnings"], TABLE)


@pytest.fixture(scope="module")
def src(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(30 real frames 256x256 at 25 fps, their 16 kHz speech)."""
    return cm.base_frames(data_root, N), cm.base_audio(data_root, N)


def self_scores(path: Path, audio: np.ndarray | None = None) -> tuple[dict, list[str]]:
    """LMD / SSIM of a file against itself through the metrics command's path; and the warnings it gave."""
    from harness.core.media import read_video_or_frames
    from metrics.compute import aligned_pair, compute_pair

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        v = read_video_or_frames(path, 25.0)
        pair = aligned_pair(v, v)
        res = compute_pair(pair.gen_crops, pair.gt_crops, audio, ["lmd", "ssim"])
    assert not res.errors and not res.unavailable, (res.errors, res.unavailable)
    return {**res.values["lmd"], **res.values["ssim"]}, [str(w.message) for w in said]


def _short(said: list[str], tmp: Path) -> list[str]:
    """The warnings as a reader sees them, without the test's temporary folder."""
    return [w.replace(str(tmp) + "/", "") for w in said]


def assert_identity(values: dict) -> None:
    assert values["LMD"] == 0.0 and values["M-LMD"] == 0.0 and values["FaceCov"] == 1.0
    assert values["SSIM"] == pytest.approx(1.0, abs=1e-12)


def test_mpeg4_part2_with_16k_stereo_aac(src, tmp_path: Path) -> None:
    frames, speech = src
    p = cm.encode(tmp_path / "mpeg4.mp4", frames, codec="mpeg4", options={"qscale": "2"},
                  audio=np.stack([speech, 0.5 * speech]), sample_rate=16000, layout="stereo")
    info, ainfo = probe_video(p), probe_audio(p)
    assert info.codec == "mpeg4" and ainfo.codec == "aac" and ainfo.channels == 2 and ainfo.sample_rate == 16000
    mono = read_audio(p)  # down-mixed, 16 kHz
    assert abs(len(mono) - len(speech)) <= 1024 + 2048  # AAC frame + priming padding
    values, said = self_scores(p, mono[: N * 640])
    assert_identity(values)
    _record("MPEG-4 Part 2 video, 16 kHz stereo AAC", f"{info.codec} {info.width}x{info.height}, {ainfo.codec} "
            f"{ainfo.sample_rate} Hz {ainfo.channels} ch -> {len(mono)} mono samples", _scores(values),
            _short(said, tmp_path))


def test_hevc_portrait_1080x1920_small_face(src, tmp_path: Path) -> None:
    """A phone-style HEVC portrait frame with the face ~1/10 of the height: found (the detector retries at full
    resolution when the downscaled copy shows nothing) and cropped there."""
    frames, _ = src
    import cv2

    canvas = np.full((10, 1920, 1080, 3), 60, np.uint8)
    x0, y0, side = 440, 700, 220
    for t in range(10):
        canvas[t, y0:y0 + side, x0:x0 + side] = cv2.resize(frames[t], (side, side), interpolation=cv2.INTER_AREA)
    p = cm.encode(tmp_path / "portrait.mp4", canvas, codec="libx265", options={"crf": "20", "x265-params": "log-level=0"})
    info = probe_video(p)
    assert info.codec == "hevc" and (info.width, info.height) == (1080, 1920)
    values, said = self_scores(p)
    assert_identity(values)
    v = read_video(p)
    from harness.core.faces.clip import clip_faces

    faces = clip_faces(v)
    cx = (faces.crop_track.boxes[:, 0] + faces.crop_track.boxes[:, 2]) / 2
    cy = (faces.crop_track.boxes[:, 1] + faces.crop_track.boxes[:, 3]) / 2
    assert np.all(np.abs(cx - (x0 + side / 2)) < side / 4) and np.all(np.abs(cy - (y0 + side / 2)) < side / 4)
    assert faces.found.all()
    assert not any("small face" in s for s in said)  # ~200 px of frame for a 256 crop: no warning due
    _record("HEVC 1080x1920 portrait, small face (220 px)", f"{info.codec} {info.width}x{info.height}; face "
            f"found on {int(faces.found.sum())}/{len(faces.found)} frames, crop centre within 55 px of the face's",
            _scores(values), _short(said, tmp_path))


def test_tiny_face_crop_upscaled_with_a_warning(src, tmp_path: Path) -> None:
    frames, _ = src
    import cv2

    canvas = np.full((N, 256, 256, 3), 60, np.uint8)
    for t in range(N):
        canvas[t, 80:180, 60:160] = cv2.resize(frames[t], (100, 100), interpolation=cv2.INTER_AREA)
    p = cm.write_video(tmp_path / "tiny.mp4", canvas)
    values, said = self_scores(p)
    assert_identity(values)
    assert any("small face" in s and "upscaled" in s and str(p) in s for s in said), said
    _record("tiny face (100 px in 256x256)", "h264 256x256", _scores(values), _short(said, tmp_path))


def test_rotation_tag_is_honoured(src, tmp_path: Path) -> None:
    """Stored sideways with a display matrix of +90 degrees (what phones write): read upright, exactly the frames
    of the same picture stored upright (lossless yuv444p, so both decode to the same pixels)."""
    import av

    frames, _ = src
    lossless = {"qp": "0", "preset": "ultrafast"}
    upright = cm.encode(tmp_path / "upright.mp4", frames, pix_fmt="yuv444p", options=lossless)
    sideways = np.ascontiguousarray(np.rot90(frames, k=-1, axes=(1, 2)))  # turned clockwise in storage
    rot = tmp_path / "rotated.mp4"
    with av.open(str(rot), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt, vs.options = 256, 256, "yuv444p", lossless
        vs.set_display_rotation(90)  # display: turn 90 degrees counter-clockwise
        for i, f in enumerate(sideways):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
    a, b = read_video(rot), read_video(upright)
    assert a.info.rotation == 90
    np.testing.assert_array_equal(a.frames, b.frames)
    values, said = self_scores(rot)
    assert_identity(values)
    _record("rotation tag (display matrix +90)", f"rotation {a.info.rotation}, frames equal to the upright file's",
            _scores(values), _short(said, tmp_path))


def test_grayscale_video(src, tmp_path: Path) -> None:
    frames, _ = src
    p = cm.encode(tmp_path / "gray.mp4", frames, pix_fmt="gray", gray=True, options={"crf": "12"})
    v = read_video(p)
    assert (v.frames[..., 0] == v.frames[..., 1]).all() and (v.frames[..., 1] == v.frames[..., 2]).all()
    values, said = self_scores(p)
    assert_identity(values)
    _record("grayscale video", f"pix_fmt gray -> {v.frames.shape[-1]} equal channels", _scores(values),
            _short(said, tmp_path))


@pytest.mark.parametrize("rate,channels,width", [(8000, 1, 2), (44100, 1, 2), (48000, 1, 2), (16000, 2, 2),
                                                 (16000, 1, 3), (48000, 2, 3)])
def test_wav_variants_as_driving_audio(src, tmp_path: Path, rate: int, channels: int, width: int) -> None:
    """8 / 44.1 / 48 kHz, stereo and 24-bit wav read back as the same 16 kHz mono speech. Bounds from the
    conversion: 16-bit quantisation (<= 2^-15 per sample) and, through 8 kHz, the 4-8 kHz band the file cannot hold."""
    from scipy.signal import resample_poly

    _, speech = src
    from math import gcd

    g = gcd(rate, 16000)
    a = resample_poly(speech.astype(np.float64), rate // g, 16000 // g) if rate != 16000 else speech
    p = cm.write_wav(tmp_path / f"drive {rate} {channels}ch {8 * width}bit.wav", a, rate, channels, width)
    info = probe_audio(p)
    assert (info.sample_rate, info.channels) == (rate, channels)
    back = read_audio(p)
    assert abs(len(back) - len(speech)) <= 1
    n = min(len(back), len(speech))
    core = slice(800, n - 800)  # resampler edges
    corr = np.corrcoef(back[core], speech[core])[0, 1]
    if rate == 8000:
        from scipy.signal import butter, sosfiltfilt

        low = sosfiltfilt(butter(8, 3800, fs=16000, output="sos"), speech.astype(np.float64))
        assert np.corrcoef(back[core], low[core])[0, 1] > 0.98 and corr > 0.9
    else:
        assert corr > 0.999
    _record(f"wav {rate} Hz, {channels} ch, {8 * width}-bit as driving audio",
            f"{len(back)} samples at 16 kHz mono ({len(speech)} expected)",
            f"r with the 16 kHz source {corr:.4f}" + (" (band-limited source: > 0.98)" if rate == 8000 else ""))


def test_audio_much_longer_than_the_video_is_cut_and_reported(data_root: Path, src, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    frames, _ = src
    p = cm.write_video(tmp_path / "clip.mp4", frames)
    long_wav = data_root / cm.BASE_WAV  # 20 s of speech for a 1.2 s clip
    code = main(["metrics", "--gt", str(p), "--gen", str(p), "--audio", str(long_wav), "--metrics", "ssim"])
    err = capsys.readouterr().err
    dur = len(read_audio(long_wav)) / 16000
    assert code == 0
    assert (f"warning: {long_wav}: audio is {dur:.2f}s, the 30 scored frames 1.20s: cut to the frames "
            f"({dur - 1.2:.2f}s dropped)") in err, err
    _record("audio much longer than the video", f"`metrics --audio` {dur:.2f} s for 30 frames", f"exit {code}",
            [ln.replace(str(data_root) + "/", "") for ln in err.splitlines() if ln.startswith("warning:")])


def test_silence_as_driving_audio(src, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    frames, _ = src
    p = cm.write_video(tmp_path / "clip.mp4", frames)
    quiet = cm.write_wav(tmp_path / "silence.wav", np.zeros(N * 640))
    code = main(["metrics", "--gt", str(p), "--gen", str(p), "--audio", str(quiet), "--metrics",
                 "ssim,av_sync,syncnet"])
    out = capsys.readouterr().out
    from harness.core import weights  # named but absent weights fail `metrics` (exit 1, as run); silence does not
    assert code == (0 if weights.available("syncnet_v2") else 1) and "SSIM" in out
    assert "unavailable av_sync: needs speech: the driving audio is silent (peak -inf dBFS" in out
    assert "unavailable syncnet:" in out  # silent, or its weights are absent: either way said, no division by 0
    said = [ln.strip().split(" (put the official file")[0] for ln in out.splitlines() if "unavailable" in ln]
    alone = main(["metrics", "--gt", str(p), "--gen", str(p), "--audio", str(quiet), "--metrics", "ssim,av_sync"])
    out2 = capsys.readouterr().out
    assert alone == 0 and "unavailable av_sync: needs speech" in out2  # silence itself is not a failure
    _record("silence as driving audio", "`metrics --metrics ssim,av_sync[,syncnet] --audio silence.wav`",
            f"exit {alone} for ssim,av_sync; exit {code} with syncnet" + (
                "" if code == 0 else " (its weights are absent here: a named metric whose file is missing fails "
                "the command)"), said)


def test_two_faces_largest_tracked_with_a_warning(data_root: Path, src, tmp_path: Path) -> None:
    import cv2

    frames, _ = src
    other = read_video(data_root / "styletalk/video/andrew_clip_2.mp4", max_frames=N).frames
    canvas = np.full((N, 256, 480, 3), 60, np.uint8)
    canvas[:, :, :256] = frames
    for t in range(N):
        canvas[t, 40:200, 300:460] = cv2.resize(other[t], (160, 160), interpolation=cv2.INTER_AREA)
    p = cm.write_video(tmp_path / "two faces.mp4", canvas)
    values, said = self_scores(p)
    assert_identity(values)
    assert any("2 faces tracked, scoring the largest one" in s and "never cross" in s for s in said), said
    from harness.core.faces.clip import clip_faces

    boxes = clip_faces(read_video(p)).crop_track.boxes
    assert np.all((boxes[:, 0] + boxes[:, 2]) / 2 < 256)  # the big face on the left
    _record("two faces in the frame", "h264 480x256; the crop track stays on the larger (left) face",
            _scores(values), _short(said, tmp_path))


def test_crossing_frames_are_named() -> None:
    """Where two tracks' boxes overlap is where a tracker can swap them: those frames are listed."""
    from harness.core.faces.track import _Track, crossing_frames

    a = _Track(list(range(6)), [np.array([0, 0, 100, 100.0])] * 6)
    b = _Track(list(range(6)), [np.array([200 - 30 * t, 0, 260 - 30 * t, 60.0]) for t in range(6)])
    assert crossing_frames(a, b) == [4, 5]  # x1 = 80, 50 < 100


def test_names_with_spaces_and_non_ascii(src, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    frames, speech = src
    root = tmp_path / "données de test ü"
    p = cm.write_video(root / "clips 名前" / "clip é 1.mp4", frames, audio=speech)
    assert main(["metrics", "--gt", str(p), "--gen", str(p), "--metrics", "ssim"]) == 0
    man = tmp_path / "split ü.yaml"
    man.write_text(yaml.safe_dump({"name": "odd names", "clips": [
        {"clip_id": "clip é 1", "identity": "ü", "video": "clips 名前/clip é 1.mp4"}]}, allow_unicode=True))
    out = tmp_path / "run ü"
    assert main(["splits", "verify", str(man), "--root", str(root)]) == 0
    assert main(["run", "--split", str(man), "--root", str(root), "--methods", "ground_truth", "--settings",
                 "reconstruction", "--metrics", "ssim", "--out", str(out), "--no-progress", "--n-boot", "50"]) == 0
    capsys.readouterr()
    import json

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["results"]["reconstruction"]["ground_truth"]["SSIM"]["mean"] == pytest.approx(1.0)
    assert (out / "videos/ground_truth/reconstruction/clip é 1.mp4").exists()
    _record("names with spaces and non-ASCII", "`données de test ü/clips 名前/clip é 1.mp4`: metrics, "
            "splits verify, run", "exit 0 each; run SSIM mean "
            f"{summary['results']['reconstruction']['ground_truth']['SSIM']['mean']:.12g}")
