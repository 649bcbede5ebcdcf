"""Ground-truth features are computed once ever (on-disk feature cache) and once per process (many outputs).

Real clip: video-retalking/face/2.mp4 (844x844, 25 fps, speech), 16 frames. "Generated" versions are made
from its real frames at test time (blurred, brightened, noisy), so each is a new video against a known
ground truth. SyncNet's official file is absent here: a randomly initialised SyncNetV2 is saved in the
official format and loaded through the real loader (the unverified-weights override). Network passes are
counted by content in metrics.passes.PASSES (every frame / window that went through a network), so
"zero ground-truth passes" is checked on the ground truth's own crops and driving audio, and the same
counters show the passes on the generated frames (the check can fail).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from _process_state import fresh_process
from harness.cli import main
from metrics.passes import PASSES

CLIP = "video-retalking/face/2.mp4"
N = 8  # SyncNet needs >= 6 frames; Inception on 2 loaded cores is the cost (~1 s/image), so few frames
NAMES = ["fid", "csim", "syncnet", "lmd"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cold cache of its own and a random SyncNet in the official file format."""
    from metrics.syncnet_model import SyncNetV2

    torch.manual_seed(0)
    state = {k: v for k, v in SyncNetV2().state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "weights" / "syncnet" / "syncnet_v2.model"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setenv("REALTALK_BENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")
    monkeypatch.setenv("REALTALK_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("REALTALK_BENCH_NO_CACHE", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    return tmp_path


@pytest.fixture(scope="module")
def clip(data_root: Path):
    from harness.core.media import audio_frames, read_audio, read_video

    video = read_video(data_root / CLIP, fps=25.0, max_frames=N)
    audio = audio_frames(read_audio(data_root / CLIP), N, 25.0, 16000)
    return video, audio


def versions(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Three generated versions of the real frames: new content each, same face geometry."""
    rng = np.random.default_rng(0)
    noisy = np.clip(frames.astype(np.int16) + rng.normal(0, 4, frames.shape).round().astype(np.int16), 0, 255)
    return {"blur": np.stack([cv2.GaussianBlur(f, (5, 5), 0) for f in frames]),
            "bright": np.clip(frames.astype(np.int16) + 12, 0, 255).astype(np.uint8),
            "noisy": noisy.astype(np.uint8)}


def score(gt, audio: np.ndarray, gen_frames: np.ndarray, names: list[str] = NAMES):
    from metrics.compute import aligned_pair, compute_pair

    gen = dataclasses.replace(gt, frames=gen_frames)
    pair = aligned_pair(gen, gt)
    res = compute_pair(pair.gen_crops, pair.gt_crops, audio, names, gen_full=pair.gen_full, face_boxes=pair.face_boxes)
    assert not res.errors and not res.unavailable, (res.errors, res.unavailable)
    return res, pair


def gt_passes(gt_crops: np.ndarray) -> dict[str, int]:
    """Network passes on ground-truth content since the last reset (crops, identity reference, driving audio)."""
    return {"inception": sum(PASSES.times("inception", gt_crops)),
            "landmarks": sum(PASSES.times("landmarks", gt_crops)),
            "identity": sum(PASSES.times("identity", gt_crops[:1])),
            "syncnet_audio": PASSES.frames["syncnet_audio"]}


def test_new_generated_video_does_zero_gt_passes(env: Path, clip) -> None:
    gt, audio = clip
    gens = versions(gt.frames)
    fresh_process()
    cold_res, pair = score(gt, audio, gens["blur"])
    gt_crops = pair.gt_crops
    n_win = N - 5
    cold = gt_passes(gt_crops)
    assert cold == {"inception": N, "landmarks": N, "identity": 1, "syncnet_audio": n_win}  # the counters see them

    fresh_process()  # a new process, a new generated video, the same ground truth
    score(gt, audio, gens["bright"])
    assert gt_passes(gt_crops) == {"inception": 0, "landmarks": 0, "identity": 0, "syncnet_audio": 0}
    assert PASSES.seen("inception", pair_b_crops(gt, gens["bright"])) == N  # generated frames still go through
    assert PASSES.frames["syncnet_video"] == n_win

    # warm values are the cold values: the cache stores the arrays exactly as computed, so the same
    # generated video scored again (ground truth from the cache) must give bit-identical numbers
    fresh_process()
    again, _ = score(gt, audio, gens["blur"])
    assert gt_passes(gt_crops)["inception"] == 0
    assert again.values == cold_res.values

    # cache info shows the kinds; evicting one kind brings back exactly that kind's ground-truth passes
    info = json.loads(capture_stdout(lambda: main(["cache", "info", "--json"])))
    for kind in ("gtinception", "gtidentity", "gtsyncaudio", "lmdgt", "faces"):
        assert info[kind]["entries"] >= 1 and info[kind]["bytes"] > 0, kind
    assert main(["cache", "clear", "--kind", "gtidentity"]) == 0
    assert "gtidentity" not in json.loads(capture_stdout(lambda: main(["cache", "info", "--json"])))
    fresh_process()
    score(gt, audio, gens["noisy"], ["csim", "lmd"])
    assert gt_passes(gt_crops) == {"inception": 0, "landmarks": 0, "identity": 1, "syncnet_audio": 0}


def test_ground_truth_scored_as_a_method_does_zero_passes_when_warm(env: Path, clip) -> None:
    """The reference row (the ground truth's own frames as the generated video, e.g. baselines' ground_truth):
    everything computed from them is ground-truth work, so a second process runs none of it — Inception,
    landmarks, identity embeddings of every frame, SyncNet video windows and audio windows: zero passes each."""
    gt, audio = clip
    n_win = N - 5
    fresh_process()
    cold_res, pair = score(gt, audio, gt.frames)
    gt_crops = pair.gt_crops
    assert np.array_equal(pair.gen_crops, gt_crops)
    cold = {**gt_passes(gt_crops), "identity_frames": sum(PASSES.times("identity", gt_crops)),
            "syncnet_video": PASSES.frames["syncnet_video"]}
    # once each (the per-process memo shares the reference set and the "generated" copy): the counters see them
    assert cold == {"inception": N, "landmarks": N, "identity": 1, "syncnet_audio": n_win,
                    "identity_frames": N, "syncnet_video": n_win}

    fresh_process()
    warm_res, _ = score(gt, audio, gt.frames)
    warm = {**gt_passes(gt_crops), "identity_frames": sum(PASSES.times("identity", gt_crops)),
            "syncnet_video": PASSES.frames["syncnet_video"]}
    assert warm == {k: 0 for k in cold}
    assert warm_res.values == cold_res.values  # the cache holds the arrays as computed
    info = json.loads(capture_stdout(lambda: main(["cache", "info", "--json"])))
    assert info["gtsyncvideo"]["entries"] == 1 and info["gtsyncvideo"]["bytes"] > 0

    fresh_process()  # a generated video that differs from the ground truth is never stored as ground truth
    score(gt, audio, versions(gt.frames)["blur"], ["syncnet"])
    assert PASSES.frames["syncnet_video"] == n_win and PASSES.frames["syncnet_audio"] == 0
    info = json.loads(capture_stdout(lambda: main(["cache", "info", "--json"])))
    assert info["gtsyncvideo"]["entries"] == 1


def pair_b_crops(gt, frames: np.ndarray) -> np.ndarray:
    from metrics.compute import aligned_pair

    return aligned_pair(dataclasses.replace(gt, frames=frames), gt).gen_crops


def capture_stdout(fn) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert fn() == 0
    return buf.getvalue()


def test_one_process_many_outputs(env: Path, clip, capsys: pytest.CaptureFixture[str]) -> None:
    """`metrics --gt GT --gen A B C`: each network loaded once, each ground-truth feature computed once."""
    from harness.core.faces.clip import clip_faces
    from harness.core.media import read_video_or_frames, write_video

    gt, audio = clip
    gt_path = write_video(env / "gt.mp4", gt.frames, 25.0, audio)
    gen_paths = [str(write_video(env / f"{k}.mp4", v, 25.0, audio)) for k, v in versions(gt.frames).items()]
    fresh_process()
    rc = main(["metrics", "--gt", str(gt_path), "--gen", *gen_paths, "--metrics", ",".join(NAMES)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("LSE-C") == 3 and out.count("CSIM") >= 3  # one table per generated video
    assert {n: PASSES.loads[n] for n in ("inception", "identity", "syncnet")} == \
        {"inception": 1, "identity": 1, "syncnet": 1}
    gt_video = read_video_or_frames(str(gt_path), 25.0, None)
    gt_crops = clip_faces(gt_video).crops[:N]  # cached on disk by the run: the same crops the metrics got
    assert PASSES.times("inception", gt_crops) == [1] * N
    assert PASSES.times("landmarks", gt_crops) == [1] * N
    assert PASSES.times("identity", gt_crops[:1]) == [1]
    assert PASSES.frames["syncnet_audio"] == N - 5  # the driving audio's windows, once for three videos
    assert PASSES.frames["syncnet_video"] == 3 * (N - 5)


@pytest.mark.slow  # three runs with four real metrics: minutes on 2 cores
def test_second_run_of_a_split_does_zero_gt_passes(env: Path, data_root: Path, standins, tmp_path: Path) -> None:
    """A run, then a run of a new checkpoint (t_shifted offset 20) and a rerun of the same one into new folders."""
    import test_runner_support as sup
    from harness.core.faces.clip import clip_faces
    from harness.runner import RunConfig, run_benchmark
    from harness.core.splits import load_clip_media, load_split

    n = 8
    split = sup.small_split(tmp_path, data_root, n_frames=n)

    def run(out: str, offset: int) -> dict:
        cfg = RunConfig(split=split, out=str(tmp_path / out), methods=["t_shifted"], root=str(data_root),
                        metrics=NAMES, method_args={"t_shifted": {"offset": offset}}, write_videos=False)
        fresh_process()
        s = run_benchmark(cfg, progress=False)
        assert not s["failures"], s["failures"]
        return s

    run("first", 10)
    crops = []
    for entry in load_split(split).clips:
        video, _ = load_clip_media(entry, str(data_root))
        crops.append(clip_faces(video).crops[:n])
    gt_crops = np.concatenate(crops)
    first = {k: sum(PASSES.times(k, gt_crops)) for k in ("inception", "landmarks")}
    assert first == {"inception": 2 * n, "landmarks": 2 * n} and PASSES.frames["syncnet_audio"] > 0
    for out, offset in (("new_checkpoint", 20), ("rerun", 10)):
        run(out, offset)
        assert {k: sum(PASSES.times(k, gt_crops)) for k in ("inception", "landmarks", "identity")} == \
            {"inception": 0, "landmarks": 0, "identity": 0}, out
        assert PASSES.frames["syncnet_audio"] == 0, out
        assert PASSES.frames["inception"] > 0, out  # generated frames still scored (gate can fail)
