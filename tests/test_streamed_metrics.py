"""Metrics fed in chunks (issue 15 item 5): lmd (with M-LMD / F-LMD, FaceCov, the excluded frames), ssim, psnr and
mouth_r give exactly compute_clip()'s result when a clip's generated crops come chunk by chunk (metrics/base.py
start / update / finish), and the evaluator's streamed path scores a clip without collecting its generated crops
unless a metric without a chunked path is in the run. Real crops of a real clip, a few seconds."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from harness.core.media import read_video, write_video
from metrics.base import ClipInput, ClipResult, Metric, Protocol, compute_chunked, get_metric

REC = "reconstruction"
SRC = "styletalk/video/Obama_clip3.mp4"  # 256x256, a face in every frame
WAV = "styletalk/wav/Obama_clip3.wav"
N = 30
CHUNKED = ("lmd", "ssim", "psnr", "mouth_r")


def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


@pytest.fixture(scope="module")
def crops(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(generated, ground truth) 256x256 crops along the ground truth's crop track: the generated ones blurred
    on the first half, the ground truth's own on frames 15..21 (the per-chunk shortcut to its cached
    landmarks), a black frame at 25 (no face: excluded and counted), shifted by 3 px on the rest."""
    from harness.core.faces.clip import clip_faces

    gt = np.asarray(clip_faces(read_video(data_root / SRC, fps=25, max_frames=N)).crops)
    gen = gt.copy()
    gen[:15] = _blur(gt[:15], 2.0)
    gen[22:] = np.roll(gt[22:], 3, axis=2)
    gen[25] = 0
    return gen, gt


def _same(a: ClipResult, b: ClipResult) -> None:
    assert a.values.keys() == b.values.keys()
    for k in a.values:
        assert a.values[k] == b.values[k] or (np.isnan(a.values[k]) and np.isnan(b.values[k])), k
    assert a.extra == b.extra
    assert a.per_frame.keys() == b.per_frame.keys()
    for k in a.per_frame:
        np.testing.assert_array_equal(a.per_frame[k], b.per_frame[k])


@pytest.mark.parametrize("name,kw", [("lmd", {}), ("lmd", {"protocol": "eat"}), ("ssim", {"backend": "skimage"}),
                                     ("ssim", {"backend": "torch"}), ("psnr", {}), ("mouth_r", {"min_frames": 5})])
def test_chunks_equal_whole(crops: tuple[np.ndarray, np.ndarray], name: str, kw: dict[str, Any]) -> None:
    """Bit for bit: the per-frame values do not depend on the chunking, and finish() reduces them as
    compute_clip() does (so no tolerance is needed)."""
    gen, gt = crops
    metric = get_metric(name, **kw)
    assert metric.chunked
    clip = ClipInput(clip_id="c", generated=gen, ground_truth=gt, audio=np.zeros(N * 640, np.float32),
                     identity=gt[0])
    whole = metric.compute_clip(clip)
    for size in (1, 7, N):
        _same(compute_chunked(metric, clip, size), whole)
    if name == "lmd":
        assert whole.extra["frames_excluded"] >= 1 and 25 in whole.extra["excluded_frames"]
        assert whole.values["LMD"] > 0


def test_short_feed_fails(crops: tuple[np.ndarray, np.ndarray]) -> None:
    """A feed that stops before the ground truth's last frame is an error, not a prefix scored."""
    from harness.core.errors import MediaError

    gen, gt = crops
    metric = get_metric("ssim")
    state = metric.start(ClipInput(clip_id="c", generated=gen[:0], ground_truth=gt))
    metric.update(state, gen[:10], gt[:10])
    with pytest.raises(MediaError, match="10 generated frames fed in chunks, expected 30"):
        metric.finish(state)


class AbsDiff(Metric):
    """Mean absolute pixel difference: a metric WITHOUT a chunked path (takes the collected crops)."""

    name: ClassVar[str] = "absdiff_test"
    outputs: ClassVar[tuple[str, ...]] = ("AbsDiff",)
    higher_is_better: ClassVar[dict[str, bool | None]] = {"AbsDiff": False}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def protocol(self) -> Protocol:
        return Protocol(metric="AbsDiff", backend="numpy", weights_sha256=None, crop="gt", resolution=256, fps=25.0)

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        d = np.abs(clip.generated.astype(np.int16) - clip.ground_truth.astype(np.int16))
        return ClipResult(values={"AbsDiff": float(d.mean())})


