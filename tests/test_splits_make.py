"""`realtalk-bench splits make`: manifests from a folder of real clips, then verify, load and run them."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from harness.core.cache import file_digest
from harness.cli import main
from harness.core.splits import load_split
from harness.core.splits.make import rotate_pairs, sanitize_id, unique_ids
from harness.core.splits.verify import verify_split

VR = "video-retalking/face"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _make(capsys, folder: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _cli(capsys, "splits", "make", out.stem, "--from-folder", str(folder), "--out", str(out),
                "--no-progress", *extra)


def test_make_from_real_folder_pins_match_demo(data_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Measured pins agree with the demo manifest's (made independently, from the pinned upstream files)."""
    out = tmp_path / "vr.yaml"
    rc, stdout, err = _make(capsys, data_root / VR, out)
    assert rc == 0, stdout + err
    assert "5 clip(s)" in stdout and "5 cross-audio pair(s)" in stdout
    split = load_split(out)
    assert split.name == "vr" and [c.clip_id for c in split.clips] == ["1", "2", "3", "4", "5"]
    demo = load_split("demo").files
    for c in split.clips:
        assert c.role == "test" and c.audio is None and c.frame_range is None
        assert Path(c.video).is_absolute() and Path(c.video).parent == data_root / VR
        pins = demo[f"{VR}/{c.clip_id}.mp4"]
        assert c.sha256 == pins["sha256"] == file_digest(c.video)
        assert abs(c.duration - pins["duration"]) <= split.tolerance["duration_s"]
        assert abs(c.fps - pins["fps"]) <= split.tolerance["fps_rel"] * pins["fps"]
    assert split.get("1").fps == pytest.approx(22.13, abs=0.01)  # the variable-frame-rate clip's average
    # rotate: a single cycle over all clips, never a clip driven by its own speech
    drive = {c.clip_id: c.drive_clip for c in split.clips}
    assert sorted(drive.values()) == sorted(drive) and all(k != v for k, v in drive.items())
    seen, k = [], "1"
    while k not in seen:
        seen.append(k)
        k = drive[k]
    assert len(seen) == 5
    for c in split.clips:
        assert c.drive_audio == split.get(c.drive_clip).video
    rows = verify_split(split)
    assert len(rows) == 5 and all(r.ok for r in rows), [(r.rel, r.problems) for r in rows if not r.ok]
    rc, stdout, err = _cli(capsys, "splits", "verify", str(out))
    assert rc == 0 and "5/5 files ok" in stdout, stdout + err
    # same folder, same seed: the same manifest clips; --out exists: refused without --force
    rc, _, err = _make(capsys, data_root / VR, out)
    assert rc == 1 and "--force" in err and len(err.strip().splitlines()) == 1
    again = tmp_path / "vr2.yaml"
    assert _make(capsys, data_root / VR, again, "--seed", "0")[0] == 0
    assert yaml.safe_load(again.read_text())["clips"] == yaml.safe_load(out.read_text())["clips"]


