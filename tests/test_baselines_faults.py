"""Subprocess baselines under faults (issue 15 item 4) and the PC-AVS / StyleTalk repository quirks (issue 13
item 6), against FAULT FIXTURES: tiny "repositories" written at test time whose entry script is a python
program standing in for an upstream inference script. They test OUR adapter (process handling, capture,
output checks, geometry), not a method's result: every video they write is made of the real clip's frames
that the adapter prepared from ../shared/data.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from baselines.subprocess_adapter import SubprocessMethod, SubprocessMethodError, safe_name
from harness.core.methods import MethodInput

# The fault fixture's entry script. Modes: ok, hang (and a grandchild that sleeps too), exit0_no_output,
# short (half the frames), wrong_size, flood (10 MB on stderr, then exit 1 or, with --then_ok, succeed),
# cwd_fixed_name (StyleTalk: a fixed file name in its cwd), pcavs (PC-AVS layout, see below).
FAULT_ENTRY = r'''
import argparse, json, os, subprocess, sys, time
import cv2
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--mode", required=True)
ap.add_argument("--video")
ap.add_argument("--pose_dir")
ap.add_argument("--out_dir", required=True)
ap.add_argument("--clip_id", default="")
ap.add_argument("--panels", type=int, default=3)
ap.add_argument("--gen_panel", type=int, default=1)
ap.add_argument("--then_ok", action="store_true")
ap.add_argument("--pidfile")
a = ap.parse_args()
os.makedirs(a.out_dir, exist_ok=True)
with open(os.path.join(a.out_dir, "argv.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, f)

def frames_of(path):
    cap = cv2.VideoCapture(path); out = []
    while True:
        ok, fr = cap.read()
        if not ok: break
        out.append(fr)
    return out

def write(path, frames, fps=25):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for fr in frames: vw.write(fr)
    vw.release()

mode = a.mode
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(a.pidfile, "w").write(str(child.pid))
    time.sleep(600)
if mode == "exit0_no_output":
    print("Traceback (most recent call last):\n  File inference.py\nRuntimeError: CUDA out of memory (fault fixture)",
          file=sys.stderr)
    sys.exit(0)
if mode == "flood":
    line = "x" * 99 + "\n"
    for _ in range(100_000):  # 10 MB
        sys.stderr.write(line)
    sys.stderr.write("FINAL LINE OF THE FLOOD\n"); sys.stderr.flush()
    if not a.then_ok:
        sys.exit(1)
    mode = "ok"
if mode == "cwd_fixed_name":  # StyleTalk's render_video: writes ./silent.mp4, then moves it to the output
    if os.path.exists("silent.mp4"):
        print("silent.mp4 already there: another clip shares this working folder", file=sys.stderr); sys.exit(3)
    frames = frames_of(a.video)
    write("silent.mp4", frames)
    time.sleep(1.0)  # the window in which a parallel clip in the same folder would collide
    os.replace("silent.mp4", os.path.join(a.out_dir, "result.mp4"))
    sys.exit(0)
if mode in ("ok", "short", "wrong_size"):
    frames = frames_of(a.video)
    if mode == "short":
        frames = frames[: len(frames) // 2]
    if mode == "wrong_size":
        frames = [cv2.resize(f, (320, 100)) for f in frames]
    write(os.path.join(a.out_dir, "result.mp4"), frames)
    sys.exit(0)
if mode == "pcavs":
    # like PC-AVS voxtest: results/ relative to the CWD (ignores --out_dir for the video), every 224 input is
    # cut to rows 0..192, columns 16..208 and resized to 224, generation runs for frames 2 .. n-3, and the
    # panels are tiled side by side (generated one at --gen_panel)
    names = sorted(os.listdir(a.pose_dir))
    crops = [cv2.resize(cv2.imread(os.path.join(a.pose_dir, n))[0:192, 16:208], (224, 224)) for n in names]
    gen = crops[2: len(crops) - 2]
    grey = np.full_like(gen[0], 128)
    tiles = [np.concatenate([g if p == a.gen_panel else grey for p in range(a.panels)], axis=1) for g in gen]
    os.makedirs("results/id_input_pose_pose_audio_x", exist_ok=True)
    write("results/id_input_pose_pose_audio_x/avconcat.mp4", tiles)
    sys.exit(0)
sys.exit(f"unknown mode {mode}")
'''


@pytest.fixture(scope="module")
def clip(data_root: Path):
    from harness.core.media import read_audio, read_video

    v = read_video(data_root / "styletalk/video/Obama_clip1.mp4", fps=25.0, max_frames=30)
    a = read_audio(data_root / "styletalk/wav/Obama_clip1.wav", 16000, duration_s=30 / 25)
    return v, a


@pytest.fixture
def fault_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "fault_fixture_repo"
    repo.mkdir()
    (repo / "fault_entry.py").write_text(textwrap.dedent(FAULT_ENTRY))
    return repo


def _inp(clip, workdir: Path | None, clip_id: str = "Obama_clip1", n: int = 30) -> MethodInput:
    v, a = clip
    return MethodInput(clip_id=clip_id, setting="reconstruction", source_video=v.path, source_frames=v.frames[:n],
                       audio=a[: n * 640], n_frames=n, workdir=workdir)


def _cfg(repo: Path, mode: str, *extra: str, timeout_s: float = 120, **over) -> dict:
    cfg = {
        "name": "fault_fixture",
        "repo": str(repo),
        "python": sys.executable,
        "timeout_s": timeout_s,
        "inputs": [{"name": "video", "kind": "video", "region": "full", "fps": 25, "file": "{clip_id}.mp4"}],
        "command": ["{python}", "{repo}/fault_entry.py", "--mode", mode, "--video", "{video}", "--out_dir", "{out}",
                    "--clip_id", "{clip_id}", *extra],
        "cwd": "{workdir}",
        "output": {"glob": "{out}/result.mp4", "region": "full"},
    }
    cfg.update(over)
    return cfg


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (re)parent to reap it is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_ok_fixture_gives_source_frames(clip, fault_repo, tmp_path):
    """The fixture itself works (so the faults below fail for the fault, not for the fixture)."""
    m = SubprocessMethod(config=_cfg(fault_repo, "ok"))
    out = m.generate(_inp(clip, tmp_path / "w"))
    src = clip[0].frames[:30]
    assert out.shape == src.shape
    assert np.abs(out.astype(np.int16) - src.astype(np.int16)).mean() < 10
    assert m.last_notes["frames_in_output"] == 30 and m.last_notes["frames_padded"] == 0


def test_hang_is_killed_with_its_process_group(clip, fault_repo, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    m = SubprocessMethod(config=_cfg(fault_repo, "hang", "--pidfile", str(pidfile), timeout_s=3))
    with pytest.raises(SubprocessMethodError) as e:
        m.generate(_inp(clip, tmp_path / "w"))
    assert "timed out after 3s (process group killed)" in str(e.value)
    assert str(e.value).splitlines()[0].endswith("fault_entry.py: fault_fixture: timed out after 3s (process group killed)")
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the command's child survived the timeout"


def test_exit0_without_output_is_a_failure_with_stderr(clip, fault_repo, tmp_path):
    m = SubprocessMethod(config=_cfg(fault_repo, "exit0_no_output"))
    with pytest.raises(SubprocessMethodError) as e:
        m.generate(_inp(clip, tmp_path / "w"))
    msg = str(e.value)
    assert "exited 0 but wrote no output matching" in msg.splitlines()[0]
    assert "RuntimeError: CUDA out of memory (fault fixture)" in msg


def test_short_output_fails_by_the_10_percent_rule(clip, fault_repo, tmp_path):
    m = SubprocessMethod(config=_cfg(fault_repo, "short"))
    with pytest.raises(SubprocessMethodError, match=r"output has 15 of 30 frames \(15 missing, more than 10%\)"):
        m.generate(_inp(clip, tmp_path / "w"))
    # 2 frames short of 20 (10%) is within the rule: padded by holding the last frame, and recorded
    m2 = SubprocessMethod(config=_cfg(fault_repo, "ok"))
    v, a = clip
    inp = MethodInput(clip_id="c", setting="cross_audio", source_video=v.path, source_frames=v.frames[:18],
                      audio=a[: 20 * 640], n_frames=20, workdir=tmp_path / "w2")
    out = m2.generate(inp)
    assert out.shape[0] == 20 and m2.last_notes["frames_padded"] == 2
    assert np.array_equal(out[19], out[17])


def test_wrong_size_output_fails(clip, fault_repo, tmp_path):
    m = SubprocessMethod(config=_cfg(fault_repo, "wrong_size"))
    with pytest.raises(SubprocessMethodError, match=r"output frames are 320x100, expected the source's"):
        m.generate(_inp(clip, tmp_path / "w"))


def test_stderr_flood_is_bounded_and_keeps_the_tail(clip, fault_repo, tmp_path):
    m = SubprocessMethod(config=_cfg(fault_repo, "flood"), keep_workdir=True)
    with pytest.raises(SubprocessMethodError) as e:
        m.generate(_inp(clip, tmp_path / "w"))
    msg = str(e.value)
    assert "exited with status 1" in msg.splitlines()[0]
    assert "FINAL LINE OF THE FLOOD" in msg and "last lines of 10.0 MB" in msg
    assert len(msg) < 3000  # a short reason, not 10 MB
    log = next((tmp_path / "w").rglob("stderr.txt"))
    assert log.stat().st_size < 400_000 and "bytes omitted" in log.read_text()
    # the same flood followed by a real output: no pipe deadlock, the clip succeeds
    ok = SubprocessMethod(config=_cfg(fault_repo, "flood", "--then_ok"))
    assert ok.generate(_inp(clip, tmp_path / "w3")).shape == clip[0].frames[:30].shape


def test_shell_metacharacters_pass_through_literally(clip, fault_repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip_id = 'x; rm -rf "$HOME" $(touch CANARY_ID) `touch CANARY_BT` \'q'
    base = tmp_path / "work $(touch CANARY_DIR); 'a\"b [1]"
    m = SubprocessMethod(config=_cfg(fault_repo, "ok"))
    out = m.generate(_inp(clip, base, clip_id=clip_id))
    assert out.shape == clip[0].frames[:30].shape
    rec = json.loads(next(base.rglob("argv.json")).read_text())
    argv = rec["argv"]
    assert argv[argv.index("--clip_id") + 1] == clip_id  # literally, as one argument
    video = argv[argv.index("--video") + 1]
    assert video.startswith(str(base)) and Path(video).is_file()
    assert Path(video).name == f"{safe_name(clip_id)}.mp4"  # our own file names are shell-safe
    assert not list(tmp_path.rglob("CANARY*")), "a shell interpreted the arguments"


def test_plain_paths_gets_a_private_working_folder(clip, fault_repo, tmp_path):
    """A repository that splits on spaces / runs ffmpeg through a shell never sees such a path of ours."""
    base = tmp_path / "with space; $(x)"
    m = SubprocessMethod(config=_cfg(fault_repo, "ok", plain_paths=True))
    m.generate(_inp(clip, base, clip_id="a b"))
    assert not base.exists() or not list(base.rglob("argv.json"))


def test_parallel_clips_get_separate_working_folders(clip, fault_repo, tmp_path):
    """StyleTalk writes ./silent.mp4: two clips at once in one base folder must not share a cwd."""
    cfg = _cfg(fault_repo, "cwd_fixed_name")
    results: dict[str, object] = {}

    def one(cid: str) -> None:
        try:
            results[cid] = SubprocessMethod(config=cfg).generate(_inp(clip, tmp_path / "w", clip_id=cid))
        except Exception as e:  # noqa: BLE001 - reported below
            results[cid] = e

    ts = [threading.Thread(target=one, args=(c,)) for c in ("clipA", "clipB")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for cid in ("clipA", "clipB"):
        assert isinstance(results[cid], np.ndarray), results[cid]


def _pcavs_cfg(repo: Path, panels: int, gen_panel: int) -> dict:
    """The shipped PC-AVS geometry (inputs, output block) around the fault fixture's entry script."""
    import yaml

    from baselines.subprocess_adapter import CONFIG_DIR

    real = yaml.safe_load((CONFIG_DIR / "pcavs.yaml").read_text())
    pose = next(i for i in real["inputs"] if i["name"] == "pose_dir")
    return {"name": "pcavs_fault_fixture", "repo": str(repo), "python": sys.executable, "inputs": [pose],
            "command": ["{python}", "{repo}/fault_entry.py", "--mode", "pcavs", "--pose_dir", "{pose_dir}",
                        "--out_dir", "{out}", "--panels", str(panels), "--gen_panel", str(gen_panel)],
            "cwd": real["cwd"], "output": real["output"]}


