"""The subprocess adapter against a stand-in command: inputs prepared as the repositories read them,
output normalised to the harness contract, failures and hangs reported with their stderr."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from baselines.subprocess_adapter import (CONFIG_DIR, METHOD_NAMES, SubprocessMethod, SubprocessMethodError,
                                          load_config)
from harness.core.methods import MethodInput, get_method

STANDIN = Path(__file__).resolve().parent / "standin_talking_face.py"


@pytest.fixture(scope="module")
def clip(data_root: Path):
    from harness.core.media import read_audio, read_video

    v = read_video(data_root / "styletalk/video/Obama_clip1.mp4", fps=25.0, max_frames=50)
    a = read_audio(data_root / "styletalk/wav/Obama_clip1.wav", 16000, duration_s=2.0)
    return v, a


def _inp(clip, tmp_path: Path, n_frames: int = 50) -> MethodInput:
    v, a = clip
    return MethodInput(clip_id="Obama_clip1", setting="reconstruction", source_video=v.path,
                       source_frames=v.frames, audio=a[: n_frames * 640], n_frames=n_frames, workdir=tmp_path / "work")


def _config(tmp_path: Path, extra: list[str] | None = None, region: str = "full", timeout_s: float = 120,
            panels: int = 1) -> dict:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    cfg = {
        "name": "standin",
        "repo": {"env": "STANDIN_REPO_UNSET_FOR_TEST", "default": str(repo)},
        "python": sys.executable,
        "timeout_s": timeout_s,
        "inputs": [
            {"name": "video", "kind": "video", "region": region, "size": 256, "fps": 25, "file": "{clip_id}.mp4"},
            {"name": "audio", "kind": "audio", "sample_rate": 16000, "file": "{audio_stem}.wav"},
        ],
        "command": ["{python}", str(STANDIN), "--video", "{video}", "--audio", "{audio}", "--out_dir", "{out}",
                    "--panels", str(panels), *(extra or [])],
        "cwd": "{repo}",
        "output": {"glob": "{out}/**/result.mp4", "region": region, "size": 256,
                   **({"panel": [panels - 1, panels]} if panels > 1 else {})},
    }
    return cfg


def test_standin_output_normalised_to_contract(clip, tmp_path):
    from harness.core.media import probe_video

    m = SubprocessMethod(config=_config(tmp_path, panels=2))
    assert m.availability() == (True, "")
    inp = _inp(clip, tmp_path)
    out = m.generate(inp)
    src = clip[0].frames
    assert out.dtype == np.uint8 and out.shape == (50,) + src.shape[1:]
    # prepared input really was 25 fps at the source size, 16 kHz wav
    work = tmp_path / "work" / "standin" / "reconstruction-Obama_clip1"
    info = probe_video(work / "inputs" / "Obama_clip1.mp4")
    assert (info.width, info.height, round(info.avg_fps), info.n_frames) == (256, 256, 25, 50)
    # the stand-in's output differs in fps, size and length; after normalisation frames follow the source
    raw = probe_video(work / "out" / "results" / "result.mp4")
    assert round(raw.avg_fps) == 30 and raw.width == 400 and raw.n_frames == 67
    err = np.abs(out.astype(np.int16) - src.astype(np.int16)).mean(axis=(1, 2, 3))
    assert err.max() < 20, err  # right panel chosen, resampled by timestamps, not time-shifted garbage


def test_length_follows_audio_not_source(clip, tmp_path):
    """cross_audio-like: more frames asked for than the source has -> exactly n_frames (last frame held)."""
    m = SubprocessMethod(config=_config(tmp_path))
    v, a = clip
    long_audio = np.concatenate([a, a])[: 70 * 640]
    inp = MethodInput(clip_id="x", setting="cross_audio", source_video=v.path, source_frames=v.frames,
                      audio=long_audio, n_frames=70, workdir=None)
    out = m.generate(inp)
    assert out.shape == (70,) + v.frames.shape[1:]


def test_crop_region_pasted_back(clip, tmp_path):
    m = SubprocessMethod(config=_config(tmp_path, region="crop"))
    out = m.generate(_inp(clip, tmp_path, n_frames=25))
    src = clip[0].frames
    assert out.shape == (25,) + src.shape[1:]
    err = np.abs(out.astype(np.int16) - src[:25].astype(np.int16)).mean()
    assert err < 20


def test_failure_carries_stderr(clip, tmp_path):
    m = SubprocessMethod(config=_config(tmp_path, extra=["--fail"]))
    with pytest.raises(SubprocessMethodError) as e:
        m.generate(_inp(clip, tmp_path, n_frames=10))
    assert "exited with status 1" in str(e.value)
    assert "CUDA error: out of memory (simulated)" in str(e.value)


def test_hang_hits_timeout(clip, tmp_path):
    m = SubprocessMethod(config=_config(tmp_path, extra=["--hang"], timeout_s=3))
    with pytest.raises(SubprocessMethodError, match="timed out after 3s"):
        m.generate(_inp(clip, tmp_path, n_frames=10))


def test_unavailable_reasons(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    cfg["repo"] = {"env": "STANDIN_REPO", "default": str(tmp_path / "nope")}
    ok, why = SubprocessMethod(config=cfg).availability()
    assert not ok and str(tmp_path / "nope") in why and "STANDIN_REPO" in why
    monkeypatch.setenv("STANDIN_REPO", str(tmp_path / "repo"))  # env var overrides the default
    cfg["python"] = {"env": "STANDIN_PY", "default": str(tmp_path / "no-python")}
    ok, why = SubprocessMethod(config=cfg).availability()
    assert not ok and "python executable not found" in why and "STANDIN_PY" in why


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_registered_configs(name, monkeypatch, tmp_path):
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg["name"] == name
    for k in ("source", "inputs", "command", "output"):
        assert cfg[k]
    m = get_method(name)
    assert m.kind == "subprocess"
    env = cfg["repo"]["env"]
    monkeypatch.setenv(env, str(tmp_path / "absent"))
    ok, why = m.availability()
    assert not ok and str(tmp_path / "absent") in why
    assert yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())["command"][0] == "{python}"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_configs_cite_the_upstream_commit(name):
    """Each YAML names the upstream repository and the 40-hex commit its argument parser was checked at;
    the repository is the one `source` points to."""
    import re

    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    up = cfg["upstream"]
    assert re.fullmatch(r"[0-9a-f]{40}", up["commit"]), up
    assert f"github.com/{up['repo']}" in cfg["source"]
    commits = [c for v in up["files"].values() for c in (v if isinstance(v, list) else [v])]
    assert up["commit"] in commits and all(re.fullmatch(r"[0-9a-f]{40}", c) for c in commits)


def _fake_checkout(tmp_path: Path, packed: bool) -> tuple[Path, str]:
    """A git checkout's metadata as git writes it (HEAD -> a loose or a packed branch ref)."""
    repo = tmp_path / ("packed" if packed else "loose")
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    sha = ("ab" * 20) if packed else ("cd" * 20)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    if packed:
        (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled fully-peeled sorted\n{sha} refs/heads/main\n")
    else:
        (repo / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    return repo, sha


@pytest.mark.parametrize("packed", [False, True])
def test_describe_records_repo_path_and_commit(tmp_path, packed):
    """What the run summary stores for a subprocess baseline: repository path + its checked-out commit."""
    repo, sha = _fake_checkout(tmp_path, packed)
    cfg = _config(tmp_path)
    cfg["repo"] = str(repo)
    d = SubprocessMethod(config=cfg).describe()
    assert d["repo_path"] == str(repo) and d["repo_commit"] == sha
    other = tmp_path / "other"
    other.mkdir()
    cfg["repo"] = str(other)
    assert SubprocessMethod(config=cfg).describe()["repo_commit"] is None


def test_missing_program_and_talklip_s3fd(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    cfg["executables"] = ["rtb-no-such-program-xyz"]
    ok, why = SubprocessMethod(config=cfg).availability()
    assert not ok and "needs the program 'rtb-no-such-program-xyz' on PATH" in why
    # IP-LAP: ffmpeg is a stated requirement (an empty PATH finds none)
    assert load_config(CONFIG_DIR / "iplap.yaml")["executables"] == ["ffmpeg"]
    # TalkLip with everything but S3FD's weights: the reason names s3fd.pth
    repo = tmp_path / "TalkLip"
    (repo / "checkpoints").mkdir(parents=True)
    (repo / "checkpoints" / "TalkLip_nce.pth").write_bytes(b"x")
    (repo / "av_hubert" / "avhubert").mkdir(parents=True)
    (repo / "task_state.pt").write_bytes(b"x")
    monkeypatch.setenv("TALKLIP_REPO", str(repo))
    monkeypatch.setenv("TALKLIP_PYTHON", sys.executable)
    ok, why = get_method("talklip").availability()
    assert not ok and why.endswith("face_detection/detection/sfd/s3fd.pth")
    (repo / "face_detection" / "detection" / "sfd").mkdir(parents=True)
    (repo / "face_detection" / "detection" / "sfd" / "s3fd.pth").write_bytes(b"x")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("FFMPEG", "ffmpeg")
    ok, why = get_method("talklip").availability()
    assert not ok and "'ffmpeg' on PATH" in why


def test_doctor_lists_every_baseline(monkeypatch, tmp_path):
    from harness.commands.doctor import baseline_rows

    monkeypatch.setenv("PCAVS_REPO", str(tmp_path / "nowhere"))
    rows = {item: (state, detail) for item, state, detail in baseline_rows()}
    for name in (*METHOD_NAMES, "wav2lip", "ground_truth", "precomputed"):
        assert f"method:{name}" in rows
    state, detail = rows["method:pcavs"]
    assert "missing" in state and str(tmp_path / "nowhere") in detail and "PCAVS_REPO" in detail
    assert "available" in rows["method:ground_truth"][0]
