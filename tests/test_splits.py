"""Split manifests: structure, reproducible seeded selections, verify on the real data, clip loading."""
from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.core.errors import ManifestError, MediaError
from harness.core.splits import ClipEntry, list_splits, load_clip_media, load_drive_audio, load_split, materialize
from harness.core.splits.verify import verify_split


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


def _voxceleb_root(tmp_path: Path, data_root: Path) -> tuple[Path, list[str]]:
    """A data root holding a list in the official veri_test2.txt format (label path1 path2) over 60 utterances
    of the 40 test identities, each utterance a symlink to a real clip (video) and real speech (wav)."""
    root = tmp_path / "vox"
    stems = [f"id{10270 + i % 40}/yt{i:03d}/{j:05d}" for i in range(30) for j in (1, 2)]
    lst = root / "voxceleb1/meta/veri_test2.txt"
    lst.parent.mkdir(parents=True)
    lst.write_text("".join(f"{k % 2} {a}.wav {b}.wav\n" for k, (a, b) in enumerate(zip(stems, stems[1:] + stems[:1]))))
    for stem in stems:
        for kind, real in (("video", "video-retalking/face/2.mp4"), ("wav", "video-retalking/audio/1.wav")):
            dst = root / "voxceleb1/test" / kind / f"{stem}.{'mp4' if kind == 'video' else 'wav'}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(data_root / real, dst)
    return root, stems


def test_voxceleb_run_resolves_the_same_clips_as_show(data_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` picks its 50 clips from voxceleb1/meta/veri_test2.txt under --root exactly as `splits show` lists them."""
    from harness.cli import main
    from harness.runner import RunConfig, select_clips

    root, stems = _voxceleb_root(tmp_path, data_root)
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["splits", "show", "voxceleb1-test", "--root", str(root)]) == 0
    shown = [line.split("│")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("│ id")]
    _split, chosen, _all = select_clips(RunConfig(split="voxceleb1-test", out=str(tmp_path / "x"),
                                                  methods=["ground_truth"], root=str(root)))
    ids = [c.clip_id for c in chosen]
    assert len(ids) == 50 and ids == shown and set(ids) <= {s.replace("/", "_") for s in stems}
    run = tmp_path / "run"
    rc = main(["run", "--split", "voxceleb1-test", "--root", str(root), "--methods", "ground_truth,static_frame",
               "--metrics", "ssim,psnr", "--clips", ",".join(ids[:2]), "--max-frames", "12", "--out", str(run),
               "--no-progress", "--no-videos"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    s = json.loads((run / "summary.json").read_text())
    assert s["failures"] == [] and s["config"]["clips_selected"] == sorted(ids[:2])
    assert s["clip_set"]["cross_audio"]["common"] == sorted(ids[:2])
    assert s["results"]["reconstruction"]["ground_truth"]["SSIM"]["n_clips"] == 2
    # no list under the root: one line naming the file, no run folder
    rc = main(["run", "--split", "voxceleb1-test", "--root", str(tmp_path / "none"), "--methods", "ground_truth",
               "--out", str(tmp_path / "run2"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "veri_test2.txt" in err and "official list" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run2").exists()


def test_mead_defaults_to_reconstruction() -> None:
    from harness.core.methods import SETTINGS
    from harness.core.splits import settings_for

    mead = load_split("mead-test")
    assert settings_for(mead, mead.clips, None, SETTINGS) == (
        ["reconstruction"], "split mead-test: no clip has a cross-audio pair (drive_audio/drive_clip): "
                            "running reconstruction only")
    for asked in (["cross_audio"], ["reconstruction", "cross_audio"]):
        with pytest.raises(ManifestError, match="no cross-audio pairs"):
            settings_for(mead, mead.clips, asked, SETTINGS)
    assert settings_for(mead, mead.clips, ["reconstruction"], SETTINGS) == (["reconstruction"], None)
    demo = load_split("demo")
    assert settings_for(demo, demo.by_role("test"), None, SETTINGS) == (list(SETTINGS), None)
    with pytest.raises(ManifestError, match="unknown setting"):
        settings_for(demo, demo.clips, ["lipsync"], SETTINGS)


def test_split_without_pairs_runs_once_noted(data_root: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A split with no cross-audio pair (made with --cross-audio none, like MEAD): default settings run
    reconstruction only and say so in one line; --settings cross_audio is a one-line error."""
    from harness.cli import main

    manifest = tmp_path / "nopairs.yaml"
    assert main(["splits", "make", "nopairs", "--from-folder", str(data_root / "video-retalking/face"),
                 "--cross-audio", "none", "--out", str(manifest), "--no-progress"]) == 0
    capsys.readouterr()
    base = ["run", "--split", str(manifest), "--methods", "ground_truth,static_frame", "--metrics", "psnr",
            "--clips", "3", "--max-frames", "12", "--no-progress", "--no-videos"]
    assert main(base + ["--out", str(tmp_path / "r1")]) == 0
    out = capsys.readouterr().out
    assert out.count("no clip has a cross-audio pair") == 1 and "[failed]" not in out
    s = json.loads((tmp_path / "r1/summary.json").read_text())
    assert s["config"]["settings"] == ["reconstruction"] and s["failures"] == [] and list(s["results"]) == ["reconstruction"]
    assert main(base + ["--out", str(tmp_path / "r1")]) == 0  # resumes: the resolved settings are the identity
    assert "0 to do" in capsys.readouterr().out
    rc = main(base + ["--settings", "cross_audio", "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert rc == 1 and "no cross-audio pairs" in err and str(manifest) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r2").exists()
