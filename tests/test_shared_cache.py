"""Two `run`s at once into different folders, sharing one cold cache, with the processes executor: both
finish, and their summary.json and per_clip.csv equal those of a run alone, byte for byte.

Both runs miss the same cache keys at the same moments (faces, ground-truth features, generated frames), so
up to four workers write the same entries concurrently; harness.core.cache writes each entry to a temp file
and renames it, and equal keys hold equal bytes, so no reader ever sees a partial entry and either writer's
rename is as good as the other's. The same relative --out in three working folders makes run_id and
config.out agree, so the files compare as bytes (wall-clock fields live in timings.json).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np

import test_runner_support as sup

PROJECT = Path(__file__).resolve().parent.parent


def _cmd(split: str, root: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", "--split", split, "--root", str(root), "--out", "R",
            "--methods", "t_shifted,static_frame", "--metrics", "t_absdiff,t_split,ssim",
            "--settings", "reconstruction,cross_audio", "--plugin", "tests.test_runner_support", "--no-progress",
            "--no-videos", "--executor", "processes", "--workers", "2"]


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REALTALK_BENCH_NO_CACHE", "RTB_FAULT")}
    return {**env, "PYTHONPATH": str(PROJECT), "REALTALK_BENCH_CACHE": str(cache)}


def _entries(cache: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(d.iterdir()) for d in sorted(cache.iterdir()) if d.is_dir()}


def test_two_runs_sharing_a_cold_cache_equal_a_run_alone(data_root, tmp_path):
    split = sup.small_split(tmp_path, data_root, n_frames=20)
    cmd = _cmd(split, data_root)
    for d in ("solo", "a", "b"):
        (tmp_path / d).mkdir()
    solo = subprocess.run(cmd, cwd=tmp_path / "solo", env=_env(tmp_path / "solo-cache"), capture_output=True,
                          text=True, timeout=900)
    assert solo.returncode == 0, solo.stderr
    shared = tmp_path / "shared-cache"
    procs = [subprocess.Popen(cmd, cwd=tmp_path / d, env=_env(shared), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for d in ("a", "b")]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ref = tmp_path / "solo" / "R"
    for d in ("a", "b"):
        out = tmp_path / d / "R"
        assert (out / "summary.json").read_bytes() == (ref / "summary.json").read_bytes(), d
        assert (out / "per_clip.csv").read_bytes() == (ref / "per_clip.csv").read_bytes(), d
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["failures"] == [] and summary["config"]["executor"] == "processes"
    # the two really ran at the same time (the test is void otherwise)
    spans = [json.loads((tmp_path / d / "R" / "timings.json").read_text()) for d in ("a", "b")]
    (s0, f0), (s1, f1) = ((datetime.fromisoformat(t["started"]), datetime.fromisoformat(t["finished"])) for t in spans)
    assert s0 <= f1 and s1 <= f0, spans
    # the shared cache holds what one run alone writes: the same entries, each whole, no temp files left
    mine, alone = _entries(shared), _entries(tmp_path / "solo-cache")
    assert {k: [p.name for p in v] for k, v in mine.items()} == {k: [p.name for p in v] for k, v in alone.items()}
    assert len(mine["generated"]) == 4  # t_shifted x 2 clips x 2 settings (references are not cached)
    assert not list(shared.rglob(".tmp-*"))
    for kind, paths in mine.items():
        for p in paths:
            if p.suffix == ".npz":
                with zipfile.ZipFile(p) as z:
                    assert z.testzip() is None, p
                with np.load(p, allow_pickle=False) as z, np.load(tmp_path / "solo-cache" / kind / p.name,
                                                                  allow_pickle=False) as y:
                    assert sorted(z.files) == sorted(y.files), p
                    for k in z.files:
                        a, b = z[k], y[k]
                        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), (p, k)
