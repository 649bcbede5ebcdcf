"""Latency core, budgets and the command, on a small real torch network (no timing asserted)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness import methods
from harness.budgets import load_budgets
from harness.cli import main
from harness.errors import BenchError
from harness.latency import LatencyStage, count_flops, reference_op_ms, time_stage


class _TinyConvMethod(methods.Method):
    """A registered method whose only stage is a conv net, to exercise the command end to end."""

    name = "_tiny_conv"

    def __init__(self, width: str = "8") -> None:
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, int(width), 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(int(width), 3, 3, padding=1))

    def fingerprint(self) -> str:
        return "tiny"

    def generate(self, inp):  # pragma: no cover - not used here
        raise NotImplementedError

    def latency_stages(self, *, device="cpu", batch=1, dtype="fp32", compile=False, cuda_graphs=False):
        return [LatencyStage("renderer", lambda: torch.randn(batch, 3, 32, 32), self.net, batch, module=self.net)]


@pytest.fixture()
def tiny_method():
    methods.REGISTRY[_TinyConvMethod.name] = _TinyConvMethod
    yield _TinyConvMethod.name
    methods.REGISTRY.pop(_TinyConvMethod.name, None)


def test_time_stage_reports_consistent_figures() -> None:
    net = torch.nn.Linear(64, 64)
    stage = LatencyStage("lin", lambda: torch.randn(4, 64), net, frames_per_call=4, module=net)
    r = time_stage(stage, method="m", iterations=7, warmup=2, batch=4)
    assert r.iterations == 7 and r.warmup == 2
    assert r.params == 64 * 64 + 64
    assert r.flops_per_frame == pytest.approx(2 * 64 * 64)  # one 64x64 matmul per frame
    assert 0 < r.p50_ms_per_frame <= r.p95_ms_per_frame
    assert r.frames_per_s == pytest.approx(1000.0 / r.mean_ms_per_frame)
    assert r.timer == "perf_counter"


def test_count_flops_conv() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(1, 3, 16, 16)
    assert count_flops(lambda: conv(x)) == 2 * 3 * 8 * 9 * 16 * 16


def test_reference_op_positive() -> None:
    assert reference_op_ms(n=64, iterations=3) > 0


def _write_budgets(path: Path, ratio: float) -> Path:
    path.write_text(f"""
device_classes:
  cpu: {{match: cpu}}
  h100: {{match: H100}}
budgets:
  - {{method: _tiny_conv, stage: renderer, device_class: cpu, ratio: {ratio}, batch: 2}}
  - {{method: _tiny_conv, stage: renderer, device_class: h100, ms_per_frame: 3.0}}
""")
    return path


def test_budget_check_passes_and_fails(tiny_method: str, tmp_path: Path) -> None:
    generous = _write_budgets(tmp_path / "ok.yaml", 1e6)
    assert main(["latency", "--check", str(generous), "--iterations", "3", "--warmup", "1",
                 "--json", str(tmp_path / "ok.json")]) == 0
    report = json.loads((tmp_path / "ok.json").read_text())
    assert report["device_class"] == "cpu" and report["results"][0]["budget_ok"] is True
    impossible = _write_budgets(tmp_path / "bad.yaml", 1e-9)
    assert main(["latency", "--check", str(impossible), "--iterations", "3", "--warmup", "1"]) == 1


def test_budget_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "b.yaml"
    bad.write_text("device_classes: {cpu: {match: cpu}}\nbudgets:\n  - {method: a, stage: b, device_class: gpu9, ratio: 2}\n")
    with pytest.raises(BenchError, match="unknown device class"):
        load_budgets(bad)
    bad.write_text("device_classes: {cpu: {match: cpu}}\nbudgets:\n  - {method: a, stage: b, device_class: cpu}\n")
    with pytest.raises(BenchError, match="exactly one"):
        load_budgets(bad)


def test_latency_command_json_and_run_store(tiny_method: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"run_id": "x"}))
    out = tmp_path / "lat.json"
    rc = main(["latency", "--method", tiny_method, "--method-arg", "width=4", "--batch", "2", "--iterations", "3",
               "--warmup", "1", "--json", str(out), "--run", str(run_dir)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res[0]["stage"] == "renderer" and res[0]["batch"] == 2 and res[0]["params"] == 3 * 4 * 9 + 4 + 4 * 3 * 9 + 3
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["latency"][tiny_method]["renderer"]["p50_ms_per_frame"] > 0


def test_unknown_stage_is_a_clear_error(tiny_method: str) -> None:
    assert main(["latency", "--method", tiny_method, "--stage", "nope", "--iterations", "1"]) == 1


def test_cuda_request_without_gpu_is_clear(tiny_method: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["latency", "--method", tiny_method, "--device", "cuda"]) == 1