@pytest.mark.parametrize("panels,gen_panel", [(3, 1), (5, 2)])  # commit 23585e2 / commit 16adc8b layouts
def test_pcavs_layout_geometry_and_lead_frames(clip, fault_repo, tmp_path, panels, gen_panel):
    m = SubprocessMethod(config=_pcavs_cfg(fault_repo, panels, gen_panel))
    inp = _inp(clip, tmp_path / "w", n=30)
    out = m.generate(inp)
    src = clip[0].frames[:30]
    assert out.shape == src.shape
    assert m.last_notes["panels"] == panels and m.last_notes["panel"] == gen_panel
    assert m.last_notes["lead_frames_held"] == 2 and m.last_notes["frames_in_output"] == 28
    # geometry: the generated panel (the fixture's view of rows 0..192, cols 16..208) pasted back on the crop
    # box reproduces the source there; time: output frame i is source frame i, not i - 2 or i + 2
    from harness.core.faces.crop import crop_frames

    ct = m._crop_track({"inp": inp, "src": src}, 224)
    g, s = crop_frames(out, ct).astype(np.float32), crop_frames(src, ct).astype(np.float32)
    assert np.abs(g - s).mean() < 12
    for i in range(4, 26, 5):
        errs = [np.abs(g[i] - s[j]).mean() for j in range(i - 2, i + 3)]
        assert int(np.argmin(errs)) == 2, (i, errs)


