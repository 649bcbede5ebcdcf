"""Chunked decoding (issue 15 item 5): the streamed reader, the chunked writer and the streamed evaluation path
give exactly what the whole-array path gives, on real clips (short segments), so a long clip can take it."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _corpus_media as cm  # noqa: E402

from harness.core.media import VideoWriter, open_video, read_audio, read_video, write_video  # noqa: E402


@pytest.mark.parametrize("rel,start,max_frames", [
    ("video-retalking/face/1.mp4", 0, None),  # variable frame rate, video starting 33 ms in
    ("video-retalking/face/1.mp4", 37, 50),  # a seek into the middle
    ("video-retalking/face/4.mp4", 0, 60),  # 30 fps resampled to 25
])
def test_chunked_reader_gives_the_whole_file_frames(data_root: Path, rel: str, start: int,
                                                    max_frames: int | None) -> None:
    whole = read_video(data_root / rel, fps=25.0, start=start, max_frames=max_frames)
    v = open_video(data_root / rel, fps=25.0, start=start, max_frames=max_frames)
    assert v.frames.shape == whole.frames.shape and v.info == whole.info
    assert v.source_timestamps is None  # known after the first full pass only
    chunks = list(v.frames.chunks(7))
    assert {len(c) for c in chunks[:-1]} == {7}
    assert np.array_equal(np.concatenate(chunks), whole.frames)  # bit for bit
    assert np.array_equal(v.source_timestamps, whole.source_timestamps)
    assert np.array_equal(v.frames[3], whole.frames[3]) and np.array_equal(v.frames[5:9], whole.frames[5:9])
    assert np.array_equal(v.frames[-1], whole.frames[-1])


def test_chunked_reader_rotated(data_root: Path, tmp_path: Path) -> None:
    """A display-rotation tag: the chunks come upright, as read_video's frames."""
    import av

    frames = cm.base_frames(data_root, 12)[:, :, :200]  # not square: the shape turns too
    p = tmp_path / "rot.mp4"
    with av.open(str(p), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 200, 256, "yuv420p"
        vs.set_display_rotation(90)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
    whole = read_video(p)
    v = open_video(p)
    assert whole.info.rotation == v.info.rotation != 0 and v.frames.shape == whole.frames.shape
    assert np.array_equal(np.concatenate(list(v.frames.chunks(5))), whole.frames)


def test_chunked_writer_writes_the_same_file(data_root: Path, tmp_path: Path) -> None:
    src = data_root / "video-retalking/face/5.mp4"
    frames = read_video(src, max_frames=30).frames[:, :-1, :-3]  # odd size: edge-padded either way
    audio = read_audio(src, duration_s=30 / 25)
    write_video(tmp_path / "whole.mp4", frames, audio=audio)
    with VideoWriter(tmp_path / "chunks.mp4", len(frames), audio=audio) as w:
        for i in range(0, len(frames), 7):
            w.write(frames[i:i + 7])
    assert (tmp_path / "chunks.mp4").read_bytes() == (tmp_path / "whole.mp4").read_bytes()
    assert not list(tmp_path.glob(".tmp-*"))


def test_streamed_evaluation_equals_in_memory(data_root: Path, tmp_path: Path) -> None:
    """The evaluator's streamed path (forced on a 40-frame clip) records the values and frame counts of the
    whole-array path and stores the same video, for the chunk-aware reference methods (ground_truth: the source
    frames; static_frame: the first frame held)."""
    from harness.core.cache import Cache
    from harness.core.methods import get_method
    from harness.core.splits import ClipEntry
    from harness.evaluate import ClipIO, ClipTask, Evaluator
    from metrics.base import get_metric

    entry = ClipEntry(clip_id="c", identity="a", video="video-retalking/face/2.mp4", frame_range=(3, 43))
    out = {}
    for name, limit in (("memory", None), ("streamed", 0)):
        methods = {m: get_method(m) for m in ("ground_truth", "static_frame")}
        metrics = {m: get_metric(m) for m in ("ssim", "lmd")}
        ev = Evaluator(methods, metrics, {"c": entry}, str(data_root), io_=ClipIO(stream_above_bytes=limit),
                       cache=Cache(tmp_path / f"cache-{name}"))
        out[name] = {m: ev.run(ClipTask(m, "reconstruction", "c")) for m in methods}
        if limit == 0:
            gt = ev.ground_truth("c", "reconstruction")
            assert hasattr(gt["video"].frames, "chunks")  # the streamed path was taken
    for m in ("ground_truth", "static_frame"):
        a, b = out["memory"][m], out["streamed"][m]
        assert a.record["status"] == b.record["status"] == "ok", (a.record["error"], b.record["error"])
        assert a.record["values"] == b.record["values"] and a.record["extra"] == b.record["extra"]
        assert a.video and b.video
        va, vb = (_decoded(o.video, tmp_path / f"{m}-{i}.mp4") for i, o in enumerate((a, b)))
        src = read_video(data_root / entry.video, start=3, max_frames=40).frames
        want = src if m == "ground_truth" else np.repeat(src[:1], 40, axis=0)
        assert va.shape == vb.shape == want.shape  # same frames stored; x264 output bytes are not reproducible
        assert abs(_psnr(va, want) - _psnr(vb, want)) < 0.5  # across processes, so compare what they show
    assert out["streamed"]["ground_truth"].record["values"]["ssim"]["SSIM"] == 1.0


def _decoded(data: bytes, p: Path) -> np.ndarray:
    p.write_bytes(data)
    return read_video(p).frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def test_large_allocations_stay_mapped_on_glibc() -> None:
    """open_video fixes glibc's mmap threshold (harness.core.media.keep_large_allocations_mapped: a streamed clip's
    full frames otherwise fragment the heap by about a frame per chunk); on glibc the call must succeed."""
    import platform

    from harness.core.media import keep_large_allocations_mapped

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_large_allocations_mapped() is True
