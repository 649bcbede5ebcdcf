"""`realtalk-bench splits prepare`: decode + cached face pass over a split's clips, on the real demo clips."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main


@pytest.fixture()
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache, so the first pass is a miss whatever the session cache holds."""
    monkeypatch.setenv("REALTALK_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["splits", "prepare", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_prepare_demo_clips_then_cached(data_root: Path, tmp_path: Path, own_cache: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A train clip (embedded AAC) and a test clip (separate wav): 8 frames each, then all from the cache."""
    out_json = tmp_path / "prep.json"
    args = ("demo", "--clips", "vr_face2,Obama_clip3", "--max-frames", "8", "--root", str(data_root))
    rc, out, err = _run(capsys, *args, "--json", str(out_json))
    assert rc == 0, out + err
    doc = json.loads(out_json.read_text())
    rows = doc["rows"]
    assert [r["clip_id"] for r in rows] == ["vr_face2", "Obama_clip3"]
    assert [r["role"] for r in rows] == ["train", "test"]
    for r in rows:
        assert r["ok"] and r["error"] is None and r["frames"] == 8
        assert r["decode_s"] > 0 and r["face_s"] > 0 and r["cached"] is False
        assert r["audio_s"] == pytest.approx(8 / 25, abs=0.01)
    assert doc["total"]["frames"] == 16 and doc["total"]["failed"] == 0 and doc["total"]["wall_s"] > 0
    assert doc["max_frames"] == 8 and doc["fps"] == 25.0 and doc["sample_rate"] == 16000
    assert "vr_face2" in out and "Obama_clip3" in out and "total (2/2 ok)" in out
    assert "prepare" in err  # the tqdm bar

    rc, out, _ = _run(capsys, *args, "--json", str(out_json))
    assert rc == 0
    again = json.loads(out_json.read_text())["rows"]
    assert all(r["cached"] is True and r["frames"] == 8 for r in again)
    assert "2/2" in out


def test_prepare_failing_clip_goes_on(data_root: Path, tmp_path: Path, own_cache: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A clip whose video is missing is a row with its error; the next clip still runs; exit 1."""
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump({"name": "broken", "clips": [
        {"clip_id": "gone", "video": "nope/missing.mp4", "role": "test", "frame_range": [0, 100]},
        {"clip_id": "vr_face2", "video": "video-retalking/face/2.mp4", "role": "train", "frame_range": [2, 3]},
    ]}))
    out_json = tmp_path / "broken.json"
    rc, out, _ = _run(capsys, str(manifest), "--max-frames", "4", "--root", str(data_root), "--json", str(out_json))
    assert rc == 1
    gone, ok = json.loads(out_json.read_text())["rows"]
    assert not gone["ok"] and "MediaError" in gone["error"] and "missing.mp4" in gone["error"]
    assert gone["frames"] is None and gone["cached"] is None
    assert ok["ok"] and ok["frames"] == 4  # frame_range [2, 3) ignored: whole file, capped by --max-frames
    assert "file does not exist" in out and "total (1/2 ok)" in out


def test_prepare_unknown_clip_is_a_clear_error(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, "demo", "--clips", "vr_face2,no_such_clip", "--root", str(data_root))
    assert rc == 1 and out == ""
    assert "no_such_clip" in err and "known:" in err and "Obama_clip3" in err
    assert _run(capsys, "demo", "--clips", ",", "--root", str(data_root))[0] == 1
    assert _run(capsys, "demo", "--max-frames", "0", "--root", str(data_root))[0] == 1
