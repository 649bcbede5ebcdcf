"""A2E transformer: shapes, token layout per ablation switch, parameter counts, gradients, loss."""
from __future__ import annotations

import dataclasses

import torch

from realtalk.a2e import AudioToExpression, PeriodicPositionalEncoding, count_parameters
from realtalk.config import get_config
from realtalk.losses import a2e_loss


def _inputs(cfg, b=2):
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(b, cfg.n_audio_tokens, cfg.audio_dim, generator=g)
    alpha = torch.randn(b, cfg.n_id, generator=g)
    hist = torch.randn(b, cfg.n_history, cfg.n_exp, generator=g)
    return audio, alpha, hist


def test_shapes_and_tokens():
    cfg = get_config("small").a2e
    assert cfg.n_audio_tokens == 32 and cfg.T == 16 and cfg.n_history == 16
    for use_shape in (True, False):
        for use_history in (True, False):
            c = dataclasses.replace(cfg, use_shape=use_shape, use_history=use_history)
            m = AudioToExpression(c).eval()
            assert m.n_tokens() == 32 + int(use_shape) + 16 * int(use_history)
            out = m(*_inputs(c))
            assert out.shape == (2, 16, c.n_exp)
            assert torch.isfinite(out).all()


def test_parameter_counts():
    paper = count_parameters(AudioToExpression(get_config("paper").a2e))
    small = count_parameters(AudioToExpression(get_config("small").a2e))
    print(f"A2E params: paper {paper / 1e6:.3f}M, small {small / 1e6:.3f}M")
    assert 4e6 < paper < 12e6
    assert 0.2e6 < small < 2e6


def test_ppe_is_periodic():
    ppe = PeriodicPositionalEncoding(16, period=5)
    x = ppe(torch.zeros(1, 20, 16))
    assert torch.allclose(x[0, 0], x[0, 5]) and not torch.allclose(x[0, 0], x[0, 1])


def test_gradients_and_history_matters():
    cfg = dataclasses.replace(get_config("small").a2e, dropout=0.0)
    torch.manual_seed(0)
    m = AudioToExpression(cfg)
    torch.nn.init.normal_(m.head.weight, std=0.02)  # the head starts at zero; perturb to see input effects
    audio, alpha, hist = _inputs(cfg)
    out = m(audio, alpha, hist)
    loss, parts = a2e_loss(None, alpha, out, torch.zeros_like(out))
    loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    m.eval()
    with torch.no_grad():
        assert not torch.allclose(m(audio, alpha, hist), m(audio, alpha, hist + 1.0))
        assert not torch.allclose(m(audio, alpha, hist), m(audio + 1.0, alpha, hist))


def test_mouth_vertex_loss_with_face_model():
    import pytest

    from harness.core.errors import WeightsMissingError
    from realtalk.face_models import load_default_face_model

    try:
        fm = load_default_face_model()
    except WeightsMissingError as exc:
        pytest.skip(f"default face model not built: {exc}")
    cfg = get_config("small").with_face_model(fm.n_id, fm.n_exp, fm.n_pose).a2e
    alpha = torch.randn(2, cfg.n_id)
    beta = torch.randn(2, cfg.T, cfg.n_exp)
    loss, parts = a2e_loss(fm, alpha, beta + 0.5, beta)
    assert parts["mouth"] > 0 and abs(parts["exp_mse"] - 0.25) < 1e-5
    zero, parts0 = a2e_loss(fm, alpha, beta, beta)
    assert float(zero) == 0.0