def test_pcavs_unknown_layout_fails(clip, fault_repo, tmp_path):
    m = SubprocessMethod(config=_pcavs_cfg(fault_repo, 6, 1))
    with pytest.raises(SubprocessMethodError, match=r"1344x224: not a row of 224-px panels in a known layout"):
        m.generate(_inp(clip, tmp_path / "w"))


def test_faults_in_a_run_are_failed_clips(standins, data_root, tmp_path):
    """Through the runner: a hanging and an output-less baseline become failed clips with short reasons; the
    other method finishes every clip and the run returns."""
    import yaml

    import test_runner_support as sup
    from harness.runner import RunConfig, run_benchmark

    repo = tmp_path / "fault_fixture_repo"
    repo.mkdir()
    (repo / "fault_entry.py").write_text(textwrap.dedent(FAULT_ENTRY))
    cfgs = {}
    for name, mode, t in (("dinet", "hang", 2), ("talklip", "exit0_no_output", 60)):
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(_cfg(repo, mode, "--pidfile", str(tmp_path / f"{name}.pid"), timeout_s=t)))
        cfgs[name] = {"config": str(p)}
    split = sup.small_split(tmp_path, data_root, n_frames=10)
    s = run_benchmark(RunConfig(split=split, out=str(tmp_path / "run"), methods=["ground_truth", "dinet", "talklip"],
                                root=str(data_root), metrics=["t_absdiff"], settings=["reconstruction"],
                                method_args=cfgs, write_videos=False), progress=False)
    fails = {(f["method"], f["clip_id"]): f["error"] for f in s["failures"]}
    assert len(fails) == 4 and all(m in ("dinet", "talklip") for m, _ in fails)
    assert all("timed out after 2s" in e for (m, _), e in fails.items() if m == "dinet")
    assert all("exited 0 but wrote no output" in e and "CUDA out of memory" in e
               for (m, _), e in fails.items() if m == "talklip")
    assert all(len(e) < 3000 for e in fails.values())
    assert set(s["clip_set"]["reconstruction"]["excluded"]) == {"Obama_clip3", "andrew_clip_2"}  # shown, not dropped
    for cid in ("Obama_clip3", "andrew_clip_2"):
        rec = json.loads((tmp_path / "run" / "clips" / "ground_truth" / "reconstruction" / f"{cid}.json").read_text())
        assert rec["status"] != "failed" and rec["values"]
