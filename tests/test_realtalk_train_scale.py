"""Training at scale on CPU: real shards (preprocess), DataLoader + DDP over gloo, resume, EMA, validation.

Shards come from short real clips (40 frames = 1.6 s) of the demo split, through a manifest written at test
time that also holds one broken file (garbage bytes named .mp4) to check the per-clip error path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CLIPS = {"feifeili_clip1": "train", "vr_face2": "train", "feifeili_clip3": "test"}
MAX_FRAMES = 40


def _manifest(data_root: Path, dst: Path, bad: Path | None = None) -> Path:
    """A manifest of three real demo clips (absolute paths) [+ one broken file]."""
    from _realtalk_shards import demo_manifest

    return demo_manifest(data_root, dst, CLIPS, bad)


@pytest.fixture(scope="module")
def shards(data_root, tmp_path_factory):
    """(data_dir, manifest, face model, featurizer, preprocess log lines, broken file)."""
    from realtalk.audio_features import get_featurizer
    from realtalk.face_models import load_default_face_model
    from realtalk.shards import preprocess_split

    tmp = tmp_path_factory.mktemp("shards")
    bad = tmp / "broken.mp4"
    manifest = _manifest(data_root, tmp / "scale.yaml", bad)
    fm, feat = load_default_face_model(), get_featurizer("logmel")
    lines: list[str] = []
    preprocess_split(str(manifest), data_root, tmp / "data", fm, feat, max_frames=MAX_FRAMES, log=lines.append)
    return tmp / "data", manifest, fm, feat, lines, bad


def _cfg(fm, feat, batch: int = 4):
    from realtalk.config import small

    cfg = small().with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_featurizer(feat)
    cfg.train.a2e_batch, cfg.train.renderer_batch, cfg.train.log_every = batch, 2, 1
    return cfg


# ------------------------------------------------------------------------------------------------ preprocess
def test_preprocess_writes_memmapped_shards_and_reports_the_bad_clip_once(shards, data_root):
    from realtalk.shards import ShardStore, preprocess_split

    data, manifest, fm, feat, lines, bad = shards
    index = json.loads((data / "index.json").read_text())
    assert sorted(index["clips"]) == sorted(CLIPS) and list(index["failed"]) == ["broken"]
    errors = [m for m in lines if "error" in m]
    assert len(errors) == 1 and "broken" in errors[0] and str(bad) in errors[0] and "\n" not in errors[0]
    store = ShardStore(data, "train")
    assert store.ids == ["feifeili_clip1", "vr_face2"]
    c = store[0]
    assert isinstance(c.crops, np.memmap) and c.crops.shape == (MAX_FRAMES, 256, 256, 3) and c.crops.dtype == np.uint8
    assert c.audio.shape[0] == feat.tokens_per_frame * MAX_FRAMES and c.mask.shape == (MAX_FRAMES, 256, 256)
    kept = float(c.mask.mean())
    assert 0.3 < kept < 0.95 and c.teeth.max() <= 1  # a lower-face region to generate, the rest kept
    # the shard holds exactly what the in-RAM path (load_clip_data) prepares
    from harness.core.splits import load_split
    from realtalk.data import load_clip_data

    entry = next(e for e in load_split(manifest).clips if e.clip_id == "feifeili_clip1")
    ram = load_clip_data(entry, data_root, fm, feat, max_frames=MAX_FRAMES)
    for name in ("crops", "alpha", "beta", "rho", "audio"):
        np.testing.assert_array_equal(np.asarray(getattr(c, name)), getattr(ram, name))
    # rerun: finished clips are skipped (files untouched), the broken one is retried and reported once more
    stamp = (data / "clips" / "vr_face2" / "meta.json").stat().st_mtime_ns
    again: list[str] = []
    preprocess_split(str(manifest), data_root, data, fm, feat, max_frames=MAX_FRAMES, log=again.append)
    assert "3 already done, 1 to do" in again[0]
    assert len([m for m in again if "error" in m]) == 1
    assert (data / "clips" / "vr_face2" / "meta.json").stat().st_mtime_ns == stamp


def test_preprocess_resumes_after_an_interrupted_clip(shards, data_root, tmp_path):
    """A killed run leaves a temp folder and no meta.json for the clip it was writing: only that clip is redone."""
    import shutil

    from realtalk.shards import preprocess_split

    data, manifest, fm, feat, _, _ = shards
    work = tmp_path / "data"
    shutil.copytree(data, work)
    clip = work / "clips" / "feifeili_clip3"
    shutil.move(clip, clip.with_name("feifeili_clip3.tmp-999"))  # as if killed before the rename
    lines: list[str] = []
    preprocess_split(str(manifest), data_root, work, fm, feat, max_frames=MAX_FRAMES, log=lines.append)
    assert "2 already done, 2 to do" in lines[0]
    assert (clip / "meta.json").exists()
    np.testing.assert_array_equal(np.load(clip / "beta.npy"), np.load(data / "clips" / "feifeili_clip3" / "beta.npy"))


def test_preprocess_cli_exit_code_and_mismatched_parameters(shards, data_root, capsys):
    from harness.cli import main

    data, manifest, *_ = shards
    assert main(["preprocess", "--split", str(manifest), "--root", str(data_root), "--out", str(data),
                 "--max-frames", str(MAX_FRAMES)]) == 1  # the broken clip
    assert main(["preprocess", "--split", str(manifest), "--root", str(data_root), "--out", str(data),
                 "--max-frames", "20"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "index.json" in err[0] and "max_frames" in err[0]


# ------------------------------------------------------------------------------------------------ loader
def test_sampler_splits_each_global_batch_over_ranks_and_resumes(shards):
    from realtalk.datasets import A2EWindowDataset, ResumableSampler
    from realtalk.shards import ShardStore

    data, _, fm, feat, _, _ = shards
    ds = A2EWindowDataset(ShardStore(data, "train"), 16, 16, feat.tokens_per_frame, seed=0)
    assert len(ds) == 2 * (MAX_FRAMES - 16 + 1)
    one = list(ResumableSampler(ds, 1, 0, 4))
    r0, r1 = list(ResumableSampler(ds, 2, 0, 4)), list(ResumableSampler(ds, 2, 1, 4))
    for k in range(len(one) // 4):
        assert sorted(one[4 * k:4 * k + 4]) == sorted(r0[2 * k:2 * k + 2] + r1[2 * k:2 * k + 2])
    s = ResumableSampler(ds, 1, 0, 4)
    s.set_position(0, 3)
    assert list(s) == one[12:]
    # items are a function of (index, epoch) only: the same in any process or worker
    a, b = ds[(5, 0)], ds[(5, 0)]
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(ds[(5, 1)]["history"], a["history"])


# ------------------------------------------------------------------------------------------------ DDP
def _cli_train(args: list[str], nproc: int, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    head = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
             "harness.cli"] if nproc > 1 else [sys.executable, "-m", "harness.cli"])
    return subprocess.run(head + ["train"] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _curve(out: Path, stage: str = "a2e") -> np.ndarray:
    return np.array([json.loads(x)["loss"] for x in (out / f"{stage}_log.jsonl").read_text().splitlines()])


def test_ddp_two_ranks_over_gloo_equal_one_process_with_the_same_global_batch(shards, tmp_path):
    """torchrun --nproc_per_node 2 (gloo, CPU) vs one process, global batch 4, 5 steps of A2E on real shards.

    Tolerance (derived, not measured): the two runs differ only in float32 summation order -- the batch
    means of the loss and of every gradient entry are taken over 4 samples at once vs 2 + 2 then averaged
    (gloo all-reduce). torch's CPU reductions are pairwise, so each differs by <= log2(n) u relative
    (n <= 4*16*n_exp ~ 2^12 terms, u = 2^-24: ~7e-7); a step chains ~10 such reductions (loss, backward
    through 4 transformer layers, Adam's moments), and Adam's update m/sqrt(v) has unit gain in the relative
    gradient error, so after k = 5 steps the loss may differ by ~ k * 10 * 7e-7 ~ 4e-5 relative: rtol 1e-4.
    Gate that can fail: one process with the PER-RANK batch (2) is a different curve, far outside it."""
    data, *_ = shards
    common = ["a2e", "--data", str(data), "--config", "small", "--steps", "5", "--warmup", "2", "--seed", "3",
              "--log-every", "1", "--threads", "1", "--no-progress"]
    runs = {}
    for name, nproc, batch in (("single", 1, 4), ("ddp", 2, 4), ("half", 1, 2)):
        out = tmp_path / name
        r = _cli_train(common + ["--batch", str(batch), "--out", str(out)], nproc, REPO)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = _curve(out)
    print("single", runs["single"].tolist(), "\nddp   ", runs["ddp"].tolist(), "\nhalf  ", runs["half"].tolist())
    rel = np.abs(runs["ddp"] - runs["single"]) / np.abs(runs["single"])
    print("max relative difference ddp vs single", float(rel.max()))
    assert len(runs["ddp"]) == 5 and rel.max() < 1e-4
    assert (np.abs(runs["half"] - runs["single"]) / np.abs(runs["single"])).max() > 1e-2
    ck = torch.load(tmp_path / "ddp" / "a2e.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2 and ck["step"] == 5


def _reduction_layers(module: torch.nn.Module) -> int:
    """Layers whose forward or backward sums over many terms (conv, linear, norms): the chain length D."""
    kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.InstanceNorm2d)
    return sum(isinstance(m, kinds) for m in module.modules())


def _worker(args: list[str], nproc: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    script = str(REPO / "tests" / "_ddp_renderer_worker.py")
    head = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script]
            if nproc > 1 else [sys.executable, script])
    return subprocess.run(head + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # ~4 renderer runs of 3 steps at 256 px on 1 thread each (runtime in the report)
def test_ddp_two_ranks_renderer_equal_one_process_with_the_same_global_batch(shards, tmp_path):
    """The renderer variant (L1 + LSGAN from step 0 + teeth, discriminator updated every step; no VGG: see
    tests/_ddp_renderer_worker.py): torchrun --nproc_per_node 2 over gloo vs one process, global batch 4,
    3 steps on real shards.

    Tolerance (derived as for A2E): the runs differ only in float32 summation order. Each reduction sums
    n <= 4 * 3 * 256 * 256 ~ 2^20 terms (the L1 mean; conv weight gradients sum over B*H*W <= 2^18
    positions): <= log2(n) u relative (u = 2^-24); a step chains at most D reductions, D = every conv /
    linear / norm layer of renderer + discriminator (counted below, ~90: an upper bound on the chain
    length), with unit gain through Adam's m/sqrt(v); over k steps: rtol = k * D * log2(n) * u (~2e-4).
    The teeth term is a ratio of sums over the batch: only with its denominator all-reduced (losses.masked_l1)
    does DDP give this curve. Gates that can fail: one process with the per-rank batch (2), and DDP with
    the old per-rank teeth ratio (--local-teeth, the mean of 2 ratios), are both outside the tolerance."""
    from realtalk.config import small
    from realtalk.losses import PatchDiscriminator
    from realtalk.renderer import Renderer

    data, _, fm, feat, _, _ = shards
    steps, batch = 3, 4
    cfg = small().with_face_model(fm.n_id, fm.n_exp, fm.n_pose)
    with torch.device("meta"):
        depth = _reduction_layers(Renderer(cfg.renderer)) + _reduction_layers(
            PatchDiscriminator(cfg.train.disc_channels, cfg.train.disc_layers))
    n = batch * 3 * cfg.renderer.size ** 2
    rtol = steps * depth * np.ceil(np.log2(n)) * 2.0 ** -24
    runs = {}
    for name, nproc, b, extra in (("single", 1, batch, []), ("ddp", 2, batch, []), ("half", 1, batch // 2, []),
                                  ("ddp_local_teeth", 2, batch, ["--local-teeth"])):
        out = tmp_path / name
        r = _worker([str(data), str(out), str(b), str(steps)] + extra, nproc)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = {k: np.array([json.loads(x)[k] for x in (out / "renderer_log.jsonl").read_text().splitlines()])
                      for k in ("loss", "teeth", "adv_d")}
    rel = {k: float((np.abs(v["loss"] - runs["single"]["loss"]) / np.abs(runs["single"]["loss"])).max())
           for k, v in runs.items()}
    for k, v in runs.items():
        print(f"{k:16s} loss {v['loss'].tolist()} teeth {v['teeth'].tolist()} max rel diff {rel[k]:.2e}")
    print(f"rtol {rtol:.2e} (k {steps}, D {depth}, log2 n {np.ceil(np.log2(n)):.0f})")
    assert len(runs["ddp"]["loss"]) == steps and rel["ddp"] < rtol
    assert runs["single"]["teeth"].min() > 0 and runs["single"]["adv_d"].min() > 0  # both terms really ran
    assert rel["half"] > 10 * rtol and rel["ddp_local_teeth"] > rtol
    ck = torch.load(tmp_path / "ddp" / "renderer.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["step"] == steps and "disc" in ck


# ------------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("stage", ["a2e", pytest.param("renderer", marks=pytest.mark.slow)])  # renderer: minutes
def test_stop_and_resume_continues_the_identical_curve(shards, tmp_path, stage):
    """6 steps straight vs 3 steps, a new process state, then resume to 6 (DataLoader with 1 worker): the
    same float operations on the same inputs in the same order, so the curves are equal EXACTLY (tolerance
    0); this holds only if model, optimiser, scheduler, EMA, discriminator and the sampler position are all
    restored (a lost scheduler changes the LR at step 4, a lost sampler position the batch)."""
    from realtalk.shards import ShardStore
    from realtalk.train import load_checkpoint, train_a2e, train_renderer
    from realtalk.train_config import TrainSettings

    data, _, fm, feat, _, _ = shards
    cfg = _cfg(fm, feat)
    cfg.train.adv_start = 2  # the discriminator's first update falls before the stop
    fn = train_a2e if stage == "a2e" else train_renderer
    kw = dict(progress=False, log=lambda *a: None, val_clips=ShardStore(data, "test"))
    if stage == "renderer":
        kw["perceptual"] = False
    st = lambda: TrainSettings(warmup_steps=4, workers=1, ema_decay=0.9, val_every=3)  # noqa: E731
    train = ShardStore(data, "train")
    fn(cfg, train, fm, tmp_path / "straight", steps=6, settings=st(), **kw)
    fn(cfg, train, fm, tmp_path / "resumed", steps=3, settings=st(), **kw)
    torch.manual_seed(12345)  # another process state: the checkpoint must restore it
    fn(cfg, train, fm, tmp_path / "resumed", steps=6, resume=True, settings=st(), **kw)
    a, b = _curve(tmp_path / "straight", stage), _curve(tmp_path / "resumed", stage)
    print(stage, "straight", a.tolist(), "\nresumed ", b.tolist())
    assert len(a) == 6 and np.array_equal(a, b)
    ca, cb = load_checkpoint(tmp_path / "straight" / f"{stage}.pt"), load_checkpoint(tmp_path / "resumed" / f"{stage}.pt")
    for k in ca["ema"]["shadow"]:
        assert torch.equal(ca["ema"]["shadow"][k], cb["ema"]["shadow"][k]), k
    assert [r["step"] for r in ca["validation"]] == [3, 6] == [r["step"] for r in cb["validation"]]
    assert ca["validation"] == cb["validation"]
    assert {"model", "ema", "optimizer", "scheduler", "scaler", "rng", "sampler", "settings"} <= set(ca)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    from realtalk.train import atomic_torch_save, load_checkpoint, rng_state, set_rng_state

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    atomic_torch_save({"rng": rng_state()}, tmp_path / "r.pt")
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])  # weights_only=True
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want


# ------------------------------------------------------------------------------------------------ EMA, validation, precision
def test_validation_under_inference_conditions_and_ema_export(shards, tmp_path):
    from realtalk.a2e import AudioToExpression
    from realtalk.shards import ShardStore
    from realtalk.train import load_checkpoint, train_a2e
    from realtalk.train_config import TrainSettings
    from realtalk.validation import validate_a2e

    data, _, fm, feat, _, _ = shards
    cfg = _cfg(fm, feat)
    val = ShardStore(data, "test")
    model = AudioToExpression(cfg.a2e)
    s = train_a2e(cfg, ShardStore(data, "train"), fm, tmp_path, steps=4, progress=False, log=lambda *a: None,
                  model=model, val_clips=val, settings=TrainSettings(warmup_steps=2, ema_decay=0.5))
    ck = load_checkpoint(tmp_path / "a2e.pt")
    # the passed model holds the EMA weights at the end, and validation is reproducible from them
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["ema"]["shadow"][k])
    assert any(not torch.equal(ck["model"][k], ck["ema"]["shadow"][k]) for k in ck["model"])
    again = validate_a2e(model, val, fm, cfg, max_frames=100)
    assert again == {k: v for k, v in s["validation"].items() if k != "step"}
    assert set(again) == {"val_loss", "val_exp_mse", "val_mouth"} and np.isfinite(again["val_loss"])


def test_bf16_autocast_trains_on_cpu(shards, tmp_path):
    from realtalk.shards import ShardStore
    from realtalk.train import train_a2e
    from realtalk.train_config import TrainSettings

    data, _, fm, feat, _, _ = shards
    s = train_a2e(_cfg(fm, feat), ShardStore(data, "train"), fm, tmp_path, steps=2, progress=False,
                  log=lambda *a: None, settings=TrainSettings(precision="bf16", warmup_steps=1))
    assert s["steps"] == 2 and np.isfinite(s["final_loss"])


def test_train_cli_rejects_cuda_without_a_device_in_one_line(shards, capsys):
    from harness.cli import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    data, *_ = shards
    assert main(["train", "a2e", "--data", str(data), "--device", "cuda", "--steps", "1", "--out", "x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0].lower()
