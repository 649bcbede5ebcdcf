"""RealTalk / Wav2Lip latency stages, the method factory, per-budget method_args and budgets.yaml
(no timing asserted). Renderer stages use a 64 px renderer config so each runs in well under a second."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness.core import methods
from harness.budgets import load_budgets
from harness.cli import main
from harness.core.errors import BenchError
from harness.core.latency import time_stage
from realtalk.config import get_config
from realtalk.latency_stages import build_networks, latency_stages_for_method, realtalk_stages

ROOT = Path(__file__).resolve().parents[1]


def _small64():
    cfg = get_config("small")
    return dataclasses.replace(cfg, name="small-64", renderer=dataclasses.replace(cfg.renderer, size=64))


@pytest.mark.parametrize("batch", [1, 2])
def test_realtalk_stages_run_and_report(batch):
    a2e, ren, fm, cfg = build_networks(_small64())
    stages = realtalk_stages(a2e, ren, fm, cfg, batch=batch, frames=32)
    assert [s.name for s in stages] == ["a2e", "mask", "renderer", "paste"]
    fpc = {s.name: s.frames_per_call for s in stages}
    assert fpc == {"a2e": 2 * 16 * batch, "mask": batch, "renderer": batch, "paste": batch}
    for s in stages:
        r = time_stage(s, method="realtalk", batch=batch, iterations=1, warmup=0)
        assert r.p50_ms_per_frame > 0
        if s.name in ("a2e", "renderer"):
            assert r.flops_per_frame and r.flops_per_frame > 0 and r.params and r.params > 0
    with torch.inference_mode():
        x = stages[1].make_inputs()
        m = stages[1].run(x)
        assert m.shape == (batch, 1, 64, 64) and 0 < m.mean() < 1  # a real lower-face region is generated
        y = stages[2].make_inputs()
        out = stages[2].run(y)
        assert out.shape == (batch, 3, 64, 64) and out.dtype == torch.float32
        pasted = stages[3].run(stages[3].make_inputs())
        assert pasted.shape == (batch, 720, 1280, 3)


def test_bf16_stage_and_bad_options():
    a2e, ren, fm, cfg = build_networks(_small64())
    st = {s.name: s for s in realtalk_stages(a2e, ren, fm, cfg, dtype="bf16")}
    with torch.inference_mode():
        assert st["renderer"].run(st["renderer"].make_inputs()).dtype == torch.float32
    with pytest.raises(BenchError, match="CUDA graphs"):
        realtalk_stages(a2e, ren, fm, cfg, cuda_graphs=True)
    with pytest.raises(BenchError, match="dtype"):
        realtalk_stages(a2e, ren, fm, cfg, dtype="int4")


def test_factory_random_init_for_config(tmp_path):
    method = SimpleNamespace(config="small", checkpoint=None)
    stages = latency_stages_for_method(method, batch=1)
    assert {s.name for s in stages} == {"a2e", "mask", "renderer", "paste"}
    assert "random init" in stages[0].notes and "config small" in stages[0].notes
    with pytest.raises(BenchError, match="not found"):
        latency_stages_for_method(SimpleNamespace(config=None, checkpoint=tmp_path / "none.pt"))


class _RTStub(methods.Method):
    """Stands in for RealTalkMethod until it takes `config`: the same factory call the lead wires in."""

    name = "_rt_latency_stub"
    seen: list = []

    def __init__(self, config: str | None = None, checkpoint=None):
        self.config, self.checkpoint = config, checkpoint
        _RTStub.seen.append(config)

    def fingerprint(self) -> str:
        return "stub"

    def generate(self, inp):  # pragma: no cover
        raise NotImplementedError

    def latency_stages(self, *, device="cpu", batch=1, dtype="fp32", compile=False, cuda_graphs=False):
        return latency_stages_for_method(self, device=device, batch=batch, dtype=dtype, compile=compile,
                                         cuda_graphs=cuda_graphs)


@pytest.fixture()
def stub():
    methods.REGISTRY[_RTStub.name] = _RTStub
    _RTStub.seen.clear()
    yield _RTStub.name
    methods.REGISTRY.pop(_RTStub.name, None)


def test_cli_latency_and_budget_method_args(stub, tmp_path):
    out = tmp_path / "a2e.json"
    assert main(["latency", "--method", stub, "--method-arg", "config=small", "--stage", "a2e", "--iterations", "2",
                 "--warmup", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())[0]
    assert res["stage"] == "a2e" and res["frames_per_call"] == 16 and res["params"] > 0
    budgets = tmp_path / "b.yaml"
    budgets.write_text(f"""
device_classes: {{cpu: {{match: cpu}}}}
budgets:
  - {{method: {stub}, stage: a2e, device_class: cpu, ratio: 1.0e6, method_args: {{config: small}}}}
  - {{method: {stub}, stage: mask, device_class: cpu, ratio: 1.0e6, batch: 2, method_args: {{config: small}}}}