class FailingSSIM(type(get_metric("ssim"))):  # type: ignore[misc]
    """SSIM whose second chunk fails: the failure is this metric's alone."""

    def update(self, state: Any, generated: np.ndarray, ground_truth: np.ndarray | None) -> None:
        if state.seen:
            raise RuntimeError("second chunk refused")
        super().update(state, generated, ground_truth)


@pytest.fixture(scope="module")
def blurred(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder method's output: the clip blurred (not the ground truth: its crops differ on every frame)."""
    d = tmp_path_factory.mktemp("blurred")
    v = read_video(data_root / SRC, fps=25, max_frames=N).frames
    write_video(d / REC / "c.mp4", _blur(v, 1.5))
    return d


class _Spy:
    """Records what _consume_chunks returned (the collected generated crops, or None)."""

    def __init__(self) -> None:
        self.collected: list[Any] = []


def _evaluate(data_root: Path, tmp_path: Path, blurred: Path, metrics: dict[str, Metric], limit: int | None,
              tag: str) -> tuple[dict[str, dict[str, Any]], _Spy]:
    from harness.core.cache import Cache
    from harness.core.methods import get_method
    from harness.core.splits import ClipEntry
    from harness.evaluate import ClipIO, ClipTask, Evaluator

    spy = _Spy()

    class Spied(Evaluator):
        def _consume_chunks(self, *a: Any, **kw: Any) -> Any:
            out = super()._consume_chunks(*a, **kw)
            spy.collected.append(out[0])
            return out

    entry = ClipEntry(clip_id="c", identity="a", video=SRC, audio=WAV, frame_range=(0, N))
    methods = {"static_frame": get_method("static_frame"), "ground_truth": get_method("ground_truth"),
               "blurred": get_method("precomputed", dir=str(blurred))}
    ev = Spied(methods, metrics, {"c": entry}, str(data_root), io_=ClipIO(stream_above_bytes=limit),
               cache=Cache(tmp_path / f"cache-{tag}"), write_videos=False)
    return {k: ev.run(ClipTask(k, REC, "c")).record for k in methods}, spy


def test_streamed_run_feeds_metrics_without_collecting(data_root: Path, tmp_path: Path, blurred: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The streamed path (forced: stream threshold 0; chunks of 7 frames) records the whole-array path's values, extra and errors;
    with only chunked metrics no generated crops are collected, with one metric that has no chunked path they
    are (and it is scored on them); a metric failing mid-feed fails alone."""
    import harness.evaluate

    monkeypatch.setattr(harness.evaluate, "STREAM_CHUNK_FRAMES", 7)

    def metrics(extra: dict[str, Metric] | None = None) -> dict[str, Metric]:
        m = {n: get_metric(n) for n in CHUNKED}
        return {**m, **(extra or {})}

    mem, _ = _evaluate(data_root, tmp_path, blurred, metrics({"absdiff_test": AbsDiff()}), None, "mem")
    fed, spy = _evaluate(data_root, tmp_path, blurred, metrics(), 0, "fed")
    assert spy.collected == [None, None, None]  # every metric fed: nothing collected, for any method
    mixed, spy2 = _evaluate(data_root, tmp_path, blurred, metrics({"absdiff_test": AbsDiff()}), 0, "mixed")
    assert all(isinstance(c, np.ndarray) and len(c) == N for c in spy2.collected)
    for k in mem:
        a, b, c = mem[k], fed[k], mixed[k]
        assert a["status"] == b["status"] == c["status"] == "ok", (a["error"], b["error"], c["error"])
        assert not a["metric_errors"] and not b["metric_errors"] and not c["metric_errors"]
        for name in CHUNKED:
            assert a["values"][name] == b["values"][name] == c["values"][name], (k, name)
            assert a["extra"][name] == b["extra"][name] == c["extra"][name], (k, name)
        assert a["values"]["absdiff_test"] == c["values"]["absdiff_test"]
        assert set(b["timings"]["metrics"]) == set(CHUNKED)
    assert mem["ground_truth"]["values"]["lmd"]["LMD"] == 0.0 and mem["ground_truth"]["values"]["ssim"]["SSIM"] == 1.0
    assert mem["blurred"]["values"]["lmd"]["LMD"] > 0 and mem["blurred"]["values"]["ssim"]["SSIM"] < 1

    failing, _ = _evaluate(data_root, tmp_path, blurred, {"ssim": FailingSSIM(), "psnr": get_metric("psnr")}, 0,
                           "fail")
    for k, rec in failing.items():
        assert rec["status"] == "ok" and "second chunk refused" in rec["metric_errors"]["ssim"]
        assert "ssim" not in rec["values"] and rec["values"]["psnr"] == mem[k]["values"]["psnr"]
