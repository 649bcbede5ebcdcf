"""Training on a real batch: a few Adam steps lower the loss (both stages); checkpoints, logs and resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def test_a2e_steps_reduce_loss_on_real_batch(real_train_clip):
    from realtalk.a2e import AudioToExpression
    from realtalk.data import A2EWindows
    from realtalk.losses import a2e_loss

    fm, cfg, clips, _ = real_train_clip
    torch.manual_seed(0)
    model = AudioToExpression(cfg.a2e)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = A2EWindows(clips, cfg.a2e.T, cfg.a2e.n_history).batch(8, np.random.default_rng(0))
    losses = []
    for _ in range(8):
        loss, parts = a2e_loss(fm, batch["alpha"], model(batch["audio"], batch["alpha"], batch["history"]),
                               batch["beta"], cfg.a2e.mouth_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["loss"])
    print("a2e fixed-batch losses", [round(x, 4) for x in losses])
    assert losses[-1] < 0.8 * losses[0]  # measured -45%; fp32 noise is ~1e-6 relative


@pytest.mark.parametrize("output", ["ref_residual", "sigmoid"])
def test_renderer_steps_reduce_loss_on_real_batch(real_train_clip, output):
    """Both heads (small's reference residual, the paper's sigmoid) learn on a fixed real batch; the
    adversarial term is left out (a random discriminator's gradient is noise over 6 steps)."""
    import dataclasses

    from realtalk.data import RendererFrames
    from realtalk.losses import RendererLoss, teeth_mask
    from realtalk.renderer import Renderer
    from realtalk.train import renderer_masks

    fm, cfg, clips, _ = real_train_clip
    torch.manual_seed(0)
    model = Renderer(dataclasses.replace(cfg.renderer, output=output))
    crit = RendererLoss(disc_channels=8, disc_layers=2)
    lr = {"ref_residual": 1e-4, "sigmoid": 1e-3}[output]  # the residual head oscillates at 1e-3 (measured)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    b = RendererFrames(clips).batch(2, np.random.default_rng(0))
    mask = renderer_masks(fm, b["alpha"], b["beta"], b["rho"], 256)
    assert 0.05 < float(1 - mask.mean()) < 0.7  # a lower-face region is generated, not the whole crop
    teeth = teeth_mask(fm, b["alpha"], b["beta"], b["rho"], 256)
    losses = []
    for _ in range(10):
        i_hat, _ = model(b["target"], b["reference"], mask, b["alpha"], b["beta"], b["rho"])
        loss, parts = crit.generator_loss(i_hat, b["target"], teeth, use_adv=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts)
    print(f"renderer ({output}) fixed-batch losses", [round(p["loss"], 4) for p in losses],
          "l1", [round(p["l1"], 5) for p in losses], "teeth", [round(p["teeth"], 4) for p in losses])
    # Adam's sign-like first steps make the path CPU-dependent (fp32 vs fp64 differ by 1e-4 at step 4), so
    # the claim is a clear decrease of the mean of the last 3 steps, not a strict one at the 1e-6 level.
    late = {k: float(np.mean([p[k] for p in losses[-3:]])) for k in ("loss", "l1", "teeth")}
    assert late["loss"] < 0.85 * losses[0]["loss"]  # measured -24..-43% over 6 CPU-kernel configurations
    # the teeth term (mean L1 over 0.4% of the pixels) dominates the gradient; the whole-crop L1 falls
    # clearly only for the sigmoid head: the residual head starts at the reference, whose L1 it trades
    # against the teeth term within +-1% over 10 steps (measured), so only the teeth term is asserted there
    term = "l1" if output == "sigmoid" else "teeth"
    assert late[term] < 0.85 * losses[0][term]


def test_train_loops_checkpoint_resume_and_export(real_train_clip, tmp_path):
    from realtalk.train import export_combined, load_checkpoint, train_a2e, train_renderer

    fm, cfg, clips, _ = real_train_clip
    cfg.train.log_every = 1
    s1 = train_a2e(cfg, clips, fm, tmp_path, steps=2, progress=False)
    assert s1["steps"] == 2 and (tmp_path / "a2e.pt").exists()
    s2 = train_a2e(cfg, clips, fm, tmp_path, steps=4, resume=True, progress=False)
    ck = load_checkpoint(tmp_path / "a2e.pt")
    assert s2["steps"] == 4 and ck["step"] == 4 and len(ck["losses"]) == 4
    assert {"model", "optimizer", "config", "git_hash", "face_model"} <= set(ck)
    rows = [json.loads(line) for line in (tmp_path / "a2e_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert (tmp_path / "a2e_log.csv").read_text().startswith("step,")
    cfg.train.renderer_batch = 1
    sr = train_renderer(cfg, clips, fm, tmp_path, steps=1, progress=False)
    assert sr["steps"] == 1 and "disc" in load_checkpoint(tmp_path / "renderer.pt")
    dst = export_combined(tmp_path / "a2e.pt", tmp_path / "renderer.pt", tmp_path / "realtalk.pt")
    from realtalk.inference import RealTalkPipeline

    pipe = RealTalkPipeline.from_checkpoint(dst)
    assert pipe.cfg.a2e.n_exp == fm.n_exp


def test_cli_parser_has_train():
    from harness.cli import build_parser

    args = build_parser().parse_args(["train", "renderer", "--split", "demo", "--config", "small", "--steps", "3",
                                      "--time-budget", "5", "--out", "x", "--resume"])
    assert args.stage == "renderer" and args.steps == 3 and args.resume and args.time_budget == 5


def test_split_data_in_worker_processes_equals_serial(data_root):
    """The demo checkpoint loads its clips in a process pool: same clips, same order, same arrays."""
    from harness.core.pool import process_pool
    from realtalk.audio_features import get_featurizer
    from realtalk.data import load_split_data
    from realtalk.face_models import load_default_face_model

    fm, feat = load_default_face_model(), get_featurizer("logmel")
    logs: list[str] = []
    serial = load_split_data("demo", data_root, fm, feat, role="test", max_frames=12, min_frames=10)
    with process_pool(2) as pool:
        pooled = load_split_data("demo", data_root, fm, feat, role="test", max_frames=12, min_frames=10,
                                 log=logs.append, pool=pool)
    assert [c.clip_id for c in pooled] == [c.clip_id for c in serial] and len(serial) == 5
    assert logs == [f"loaded {c.clip_id}: 12 frames" for c in serial]
    for a, b in zip(serial, pooled):
        for name in ("crops", "alpha", "beta", "rho", "audio"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_a2e_training_refuses_tokens_its_config_was_not_built_for(real_train_clip, tmp_path):
    """The featurizer name is stored in the checkpoint and inference builds its tokens: a phones+log-mel
    config trained under the default name 'logmel' (the demo fallback did) would load and then fail at the
    first clip, so training refuses it up front."""
    import copy

    from realtalk.audio_features import featurizer_dim, get_featurizer
    from realtalk.train import train_a2e

    for name in ("logmel", "phones", "phones+logmel"):  # the static widths are the built featurizers' widths
        assert featurizer_dim(name) == get_featurizer(name).dim, name
    assert featurizer_dim("hubert") is None
    fm, cfg, clips, _ = real_train_clip
    wide = copy.deepcopy(cfg)
    wide.a2e.audio_dim = featurizer_dim("phones+logmel")
    with pytest.raises(ValueError, match=r"featurizer 'logmel' gives 80-d audio tokens, the A2E config expects 121-d"):
        train_a2e(wide, clips, fm, tmp_path, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"'phones' gives 41-d .* expects 80-d"):
        train_a2e(cfg, clips, fm, tmp_path, steps=1, featurizer_name="phones", progress=False)
    assert not (tmp_path / "a2e.pt").exists()
