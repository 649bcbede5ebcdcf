"""`run --shard I/N` + `merge`: two shards merged equal one unsharded run (per_clip.csv byte for byte,
summary.json equal but for the wall-clock fields); stores of different runs are refused."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import test_runner_support as sup
from harness.core.errors import BenchError
from harness.shards import parse_shard, shard_clips

PROJECT = Path(__file__).resolve().parent.parent
# Summary fields that measure time, the only ones allowed to differ between a merged and an unsharded run.
WALL_CLOCK = ("started", "finished", "wall_s", "first_started")
TIMING_WALL_CLOCK = ("generate_s_mean", "generate_ms_per_frame", "total_s_sum")  # in summary["timings"][m][s]


@dataclass
class Clip:
    clip_id: str


def test_shards_partition_the_clips_deterministically():
    ids = [f"clip{k:02d}" for k in range(11)]
    clips = [Clip(c) for c in ids]
    shuffled = clips[:]
    random.Random(1).shuffle(shuffled)
    parts = [[c.clip_id for c in shard_clips(clips, f"{i}/3")] for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == ids  # every clip once
    assert [len(p) for p in parts] == [4, 4, 3]  # sizes differ by at most one
    assert parts[0] == ["clip00", "clip03", "clip06", "clip09"]  # every 3rd clip id in sorted order
    for i in (1, 2, 3):  # the manifest's order does not matter
        assert sorted(c.clip_id for c in shard_clips(shuffled, f"{i}/3")) == parts[i - 1]
    assert shard_clips(clips, None) == clips
    assert parse_shard("2/2") == (2, 2)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0", "-1/2"):
        with pytest.raises(BenchError, match="expected I/N"):
            parse_shard(bad)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def _comparable(summary: dict) -> dict:
    s = {k: v for k, v in summary.items() if k not in WALL_CLOCK}
    s["timings"] = {m: {st: {k: v for k, v in t.items() if k not in TIMING_WALL_CLOCK} for st, t in by_s.items()}
                    for m, by_s in summary.get("timings", {}).items()}  # timings.json since the split
    return s


def test_two_shards_merged_equal_one_run(data_root, tmp_path):
    split = sup.small_split(tmp_path, data_root, n_frames=12)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "split": split, "root": str(data_root), "methods": ["ground_truth", "static_frame"],
        "metrics": "ssim,psnr,lmd", "max_frames": 12, "out": "R", "no_videos": True, "no_progress": True}))
    # the same --out name in each working folder: run_id and config.out are then the same by construction
    # (as a flag: a relative out: in the file would be taken from the file's folder, the same for all three)
    for where, extra in (("one", []), ("s1", ["--shard", "1/2"]), ("s2", ["--shard", "2/2"])):
        r = _cli(["run", "--config", str(cfg), "--out", "R", *extra], tmp_path / where)
        assert r.returncode == 0, r.stderr
    one, s1, s2 = (tmp_path / w / "R" for w in ("one", "s1", "s2"))
    assert sorted(p.name for p in (s1 / "clips" / "ground_truth" / "reconstruction").iterdir()) == ["Obama_clip3.json"]
    assert sorted(p.name for p in (s2 / "clips" / "ground_truth" / "reconstruction").iterdir()) == ["andrew_clip_2.json"]
    r = _cli(["merge", str(s1), str(s2), "--out", "R"], tmp_path / "merged")
    assert r.returncode == 0, r.stderr
    merged = tmp_path / "merged" / "R"
    assert (merged / "per_clip.csv").read_bytes() == (one / "per_clip.csv").read_bytes()
    a = json.loads((one / "summary.json").read_text())
    b = json.loads((merged / "summary.json").read_text())
    assert _comparable(a) == _comparable(b)
    assert a["failures"] == [] and len(a["clip_set"]["reconstruction"]["common"]) == 2
    # the gate can fail: a shard's own summary is not the run's (one clip), and a merge of shard 1 alone
    # reports the other shard's clips as failures (exit 1) instead of a smaller run
    assert _comparable(json.loads((s1 / "summary.json").read_text())) != _comparable(a)
    r = _cli(["merge", str(s1), "--out", "half"], tmp_path / "merged")
    assert r.returncode == 1 and "shard(s) 2/2 not given" in r.stdout
    half = json.loads((tmp_path / "merged" / "half" / "summary.json").read_text())
    assert {f["clip_id"] for f in half["failures"]} == {"andrew_clip_2"}
    assert all(f["error"] == "no record (not run)" for f in half["failures"])
    # the merged store resumes under the unsharded command (same identity): nothing redone
    r = _cli(["run", "--config", str(cfg), "--out", "R"], tmp_path / "merged")
    assert r.returncode == 0 and "8 finished earlier, 0 to do" in r.stdout, r.stdout + r.stderr
    # refused: a shard of another run (other max_frames), the same shard twice, an unsharded store
    r = _cli(["run", "--config", str(cfg), "--out", "R", "--shard", "2/2", "--max-frames", "6", "--metrics", "ssim"],
             tmp_path / "s3")
    assert r.returncode == 0, r.stderr
    for dirs, problem in (([s1, tmp_path / "s3" / "R"], "differs in: max_frames, metrics"),
                          ([s1, s1], "is shard 1/2 again"), ([s1, one], "is not a shard")):
        r = _cli(["merge", *map(str, dirs), "--out", "bad"], tmp_path / "merged")
        err = r.stderr.strip()
        assert r.returncode == 1 and problem in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert not (tmp_path / "merged" / "bad").exists()
