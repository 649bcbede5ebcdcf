"""A split where only some clips have a cross-audio pair: cross_audio runs the paired clips only, and the
unpaired ones are counted and said once (stderr, summary settings.cross_audio, report and compare notes)
instead of failing one by one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import test_runner_support as sup
from harness.cli import main


def _one_pair_split(tmp_path: Path, data_root: Path) -> Path:
    """The runner's 2-clip manifest with andrew_clip_2's drive pair removed (Obama_clip3 keeps its pair)."""
    p = Path(sup.small_split(tmp_path, data_root, n_frames=12))
    doc = yaml.safe_load(p.read_text())
    for c in doc["clips"]:
        if c["clip_id"] == "andrew_clip_2":
            c.pop("drive_audio")
            c.pop("drive_clip")
    p.write_text(yaml.safe_dump(doc))
    return p


def test_unpaired_clips_skipped_in_cross_audio_said_once(standins, data_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    split = _one_pair_split(tmp_path, data_root)
    out = tmp_path / "r"
    cmd = ["run", "--split", str(split), "--root", str(data_root), "--methods", "ground_truth,static_frame",
           "--metrics", "psnr,t_motion", "--max-frames", "12", "--no-progress", "--no-videos", "--out", str(out)]
    assert main(cmd) == 0
    cap = capsys.readouterr()
    line = "cross_audio: 1 of 2 clips (1 without a drive pair, reconstruction only: andrew_clip_2)"
    assert cap.err.count(line) == 1, cap.err
    assert "[failed]" not in cap.out and "0 finished earlier, 6 to do" in cap.out  # 2x2 reconstruction + 2x1 cross
    s = json.loads((out / "summary.json").read_text())
    assert s["failures"] == []
    assert s["settings"]["cross_audio"]["skipped_unpaired"] == ["andrew_clip_2"]
    assert (s["settings"]["cross_audio"]["clips"], s["settings"]["cross_audio"]["of"]) == (1, 2)
    assert s["settings"]["reconstruction"] == {"clips": 2, "of": 2}
    assert s["clip_set"]["cross_audio"] == {"common": ["Obama_clip3"], "excluded": {}}
    assert s["clip_set"]["reconstruction"]["common"] == ["Obama_clip3", "andrew_clip_2"]
    assert s["results"]["cross_audio"]["static_frame"]["MOTION"]["n_clips"] == 1
    assert not (out / "clips/static_frame/cross_audio/andrew_clip_2.json").exists()
    assert line in cap.out  # the terminal table's note

    assert main(cmd) == 0  # resume: nothing left to do, and the unpaired clip is still not a failure
    assert "0 to do" in capsys.readouterr().out

    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--no-videos", "--grid-clips", "0"]) == 0
    assert f"runner-test.yaml {line}" in (tmp_path / "rep/table.md").read_text()  # a table footnote
    assert line in (tmp_path / "rep/index.html").read_text()

    capsys.readouterr()
    assert main(["compare", str(out), str(out), "--format", "markdown"]) == 0
    assert f"- A and B {line}" in capsys.readouterr().out


def test_only_paired_clips_chosen_no_note(standins, data_root: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The note is about the clips chosen: --clips with the paired clip only says nothing."""
    split = _one_pair_split(tmp_path, data_root)
    out = tmp_path / "r"
    assert main(["run", "--split", str(split), "--root", str(data_root), "--methods", "static_frame",
                 "--metrics", "t_motion", "--clips", "Obama_clip3", "--max-frames", "8", "--no-progress",
                 "--no-videos", "--out", str(out)]) == 0
    assert "without a drive pair" not in capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["cross_audio"] == {"clips": 1, "of": 1, "skipped_unpaired": []}
