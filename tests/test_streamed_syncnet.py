"""SyncNet on a clip decoded in chunks (issue 15 item 5): the evaluator cuts SyncNet's 224 crops as the full
frames stream past, so LSE-C/D of a long clip are the whole-array path's values, not a metric error. The
official weights are absent here: a random network in the official format, as tests/test_metrics_syncnet.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_metrics_syncnet import random_official_weights as syncnet_weights  # noqa: E402  (the fixture)

FIXTURES = (syncnet_weights,)


@pytest.mark.filterwarnings("ignore:.*UNVERIFIED")
def test_streamed_syncnet_equals_in_memory(data_root: Path, syncnet_weights: Path,
                                           tmp_path: Path) -> None:
    from harness.core.cache import Cache
    from harness.core.methods import get_method
    from harness.core.splits import ClipEntry
    from harness.evaluate import ClipIO, ClipTask, Evaluator
    from metrics.base import get_metric

    entry = ClipEntry(clip_id="c", identity="a", video="video-retalking/face/2.mp4", frame_range=(3, 23))
    recs = {}
    for name, limit in (("memory", None), ("streamed", 0)):
        methods = {m: get_method(m) for m in ("ground_truth", "static_frame")}
        ev = Evaluator(methods, {"syncnet": get_metric("syncnet")}, {"c": entry}, str(data_root),
                       io_=ClipIO(stream_above_bytes=limit), cache=Cache(tmp_path / f"cache-{name}"),
                       write_videos=False)
        recs[name] = {m: ev.run(ClipTask(m, "reconstruction", "c")).record for m in methods}
        if limit == 0:
            assert hasattr(ev.ground_truth("c", "reconstruction")["video"].frames, "chunks")
    for m in ("ground_truth", "static_frame"):
        a, b = recs["memory"][m], recs["streamed"][m]
        assert a["status"] == b["status"] == "ok" and not a["metric_errors"] and not b["metric_errors"], (a, b)
        assert a["values"]["syncnet"] == b["values"]["syncnet"]
        assert a["extra"]["syncnet"] == b["extra"]["syncnet"]