def test_made_split_runs(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """make -> run --split path.yaml on 2 real clips, 12 frames, both settings, cheap metrics."""
    out = tmp_path / "vr.yaml"
    assert _make(capsys, data_root / VR, out)[0] == 0
    run = tmp_path / "run"
    rc, stdout, err = _cli(capsys, "run", "--split", str(out), "--methods", "ground_truth,static_frame",
                           "--metrics", "ssim,psnr", "--clips", "2,4", "--max-frames", "12", "--out", str(run),
                           "--no-progress", "--no-videos")
    assert rc == 0, stdout + err
    s = json.loads((run / "summary.json").read_text())
    assert s["failures"] == [] and s["config"]["settings"] == ["reconstruction", "cross_audio"]
    assert s["clip_set"]["reconstruction"]["common"] == ["2", "4"]
    assert s["clip_set"]["cross_audio"]["common"] == ["2", "4"]
    rec = s["results"]["reconstruction"]
    assert rec["ground_truth"]["SSIM"]["mean"] == pytest.approx(1.0, abs=1e-9)
    assert rec["ground_truth"]["SSIM"]["n_clips"] == 2 and rec["ground_truth"]["SSIM"]["frames_total"] == 24
    assert rec["static_frame"]["SSIM"]["mean"] < 0.99  # a frozen frame is not the moving ground truth


def test_make_with_audio_dir(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """styletalk videos have no audio track: --audio-dir is required and each speech file is pinned."""
    out = tmp_path / "st.yaml"
    rc, _, err = _make(capsys, data_root / "styletalk/video", out)
    assert rc == 1 and "no audio track" in err and "Obama_clip1.mp4" in err and len(err.strip().splitlines()) == 1
    rc, stdout, err = _make(capsys, data_root / "styletalk/video", out, "--audio-dir", str(data_root / "styletalk/wav"),
                            "--root", str(data_root), "--role", "train", "--cross-audio", "none")
    assert rc == 0, stdout + err
    split = load_split(out)
    assert len(split.clips) == 8 and all(c.role == "train" and c.drive_clip is None for c in split.clips)
    c = split.get("andrew_clip_2")
    assert c.video == "styletalk/video/andrew_clip_2.mp4" and c.audio == "styletalk/wav/andrew_clip_2.wav"
    pins = split.files[c.audio]
    assert pins["sha256"] == file_digest(data_root / c.audio) and pins["sample_rate"] == 16000
    assert pins["duration"] == pytest.approx(27.0048, abs=split.tolerance["duration_s"])  # demo.yaml's pin
    assert all(r.ok for r in verify_split(split, data_root))


def test_make_bad_folders(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Empty folder, a truncated video, a missing speech file: one-line errors naming the path."""
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = _make(capsys, empty, tmp_path / "e.yaml")
    assert rc == 1 and str(empty) in err and "no video files" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    os.symlink(data_root / VR / "2.mp4", bad / "a.mp4")
    (bad / "b.mp4").write_bytes((data_root / VR / "3.mp4").read_bytes()[:3000])  # truncated real file
    rc, _, err = _make(capsys, bad, tmp_path / "b.yaml")
    assert rc == 1 and str(bad / "b.mp4") in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.yaml").exists()
    (bad / "b.mp4").unlink()
    audio = tmp_path / "audio"
    audio.mkdir()
    rc, _, err = _make(capsys, bad, tmp_path / "c.yaml", "--audio-dir", str(audio))
    assert rc == 1 and str(bad / "a.mp4") in err and "--audio-dir" in err and len(err.strip().splitlines()) == 1


def test_ids_from_nested_folders(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Repeated stems take their folder; odd characters are sanitised; other files are listed as ignored."""
    src = tmp_path / "mine"
    for rel, real in (("alice/take 1.mp4", "2.mp4"), ("bob/take 1.mp4", "3.mp4"), ("bob/x(2).mp4", "5.mp4")):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(data_root / VR / real, src / rel)
    (src / "notes.txt").write_text("not a video\n")
    out = tmp_path / "mine.yaml"
    rc, stdout, err = _make(capsys, src, out, "--seed", "3")
    assert rc == 0, stdout + err
    assert "ignored 1 non-video file(s): notes.txt" in stdout
    split = load_split(out)
    assert [(c.clip_id, c.identity) for c in split.clips] == [("alice_take_1", "alice"), ("bob_take_1", "bob"),
                                                              ("x_2", "bob")]
    # bob's two clips are both driven by alice (the only other identity), alice by one of bob's
    assert split.get("bob_take_1").drive_clip == split.get("x_2").drive_clip == "alice_take_1"
    assert split.get("alice_take_1").drive_clip in ("bob_take_1", "x_2")


def test_sanitize_and_unique_ids() -> None:
    assert sanitize_id("my clip (1)") == "my_clip_1" and sanitize_id("...") == "clip"
    rels = [Path("a/1.mp4"), Path("b/1.mp4"), Path("a_1.mp4"), Path("2.mp4")]
    assert unique_ids(rels) == ["a_1", "b_1", "a_1-2", "2"]


def test_rotate_pairs_prefers_other_identity() -> None:
    ids = ["a1", "a2", "b1", "b2", "c1"]
    ident = ["a", "a", "b", "b", "c"]
    for seed in range(20):
        drive = rotate_pairs(ids, ident, seed)
        assert all(ident[j] != ident[k] for k, j in enumerate(drive)), (seed, drive)
        assert all(j != k for k, j in enumerate(drive))
    one = rotate_pairs(["x", "y", "z"], ["p", "p", "p"], 0)
    assert sorted(one) == [0, 1, 2] and all(j != k for k, j in enumerate(one))  # a cycle, never itself
