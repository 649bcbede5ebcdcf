"""The A2E seed ensemble (realtalk.a2e_ensemble, `train a2e --ensemble K`): its forward is the mean of its
members', its weights round-trip through the stage file, the combined file and the inference pipeline, and
bad inputs fail with a message."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests._numerics import rounding_bound


def _members(cfg, k: int, seed: int = 0) -> list:
    """k AudioToExpression nets with non-zero output heads (the zero-initialised head would make every
    member, and so the mean, output the same zeros)."""
    from realtalk.a2e import AudioToExpression

    out = []
    for i in range(k):
        torch.manual_seed(seed + i)
        m = AudioToExpression(cfg).eval()
        with torch.no_grad():
            for p in m.parameters():
                if p.abs().max() == 0:
                    p.normal_(0.0, 0.2)
        out.append(m)
    return out


def _inputs(cfg, b: int = 3):
    g = torch.Generator().manual_seed(5)
    return (torch.randn(b, cfg.n_audio_tokens, cfg.audio_dim, generator=g), torch.randn(b, cfg.n_id, generator=g),
            torch.randn(b, cfg.n_history, cfg.n_exp, generator=g))


@pytest.fixture(scope="module")
def a2e_cfg():
    from realtalk.config import small

    return small().a2e


def test_forward_is_the_mean_of_its_members(a2e_cfg):
    from realtalk.a2e_ensemble import A2EEnsemble, ensemble_state

    members = _members(a2e_cfg, 3)
    ens = A2EEnsemble(a2e_cfg, 3).eval()
    ens.load_state_dict(ensemble_state([m.state_dict() for m in members]))
    x = _inputs(a2e_cfg)
    with torch.no_grad():
        got = ens(*x)
        outs = [copy.deepcopy(m).double()(*(t.double() for t in x)) for m in members]
    want = sum(outs) / 3
    scale = float(want.abs().max())
    tol = rounding_bound(members[0], torch.float32) * max(scale, 1.0)
    assert got.shape == want.shape == (3, a2e_cfg.T, a2e_cfg.n_exp)
    assert float((got.double() - want).abs().max()) <= tol
    # an average, not any one member: each member is further from it than the rounding level
    for o in outs:
        assert float((o - want).abs().max()) > 100 * tol
    assert ens.n_tokens() == members[0].n_tokens() and ens.cfg is a2e_cfg


def test_state_size_and_loading(a2e_cfg):
    from realtalk.a2e import AudioToExpression
    from realtalk.a2e_ensemble import A2EEnsemble, a2e_from_state, ensemble_size, ensemble_state

    members = _members(a2e_cfg, 2)
    state = ensemble_state([m.state_dict() for m in members])
    assert ensemble_size(state) == 2 and ensemble_size(members[0].state_dict()) == 0
    assert isinstance(a2e_from_state(a2e_cfg, members[0].state_dict()), AudioToExpression)
    loaded = a2e_from_state(a2e_cfg, state)
    assert isinstance(loaded, A2EEnsemble) and len(loaded.members) == 2
    for m, lm in zip(members, loaded.members):
        for (k, v), (k2, v2) in zip(m.state_dict().items(), lm.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
    gap = {k.replace("members.1.", "members.2.", 1): v for k, v in state.items()}
    with pytest.raises(ValueError, match=r"members \[0, 2\] are not 0..1"):
        ensemble_size(gap)
    with pytest.raises(ValueError, match="at least 2"):
        ensemble_state([members[0].state_dict()])
    with pytest.raises(ValueError, match="at least 2"):
        A2EEnsemble(a2e_cfg, 1)
    other = copy.deepcopy(a2e_cfg)
    other.d_model = a2e_cfg.d_model * 2
    with pytest.raises(ValueError, match="member 1 has other weights"):
        ensemble_state([members[0].state_dict(), AudioToExpression(other).state_dict()])


def test_trained_members_to_combined_file_to_pipeline(real_train_clip, tmp_path, data_root):
    """Two real (tiny) A2E trainings -> write_a2e_ensemble -> export_combined -> RealTalkPipeline: the loaded
    A2E is the ensemble of the members' EMA weights and its expressions are the mean of the members'."""
    from harness.core.splits import load_clip_media
    from realtalk.a2e_ensemble import A2EEnsemble
    from realtalk.inference import RealTalkPipeline
    from realtalk.train import (ENSEMBLE_KIND, export_combined, load_checkpoint, member_dir, train_a2e,
                                train_renderer, write_a2e_ensemble)

    fm, cfg, clips, entry = real_train_clip
    paths = []
    for i in range(2):
        c = copy.deepcopy(cfg)
        c.train.seed = 7 + i
        train_a2e(c, clips, fm, member_dir(tmp_path, i), steps=3, progress=False, log=lambda *a: None)
        paths.append(member_dir(tmp_path, i) / "a2e.pt")
    cfg_r = copy.deepcopy(cfg)
    cfg_r.train.renderer_batch = 1
    train_renderer(cfg_r, clips, fm, tmp_path, steps=1, progress=False, log=lambda *a: None)
    ens_path = write_a2e_ensemble(paths, tmp_path / "a2e.pt", command="realtalk-bench train a2e --ensemble 2")
    ck = load_checkpoint(ens_path)
    cks = [load_checkpoint(p) for p in paths]
    assert ck["kind"] == ENSEMBLE_KIND and ck["stage"] == "a2e" and "optimizer" not in ck
    assert ck["ensemble"]["seeds"] == [7, 8] and ck["ensemble"]["steps"] == [3, 3]
    assert ck["ensemble"]["final_loss"] == [m["losses"][-1] for m in cks]
    for i, m in enumerate(cks):
        for k, v in m["ema"]["shadow"].items():
            assert torch.equal(ck["ema"]["shadow"][f"members.{i}.{k}"], v)
    dst = export_combined(ens_path, tmp_path / "renderer.pt", tmp_path / "realtalk.pt")
    comb = load_checkpoint(dst)
    assert comb["a2e_ensemble"]["seeds"] == [7, 8] and comb["train_commands"]["a2e"].endswith("--ensemble 2")

    pipe = RealTalkPipeline.from_checkpoint(dst)
    assert isinstance(pipe.a2e, A2EEnsemble) and len(pipe.a2e.members) == 2
    singles = []
    for i, p in enumerate(paths):  # each member alone in the same combined layout
        singles.append(RealTalkPipeline.from_checkpoint(export_combined(p, tmp_path / "renderer.pt",
                                                                        tmp_path / f"single{i}.pt")))
    video, audio = load_clip_media(entry, data_root)
    n = 40
    src = pipe.prepare(np.asarray(video.frames[:n]), source_path=video.path)
    tokens = pipe.audio_tokens(np.asarray(audio[: n * 640], np.float32), n)
    got = pipe.expressions(src, tokens, n)  # histories are seeded per window: the same for every pipeline
    outs = [s.expressions(src, tokens, n) for s in singles]
    want = sum(o.double() for o in outs) / 2
    # after 3 steps the zero-initialised head is still small: outputs ~1e-3, errors relative to them
    tol = rounding_bound(singles[0].fast.a2e, torch.float32) * float(want.abs().max())
    assert got.shape == (n, cfg.a2e.n_exp)
    assert float((got.double() - want).abs().max()) <= tol
    assert float((outs[0] - outs[1]).abs().max()) > 100 * tol  # two seeds, two different predictions

    with pytest.raises(ValueError, match="is an A2E seed ensemble"):
        train_a2e(cfg, clips, fm, tmp_path, steps=4, resume=True, progress=False, log=lambda *a: None)


def test_cli_rejects_an_ensemble_for_the_renderer(data_root, tmp_path, capsys):
    from harness.cli import main

    rc = main(["train", "renderer", "--split", "demo", "--config", "small", "--steps", "1", "--ensemble", "2",
               "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and "--ensemble 2: K >= 1, and K > 1 only for the a2e stage" in err
    assert len(err.strip().splitlines()) == 1
