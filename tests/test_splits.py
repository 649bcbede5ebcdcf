"""Split manifests: structure, reproducible seeded selections, verify on the real data, clip loading."""
from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.errors import ManifestError, MediaError
from harness.splits import ClipEntry, list_splits, load_clip_media, load_drive_audio, load_split, materialize
from harness.splits.verify import verify_split


def test_shipped_splits() -> None:
    assert {"demo", "hdtf-test", "voxceleb1-test", "mead-test"} <= set(list_splits())
    for name in list_splits():
        s = load_split(name)
        assert s.selection_rule and s.description


def test_demo_structure() -> None:
    s = load_split("demo")
    train, test = s.by_role("train"), s.by_role("test")
    assert len(train) == 8 and len(test) == 5
    assert {c.clip_id for c in test} == {"Obama_clip3", "andrew_clip_2", "feifeili_clip3", "vr_face1", "vr_face4"}
    assert not {c.video for c in train} & {c.video for c in test}  # whole clips held out
    for c in test:
        assert c.frame_range == (0, 100) and c.drive_audio
        assert c.drive_audio != c.audio_path()
    assert s.get("Obama_clip3").drive_audio == "styletalk/wav/andrew_clip_2.wav"
    assert s.get("vr_face1").drive_audio == "video-retalking/audio/2.wav"
    assert s.get("vr_face4").drive_clip == "feifeili_clip3"
    for rel, pins in s.all_files().items():
        assert len(pins["sha256"]) == 64 and pins["duration"] > 0
        assert pins["url"].startswith("https://raw.githubusercontent.com/") and "/" + rel.split("/", 1)[1] in pins["url"]


def test_seeded_selections_reproduce() -> None:
    for name, n in (("hdtf-test", 20), ("mead-test", 3)):
        doc = yaml.safe_load((Path(load_split(name).path)).read_text())
        pop = doc["population"]
        assert pop == sorted(pop) and len(set(pop)) == len(pop)
        picked = sorted(np.random.default_rng(doc["seed"]).choice(pop, n, replace=False).tolist())
        s = load_split(name)
        got = sorted({c.clip_id for c in s.clips}) if name == "hdtf-test" else sorted(
            {c.identity for c in s.clips})
        assert got == picked
    mead = load_split("mead-test")
    assert len(mead.clips) == 24 and all("/video/front/" in c.video for c in mead.clips)
    assert len({c.video.split("/")[4] for c in mead.clips}) == 8
    assert all(c.video.startswith("HDTF/") for c in load_split("hdtf-test").clips)


def test_voxceleb_pending_selection(tmp_path: Path) -> None:
    s = load_split("voxceleb1-test")
    assert s.clips == [] and s.pending
    with pytest.raises(ManifestError, match="official list"):
        materialize(s, tmp_path)
    # the parser and the seeded rule on a list in the official format (label path1 path2)
    lst = tmp_path / "voxceleb1/meta/veri_test2.txt"
    lst.parent.mkdir(parents=True)
    lines = [f"1 id{10270 + i % 40}/vid{i:03d}/{j:05d}.wav id{10270 + i % 40}/vid{i:03d}/{j + 1:05d}.wav"
             for i in range(40) for j in (1, 3)]
    lst.write_text("\n".join(lines) + "\n")
    a = materialize(load_split("voxceleb1-test"), tmp_path)
    b = materialize(load_split("voxceleb1-test"), tmp_path)
    assert len(a.clips) == 50 and [c.clip_id for c in a.clips] == [c.clip_id for c in b.clips]
    assert a.clips[0].audio.startswith("voxceleb1/test/wav/id") and a.clips[0].drive_clip == a.clips[1].clip_id


def test_verify_demo_on_real_data(data_root: Path) -> None:
    rows = verify_split(load_split("demo"), data_root)
    assert len(rows) == 23
    assert all(r.ok for r in rows), [(r.rel, r.problems) for r in rows if not r.ok]


def test_verify_reports_problems(data_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "styletalk/video").mkdir(parents=True)
    os.symlink(data_root / "styletalk/video/Obama_clip3.mp4", root / "styletalk/video/Obama_clip1.mp4")  # wrong file
    rows = {r.rel: r for r in verify_split(load_split("demo"), root)}
    assert rows["styletalk/video/Obama_clip1.mp4"].problems and not rows["styletalk/video/Obama_clip1.mp4"].ok
    assert rows["styletalk/wav/Obama_clip1.wav"].problems == ["missing"]


def test_load_clip_media_test_clips(data_root: Path) -> None:
    s = load_split("demo")
    for c in s.by_role("test"):
        video, audio = load_clip_media(c, data_root)
        assert len(video) == 100 and audio.shape == (64000,) and audio.dtype == np.float32
        assert np.abs(audio).max() > 0.01  # real speech
        drive = load_drive_audio(c, data_root, n_frames=100)
        assert drive.shape == (64000,)


def _wav(path: Path, seconds: float, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(sr)
        w.writeframes((np.sin(np.arange(int(seconds * sr)) / 5) * 8000).astype("<i2").tobytes())
    return path


def test_short_wav_detected_when_aligning(data_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "v").mkdir(parents=True)
    os.symlink(data_root / "video-retalking/face/2.mp4", root / "v/clip.mp4")  # 5.0 s, 125 frames
    _wav(root / "a/short.wav", 4.0)
    _wav(root / "a/nearly.wav", 4.95)
    entry = ClipEntry(clip_id="x", identity="x", video="v/clip.mp4", audio="a/short.wav")
    with pytest.raises(MediaError) as exc:
        load_clip_media(entry, root)
    assert "short.wav" in str(exc.value) and "shorter" in str(exc.value)
    entry.audio = "a/nearly.wav"
    with pytest.warns(UserWarning, match="zero-padded"):
        video, audio = load_clip_media(entry, root)
    assert audio.shape == (len(video) * 640,)


def test_bad_manifest(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nclips:\n  - {clip_id: a, video: a.mp4, role: dev}\n")
    with pytest.raises(ManifestError, match="role"):
        load_split(p)
    with pytest.raises(ManifestError, match="unknown split"):
        load_split("no-such-split")
