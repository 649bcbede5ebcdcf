"""Chunked generation (issue 15 item 5): a method's generate_chunks gives exactly its generate() frames and notes
on a real clip, with the source as an array and as StreamedFrames, so the streamed path of a long clip scores
what the whole-array path would. Short segments (a few seconds) of the real clips."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.core.media import open_video, read_video, write_video
from harness.core.methods import MethodInput, get_method

REC = "reconstruction"
SRC = "styletalk/video/Obama_clip3.mp4"  # 256x256, a face in every frame
N = 24


def _inp(frames: object, n: int, clip: str = "c", path: Path = Path("x.mp4"), ts: object = None) -> MethodInput:
    return MethodInput(clip_id=clip, setting=REC, source_video=path, source_frames=frames,
                       audio=np.zeros(n * 640, np.float32), n_frames=n, source_timestamps=ts)


def _chunked(method: object, inp: MethodInput, size: int) -> np.ndarray:
    chunks = list(method.generate_chunks(inp, size))  # type: ignore[attr-defined]
    assert all(c.dtype == np.uint8 and 0 < len(c) <= size for c in chunks)
    return np.concatenate(chunks)


@pytest.fixture(scope="module")
def outputs(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<dir>/<mode>/reconstruction/c.mp4 outputs the way other repositories write them, from the real clip."""
    d = tmp_path_factory.mktemp("outs")
    v = read_video(data_root / SRC, fps=25, max_frames=N + 3).frames
    big = np.stack([cv2.resize(f, (384, 384), interpolation=cv2.INTER_CUBIC) for f in v[:N]])
    write_video(d / "resized" / REC / "c.mp4", big)
    write_video(d / "full" / REC / "c.mp4", v[:N - 2])  # 2 frames short: padded with the last frame
    x1, y1, s = 54, 40, 175
    crops = np.stack([cv2.resize(f[y1:y1 + s, x1:x1 + s], (96, 96), interpolation=cv2.INTER_AREA) for f in v[:12]])
    write_video(d / "crops" / REC / "c.mp4", crops)
    png = d / "png" / REC / "c"
    png.mkdir(parents=True)
    for i, f in enumerate(v[:N + 3]):  # longer than n: trimmed
        cv2.imwrite(str(png / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return d


@pytest.mark.parametrize("mode,n", [("resized", N), ("full", N), ("png", N), ("crops", 12)])
def test_folder_chunks_equal_whole(outputs: Path, data_root: Path, mode: str, n: int) -> None:
    m = get_method("precomputed", dir=str(outputs / mode))
    src = read_video(data_root / SRC, fps=25, max_frames=n)
    whole = m.generate(_inp(src.frames, n))
    notes = dict(m.last_notes)
    m.last_notes = {}
    streamed = open_video(data_root / SRC, fps=25, max_frames=n).frames
    got = _chunked(m, _inp(streamed, n), 5)
    assert got.shape == whole.shape and np.array_equal(got, whole)
    assert m.last_notes == notes
    assert np.array_equal(_chunked(m, _inp(src.frames, n), 7), whole)  # an in-memory source too
    want_mode = {"resized": "resized", "full": "full_frames", "png": "full_frames", "crops": "face_crops"}[mode]
    assert notes["mode"] == want_mode
    if mode == "full":
        assert notes["frames_padded"] == 2
    if mode == "png":
        assert notes["frames_trimmed"] == 1  # n + 1 frames are read: enough to tell "longer"
    if mode == "crops":
        assert notes["align_failed_frames"] == 0 and notes["align_residual_px"] < 2.0


def test_folder_chunks_length_rule_fails_before_any_frame(outputs: Path, data_root: Path) -> None:
    from harness.core.errors import MediaError

    m = get_method("precomputed", dir=str(outputs / "full"))
    streamed = open_video(data_root / SRC, fps=25, max_frames=40).frames
    with pytest.raises(MediaError, match="18 of 40 frames missing"):
        next(m.generate_chunks(_inp(streamed, 40), 8))


def test_copy_reference_chunks_equal_whole(data_root: Path) -> None:
    m = get_method("copy_reference")
    src = read_video(data_root / SRC, fps=25, max_frames=16)
    path = data_root / SRC
    whole = m.generate(_inp(src.frames, 16, path=path, ts=src.source_timestamps))
    streamed = open_video(path, fps=25, max_frames=16)
    list(streamed.frames.chunks())  # the first full pass: source_timestamps known (the evaluator's tracking pass)
    got = _chunked(m, _inp(streamed.frames, 16, path=path, ts=streamed.source_timestamps), 5)
    assert np.array_equal(got, whole)


def test_streamed_folder_through_the_evaluator(outputs: Path, data_root: Path, tmp_path: Path) -> None:
    """The evaluator's streamed path (forced) records the folder method's values and notes as the whole-array
    path does: the notes are read once the chunks are consumed."""
    from harness.core.cache import Cache
    from harness.core.splits import ClipEntry
    from harness.evaluate import ClipIO, ClipTask, Evaluator
    from metrics.base import get_metric

    entry = ClipEntry(clip_id="c", identity="a", video=SRC, audio="styletalk/wav/Obama_clip3.wav",
                      frame_range=(0, N))
    recs = {}
    for name, limit in (("memory", None), ("streamed", 0)):
        methods = {"resized": get_method("precomputed", dir=str(outputs / "resized")),
                   "full": get_method("precomputed", dir=str(outputs / "full"))}
        ev = Evaluator(methods, {"ssim": get_metric("ssim")}, {"c": entry}, str(data_root),
                       io_=ClipIO(stream_above_bytes=limit), cache=Cache(tmp_path / f"cache-{name}"),
                       write_videos=False)
        recs[name] = {k: ev.run(ClipTask(k, REC, "c")).record for k in methods}
    for k in ("resized", "full"):
        a, b = recs["memory"][k], recs["streamed"][k]
        assert a["status"] == b["status"] == "ok", (a["error"], b["error"])
        assert a["values"] == b["values"] and a["method_notes"] == b["method_notes"]
    assert recs["streamed"]["full"]["method_notes"]["frames_padded"] == 2


def test_syncnet_cropper_chunks_equal_whole(data_root: Path) -> None:
    """SyncNet's 224 crops cut chunk by chunk (the median-filtered centres from the whole track) are
    syncnet_crops' crops of the whole clip."""
    from harness.core.faces.clip import clip_faces, tracked_face_boxes
    from metrics.syncnet_crop import CutCrops, SyncNetCropper, syncnet_crops

    video = read_video(data_root / "video-retalking/face/2.mp4", fps=25, max_frames=30)  # 844x844 full frames
    boxes = tracked_face_boxes(clip_faces(video), 30)
    whole = syncnet_crops(video.frames, boxes)
    cut = SyncNetCropper(boxes)
    for i in range(0, 30, 8):
        cut.add(video.frames[i:i + 8])
    got = cut.result()
    assert isinstance(got, CutCrops) and np.array_equal(syncnet_crops(got, boxes), whole)
    from harness.core.errors import MediaError

    short = SyncNetCropper(boxes)
    short.add(video.frames[:10])
    with pytest.raises(MediaError, match="10 frames but 30 face boxes"):
        short.result()


def test_realtalk_chunks_equal_whole(data_root: Path) -> None:
    """The demo checkpoint (realtalk/assets): generate_chunks over a StreamedFrames source gives generate()'s
    frames bit for bit (the same renderer batches, the source frames read forward in one pass)."""
    m = get_method("realtalk")
    path = data_root / "video-retalking/face/5.mp4"  # 524x524, face not cropped
    n = 10
    src = read_video(path, fps=25, max_frames=n)
    from harness.core.media import read_audio

    audio = read_audio(path, 16000, duration_s=n / 25)
    inp = _inp(src.frames, n, path=path, ts=src.source_timestamps)
    inp.audio = audio
    whole = m.generate(inp)
    streamed = open_video(path, fps=25, max_frames=n)
    list(streamed.frames.chunks())  # the tracking pass the evaluator makes first: source_timestamps known
    inp_s = _inp(streamed.frames, n, path=path, ts=streamed.source_timestamps)
    inp_s.audio = audio
    got = list(m.generate_chunks(inp_s, 4))
    assert all(len(c) <= 4 for c in got)
    assert np.array_equal(np.concatenate(got), whole)


@pytest.mark.slow  # realtalk through the evaluator twice (about 100 s on 2 shared cores)
def test_streamed_cacheable_method_skips_the_frame_cache(data_root: Path, tmp_path: Path) -> None:
    """A cacheable method (realtalk) on a clip decoded in chunks is streamed, and its frames are not put in the
    generated-frame cache (a 5-minute 1080p clip would make a 43 GB npz): the record says so."""
    from harness.core.cache import Cache
    from harness.core.splits import ClipEntry
    from harness.evaluate import ClipIO, ClipTask, Evaluator
    from metrics.base import get_metric

    entry = ClipEntry(clip_id="c", identity="a", video="video-retalking/face/5.mp4", frame_range=(0, 10))
    cache = Cache(tmp_path / "cache")
    ev = Evaluator({"realtalk": get_method("realtalk")}, {"ssim": get_metric("ssim")}, {"c": entry},
                   str(data_root), io_=ClipIO(stream_above_bytes=0), cache=cache, write_videos=False)
    rec = ev.run(ClipTask("realtalk", REC, "c")).record
    assert rec["status"] == "ok", rec["error"]
    assert "not cached" in rec["generated_not_cached"] and "decoded in chunks" in rec["generated_not_cached"]
    assert not rec["generated_from_cache"]
    assert not list((tmp_path / "cache").rglob("*.npz"))  # the evaluator's cache holds only generated frames
    mem = Evaluator({"realtalk": get_method("realtalk")}, {"ssim": get_metric("ssim")}, {"c": entry},
                    str(data_root), cache=Cache(tmp_path / "cache-mem"), write_videos=False)
    rec_mem = mem.run(ClipTask("realtalk", REC, "c")).record
    assert rec_mem["values"] == rec["values"] and "generated_not_cached" not in rec_mem
    assert len(list((tmp_path / "cache-mem").rglob("*.npz"))) == 1  # the whole-array path caches them
