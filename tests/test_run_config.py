"""`run --config run.yaml` (flags override the file, unknown keys refused) and `rerun RUN_DIR --out NEW`
(a replay from the stored config gives the same per_clip.csv); the summary names the manifest's sha256
and, for a method run from its own repository, that repository and its git commit."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import test_runner_support as sup
from harness.cli import build_parser, main

PROJECT = Path(__file__).resolve().parent.parent


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_unknown_key_is_one_line_naming_file_and_key(tmp_path, capsys):
    cfg = _write(tmp_path / "run.yaml", {"split": "demo", "methods": ["ground_truth"], "out": "x", "max_frame": 3})
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(cfg) in err and "'max_frame'" in err and "max_frames" in err  # names the key, suggests the right one


@pytest.mark.parametrize("text, problem", [
    ("methods: 3\n", "key 'methods': expected a list"),
    ("max_frames: ten\n", "key 'max_frames': expected an integer"),
    ("metric_args: {lmd: eat}\n", "key 'metric_args': expected a mapping"),
    ("methods: [a\n", "not valid YAML at line"),
    ("- split\n", "must be a mapping"),
])
def test_bad_values_are_one_line_errors(tmp_path, capsys, text, problem):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(text)
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(cfg) in err and problem in err, err


def test_missing_required_names_flag_and_key(tmp_path, capsys):
    cfg = _write(tmp_path / "run.yaml", {"methods": ["ground_truth"], "out": "x"})
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "missing split" in err and "--split" in err and "'split:'" in err


def test_flags_override_the_file(tmp_path):
    from harness.commands.run import config_from_args

    cfg = _write(tmp_path / "run.yaml", {
        "split": "demo", "methods": ["ground_truth", "static_frame"], "out": "runs/a", "max-frames": 12,
        "settings": "reconstruction", "metrics": ["ssim", "lmd"], "no_videos": True, "shard": "1/2",
        "metric_args": {"lmd": {"protocol": "eat", "backend": "dlib"}}, "method_arg": ["realtalk.steps=4"]})
    args = build_parser().parse_args(["run", "--config", str(cfg), "--max-frames", "20", "--out", "runs/b",
                                      "--metric-arg", "lmd.protocol=realtalk", "--seed", "3"])
    rc = config_from_args(args)
    assert rc.max_frames == 20 and rc.out == "runs/b" and rc.seed == 3  # flags win
    assert rc.methods == ["ground_truth", "static_frame"] and rc.settings == ["reconstruction"]  # file kept
    assert rc.metrics == ["ssim", "lmd"] and rc.write_videos is False and rc.shard == "1/2"
    assert rc.metric_args == {"lmd": {"protocol": "realtalk", "backend": "dlib"}}  # per-key override
    assert rc.method_args == {"realtalk": {"steps": 4}}
    # without a file, the flags' defaults are RunConfig's
    bare = config_from_args(build_parser().parse_args(["run", "--split", "demo", "--methods", "a", "--out", "o"]))
    assert (bare.settings, bare.metrics, bare.role, bare.write_videos, bare.shard) == (None, "all", "test", True, None)


def test_config_run_then_rerun_gives_identical_per_clip(data_root, tmp_path):
    split = Path(sup.small_split(tmp_path, data_root, n_frames=12))
    cfg = _write(tmp_path / "run.yaml", {
        "split": str(split), "root": str(data_root), "methods": ["ground_truth", "static_frame"],
        "metrics": "ssim,psnr,lmd", "metric_args": {"lmd": {"protocol": "eat"}}, "max_frames": 12,
        "settings": ["reconstruction"], "out": "first", "no_videos": True, "no_progress": True})
    r = _cli(["run", "--config", str(cfg)], tmp_path)
    assert r.returncode == 0, r.stderr
    first = tmp_path / "first"
    summary = json.loads((first / "summary.json").read_text())
    assert summary["config"]["split_sha256"] == hashlib.sha256(split.read_bytes()).hexdigest()
    assert summary["config"]["metric_args"] == {"lmd": {"protocol": "eat"}}
    assert summary["metric_config"]["lmd"]["protocol"] == "eat"
    assert summary["config"]["max_frames"] == 12 and summary["config"]["write_videos"] is False
    # replay from another working directory into a new folder: every clip evaluated again
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _cli(["rerun", str(first), "--out", "again", "--no-progress"], elsewhere)
    assert r.returncode == 0, r.stderr
    again = elsewhere / "again"
    assert "0 finished earlier, 4 to do" in r.stdout
    rows = (first / "per_clip.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 * (1 + 1 + 4)  # header + 2 methods x 2 clips x (SSIM, PSNR, 4 LMD values)
    assert (again / "per_clip.csv").read_bytes() == (first / "per_clip.csv").read_bytes()
    s2 = json.loads((again / "summary.json").read_text())
    assert s2["results"] == summary["results"] and s2["config"]["out"] == "again"
    # the manifest edited since: the replay says so
    split.write_text(split.read_text() + "# edited\n")
    r = _cli(["rerun", str(first), "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "changed since the run" in r.stdout and "4 finished earlier, 0 to do" in r.stdout


def test_rerun_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["rerun", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run store" in err and str(tmp_path) in err


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_subprocess_method_records_repo_and_commit(tmp_path):
    """summary 'methods' entries of a repository-run baseline name the repository and its commit."""
    from baselines.subprocess_adapter import SubprocessMethod
    from harness.runner import method_info

    def method(repo: Path) -> SubprocessMethod:
        repo.mkdir()
        return SubprocessMethod(config={"name": "standin", "repo": str(repo), "python": sys.executable,
                                        "command": ["{python}", "-c", "pass"], "output": {"glob": "{out}/*.mp4"}})

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    repo = tmp_path / "repo"
    m = method(repo)
    (repo / "x.py").write_text("pass\n")
    for cmd in (["init", "-q"], ["add", "x.py"], ["commit", "-q", "-m", "x"]):
        subprocess.run([*git, "-C", str(repo), *cmd], check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    info = method_info(m)
    assert info["repo"] == str(repo) and info["repo_commit"] == head and len(head) == 40
    plain = method_info(method(tmp_path / "plain"))
    assert plain["repo"] == str(tmp_path / "plain") and plain["repo_commit"] is None


def test_every_run_flag_has_a_config_key():
    """A new `run` flag must be settable from the file too (and reach the RunConfig)."""
    import argparse

    from harness.commands.run import add_run_options, cli_options
    from harness.run_config import ALIASES, OPTIONS

    p = argparse.ArgumentParser()
    add_run_options(p)
    dests = {a.dest for a in p._actions if a.dest not in ("help", "config")}
    keys = {ALIASES.get(d, d) for d in dests}
    file_only = {"batch_size"}  # RunConfig's metric batch size: settable in the file, no flag
    assert keys | file_only == set(OPTIONS) and not keys & file_only
    assert set(cli_options(p.parse_args([]))) | file_only == set(OPTIONS)


def test_config_paths_are_relative_to_the_file(tmp_path):
    """root, out, a .yaml split, .py plugins and folder:NAME=DIR in a run file are taken from the file's folder;
    absolute paths, split names, module plugins and other methods stay as written."""
    from harness.run_config import load_run_file

    d = tmp_path / "exp"
    d.mkdir()
    cfg = _write(d / "run.yaml", {"split": "splits/mine.yaml", "root": "data", "out": "runs/a",
                                  "plugins": ["plug.py", "some_module", "/abs/p.py"],
                                  "methods": ["folder:mine=outputs", "folder:abs=/x/y", "static_frame"]})
    opts = load_run_file(cfg)
    assert opts["split"] == str(d / "splits/mine.yaml") and opts["root"] == str(d / "data")
    assert opts["out"] == str(d / "runs/a")
    assert opts["plugins"] == [str(d / "plug.py"), "some_module", "/abs/p.py"]
    assert opts["methods"] == [f"folder:mine={d / 'outputs'}", "folder:abs=/x/y", "static_frame"]
    named = load_run_file(_write(d / "named.yaml", {"split": "demo", "root": "/data", "out": "/r"}))
    assert (named["split"], named["root"], named["out"]) == ("demo", "/data", "/r")


def test_config_run_from_another_directory(data_root, tmp_path):
    """A run file with relative paths (manifest, data root, outputs folder, plugin file, out) runs the same from
    any current directory; a path typed as a flag stays relative to the current directory."""
    from harness.core.media import read_audio, read_video, write_video

    exp = tmp_path / "exp"
    (exp / "outputs/reconstruction").mkdir(parents=True)
    (exp / "data").symlink_to(data_root)
    shutil.copy(sup.small_split(tmp_path, data_root, n_frames=8), exp / "mine.yaml")
    v = read_video(data_root / "styletalk/video/Obama_clip3.mp4", fps=25.0, max_frames=8)
    write_video(exp / "outputs/reconstruction/Obama_clip3.mp4", v.frames, fps=25.0,
                audio=read_audio(data_root / "styletalk/wav/Obama_clip3.wav", duration_s=8 / 25))
    (exp / "plug.py").write_text("# a plugin file next to the run file (registers nothing)\n")
    cfg = _write(exp / "run.yaml", {"split": "mine.yaml", "root": "data", "methods": ["folder:mine=outputs"],
                                    "clips": ["Obama_clip3"], "metrics": ["psnr"], "settings": ["reconstruction"],
                                    "plugins": ["plug.py"], "out": "runs/a", "no_videos": True, "no_progress": True})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _cli(["run", "--config", str(cfg)], elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((exp / "runs/a/summary.json").read_text())
    assert s["config"]["split"] == str(exp / "mine.yaml") and s["config"]["root"] == str(exp / "data")
    assert s["config"]["methods"] == [f"folder:mine={exp / 'outputs'}"] and s["failures"] == []
    assert s["results"]["reconstruction"]["mine"]["PSNR"]["n_clips"] == 1
    assert not (elsewhere / "runs").exists()
    r = _cli(["run", "--config", str(cfg), "--out", "here"], elsewhere)  # the flag: from the current directory
    assert r.returncode == 0, r.stdout + r.stderr
    assert (elsewhere / "here/summary.json").is_file()


def test_config_arg_paths_and_module_plugins_are_relative_to_the_file(tmp_path):
    """method_args / metric_args paths (a constructor parameter typed as a path, or a value with a '/' or a suffix
    that exists beside the file) and plugin module names found beside the file are taken from the file's folder;
    other values (protocol names, a module not beside the file) stay as written."""
    from harness.run_config import load_run_file

    d = tmp_path / "exp"
    (d / "w").mkdir(parents=True)
    (d / "w/wav2lip.pth").write_bytes(b"x")
    (d / "beside_mod.py").write_text("")
    (d / "lab").mkdir()
    (d / "lab/__init__.py").write_text("")
    cfg = _write(d / "run.yaml", {
        "split": "demo", "out": "o", "methods": ["realtalk", "wav2lip", "folder:mine=outputs"],
        "plugins": ["beside_mod", "lab.extra", "not_beside_mod"],
        "method_args": {"realtalk": {"checkpoint": "ckpt/model.pt", "config": "small", "device": "cpu"},
                        "wav2lip": {"checkpoint": "w/wav2lip.pth", "detector": "s3fd"},
                        "mine": {"csv": "meta/clips.csv"}},
        "metric_args": {"lmd": {"protocol": "eat", "backend": "dlib"}}})
    opts = load_run_file(cfg)
    assert opts["plugins"] == [str(d / "beside_mod.py"), f"lab.extra@{d}", "not_beside_mod"]
    ma = opts["method_args"]
    assert ma["realtalk"] == {"checkpoint": str(d / "ckpt/model.pt"), "config": "small", "device": "cpu"}  # typed
    assert ma["wav2lip"] == {"checkpoint": str(d / "w/wav2lip.pth"), "detector": "s3fd"}  # exists beside the file
    assert ma["mine"] == {"csv": str(d / "meta/clips.csv")}  # folder:NAME -> precomputed's csv: str | Path
    assert opts["metric_args"] == {"lmd": {"protocol": "eat", "backend": "dlib"}}
    flag = load_run_file(_write(d / "abs.yaml", {"method_args": {"realtalk": {"checkpoint": "/abs/m.pt"}}}))
    assert flag["method_args"]["realtalk"]["checkpoint"] == "/abs/m.pt"


PLUGIN_METHOD = '''
"""A plugin method beside a run file, whose constructor takes a path: the offset it adds, read from that file."""
from pathlib import Path

import numpy as np

from harness.core.methods import Method, register


@register
class FromFile(Method):
    name = "{name}"
    kind = "in-process"

    def __init__(self, offset_file: str | Path) -> None:
        self.offset = int(Path(offset_file).read_text())

    def fingerprint(self) -> str:
        return "{name}-" + str(self.offset)

    def generate(self, inp):
        return np.clip(inp.source_frames[: inp.n_frames].astype(np.int16) + self.offset, 0, 255).astype(np.uint8)
'''


def test_config_plugin_module_and_arg_path_from_another_directory(data_root, tmp_path):
    """From another current directory: a plugin package beside the run file (`plugins: [lab.methods]`) and its
    method's path argument (`offset_file: params/offset.txt`) are found beside the file, and the run goes."""
    import uuid

    pkg = f"lab_{uuid.uuid4().hex[:8]}"
    name = f"t_fromfile_{uuid.uuid4().hex[:6]}"
    exp = tmp_path / "exp"
    (exp / pkg).mkdir(parents=True)
    (exp / pkg / "__init__.py").write_text("")
    (exp / pkg / "methods.py").write_text(PLUGIN_METHOD.replace("{name}", name))
    (exp / "params").mkdir()
    (exp / "params/offset.txt").write_text("7\n")
    shutil.copy(sup.small_split(tmp_path, data_root, n_frames=8), exp / "mine.yaml")
    cfg = _write(exp / "run.yaml", {"split": "mine.yaml", "root": str(data_root), "methods": [name],
                                    "method_args": {name: {"offset_file": "params/offset.txt"}},
                                    "plugins": [f"{pkg}.methods"], "clips": ["Obama_clip3"], "metrics": ["psnr"],
                                    "settings": ["reconstruction"], "out": "runs/a", "no_videos": True,
                                    "no_progress": True})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _cli(["run", "--config", str(cfg)], elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((exp / "runs/a/summary.json").read_text())
    assert s["config"]["method_args"] == {name: {"offset_file": str(exp / "params/offset.txt")}}
    assert s["config"]["plugins"] == [f"{pkg}.methods@{exp}"] and s["failures"] == []
    assert s["methods"][name]["fingerprint"] == f"{name}-7"
    assert s["results"]["reconstruction"][name]["PSNR"]["n_clips"] == 1