""")
    _RTStub.seen.clear()
    rep = tmp_path / "check.json"
    assert main(["latency", "--check", str(budgets), "--iterations", "2", "--warmup", "1", "--json", str(rep)]) == 0
    assert _RTStub.seen == ["small", "small"]  # the budget's method_args reached the method
    rows = json.loads(rep.read_text())["results"]
    assert [r["method_args"] for r in rows] == [{"config": "small"}] * 2 and all(r["budget_ok"] for r in rows)


def test_repo_budgets_file():
    b = load_budgets(ROOT / "budgets.yaml")
    assert {"cpu", "h100", "h200"} <= set(b.device_classes)
    assert b.device_class("cpu", "whatever") == "cpu"
    assert b.device_class("cuda", "NVIDIA H100 80GB HBM3") == "h100"
    assert b.device_class("cuda", "NVIDIA H200") == "h200"
    stage_names = {"realtalk": {"a2e", "mask", "renderer", "paste"}, "wav2lip": {"generator"}}
    for x in b.budgets:
        assert x.stage in stage_names[x.method], x
        assert x.method_args is None or x.method_args.get("config") in (None, "small", "paper")
        if x.device_class == "cpu":
            assert x.ratio is not None
        else:
            assert x.ms_per_frame is not None
    gpu = {(x.device_class, x.stage, x.batch): x.ms_per_frame for x in b.budgets if x.method == "realtalk"}
    assert gpu[("h100", "renderer", 1)] == 3.0 and gpu[("h100", "renderer", 64)] == 1.0
    assert gpu[("h100", "a2e", 1)] == pytest.approx(0.5 / 16)


def test_wav2lip_generator_stage():
    pytest.importorskip("baselines.wav2lip.model")
    from baselines.wav2lip.latency import latency_stages_for_method as w2l_stages
    from baselines.wav2lip.method import Wav2LipMethod

    m = Wav2LipMethod(checkpoint=str(Path("/nonexistent/wav2lip.pth")))
    (st,) = w2l_stages(m, batch=2)
    assert st.name == "generator" and st.frames_per_call == 2 and "random init" in st.notes
    r = time_stage(st, method="wav2lip", batch=2, iterations=1, warmup=0)
    assert r.flops_per_frame > 1e8 and r.params > 1e7
    with torch.inference_mode():
        assert st.run(st.make_inputs()).shape == (2, 3, 96, 96)


def _a2e_hand_flops(c) -> int:
    """Matmul FLOPs (2 per MAC) of one A2E window, from realtalk/a2e.py's layer list: input projections,
    n1 pre-norm encoder layers over L tokens, n2 decoder layers (self-attention over the T queries,
    cross-attention to the L memory tokens), the head."""
    d, f, T = c.d_model, c.ff_mult * c.d_model, c.T
    L = c.n_audio_tokens + int(c.use_shape) + (c.n_history if c.use_history else 0)

    def attn(lq: int, lk: int) -> int:  # q, k, v, out projections + Q K^T + P V
        return 2 * (lq * d * d + 2 * lk * d * d + lq * d * d) + 2 * 2 * lq * lk * d

    ffn = lambda n: 2 * 2 * n * d * f  # noqa: E731
    inputs = 2 * d * (c.n_audio_tokens * c.audio_dim + int(c.use_shape) * c.n_id
                      + (c.n_history * c.n_exp if c.use_history else 0))
    return (inputs + c.n1 * (attn(L, L) + ffn(L)) + c.n2 * (attn(T, T) + attn(T, L) + ffn(T))
            + 2 * T * d * c.n_exp)


def test_a2e_flops_count_attention_in_every_grad_mode():
    """The A2E stage's FLOP count: in inference nn.Transformer runs fused kernels and CPU attention runs
    _scaled_dot_product_flash_attention_for_cpu, both invisible to torch's counter (the count was 29% of the
    truth in inference, 92% in grad mode). harness.core.flops must give the hand count in all three modes."""
    a2e, ren, fm, cfg = build_networks("small")
    (st,) = [s for s in realtalk_stages(a2e, ren, fm, cfg, batch=2, frames=40) if s.name == "a2e"]
    x = st.make_inputs()
    n_windows = x[2].shape[1]
    want = 2 * n_windows * _a2e_hand_flops(cfg.a2e)
    got = {"grad": st.flops_per_call(x)}
    with torch.no_grad():
        got["no_grad"] = st.flops_per_call(x)
    with torch.inference_mode():
        got["inference"] = st.flops_per_call(x)
    assert got == {k: want for k in got}, (got, want)


def test_cpu_attention_is_counted():
    """F.scaled_dot_product_attention on CPU: 2 matmuls of B*H*Lq*Lk*E MACs each (torch's SDPA formula)."""
    from harness.core.latency import count_flops

    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)) == 2 * 2 * 2 * 3 * 10 * 7 * 8
