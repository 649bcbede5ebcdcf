"""Latency core, budgets and the command, on a small real torch network (no timing asserted)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.core import methods
from harness.budgets import load_budgets
from harness.cli import main
from harness.core.errors import BenchError
from harness.core.latency import LatencyStage, count_flops, reference_op_ms, time_stage


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


def test_unknown_stage_is_a_clear_error(tiny_method: str, capsys) -> None:
    assert main(["latency", "--method", tiny_method, "--stage", "nope", "--iterations", "1"]) == 2  # input error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no stage 'nope'" in err[0]


def test_cuda_request_without_gpu_is_clear(tiny_method: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["latency", "--method", tiny_method, "--device", "cuda"]) == 2


ROOT = Path(__file__).resolve().parent.parent


def _simulate_gpu(monkeypatch, name: str) -> None:
    """A visible GPU called `name` (the device-name probe and the availability probe), on a CPU machine."""
    import harness.core.latency as lat

    monkeypatch.setattr(lat, "cuda_available", lambda: True)
    monkeypatch.setattr(lat, "device_name", lambda device: name if device.startswith("cuda") else "a cpu")


def test_device_auto_follows_the_gpu_probe(monkeypatch) -> None:
    import harness.core.latency as lat

    monkeypatch.setattr(lat, "cuda_available", lambda: False)
    assert lat.resolve_device("auto") == "cpu"
    monkeypatch.setattr(lat, "cuda_available", lambda: True)
    assert lat.resolve_device("auto") == "cuda" and lat.resolve_device("cpu") == "cpu"
    assert lat.resolve_device("cuda:1") == "cuda:1"


def test_unknown_gpu_class_exits_3_naming_it(tiny_method: str, tmp_path: Path, monkeypatch, capsys) -> None:
    import harness.commands.latency as cmd

    _simulate_gpu(monkeypatch, "NVIDIA A100-SXM4-80GB")

    def never(*a, **k):
        raise AssertionError("nothing may be timed on an unknown device")

    monkeypatch.setattr(cmd, "measure", never)
    budgets = _write_budgets(tmp_path / "b.yaml", 1e6)  # classes cpu and h100
    for f in (budgets, ROOT / "budgets.yaml"):
        assert main(["latency", "--check", str(f)]) == 3  # --device auto picked the (simulated) GPU
        err = capsys.readouterr().err
        assert "'NVIDIA A100-SXM4-80GB'" in err and "matches no device class" in err and "h100" in err
    assert main(["latency", "--check", str(budgets), "--allow-unknown-device"]) == 0
    assert "nothing checked (--allow-unknown-device)" in capsys.readouterr().out
    # a CPU run against a file without a cpu class is just as unknown
    gpu_only = tmp_path / "gpu.yaml"
    gpu_only.write_text("device_classes: {h100: {match: H100}}\nbudgets:\n"
                        "  - {method: _tiny_conv, stage: renderer, device_class: h100, ms_per_frame: 3.0}\n")
    assert main(["latency", "--check", str(gpu_only), "--device", "cpu"]) == 3
    assert "'a cpu'" in capsys.readouterr().err


def test_known_gpu_class_without_budgets_exits_3(tiny_method: str, tmp_path: Path, monkeypatch, capsys) -> None:
    _simulate_gpu(monkeypatch, "NVIDIA H200")
    f = tmp_path / "b.yaml"
    f.write_text("device_classes: {cpu: {match: cpu}, h200: {match: H200}}\nbudgets:\n"
                 "  - {method: _tiny_conv, stage: renderer, device_class: cpu, ratio: 1.0e6}\n")
    assert main(["latency", "--check", str(f)]) == 3
    assert "device class 'h200', which has no budgets" in capsys.readouterr().err


def test_gpu_budgets_are_timed_on_the_gpu_auto_picks(tiny_method: str, tmp_path: Path, monkeypatch) -> None:
    """With a (simulated) H100 visible, --device auto checks the h100 budgets and times them on cuda. The timing
    itself then runs on this machine's CPU: only the device that was asked for is recorded."""
    import harness.commands.latency as cmd

    _simulate_gpu(monkeypatch, "NVIDIA H100 80GB HBM3")
    asked: list[str] = []
    real = cmd.measure

    def on_cpu(name, kwargs, stage, **opts):
        asked.append(opts["device"])
        return real(name, kwargs, stage, **{**opts, "device": "cpu"})

    monkeypatch.setattr(cmd, "measure", on_cpu)
    out = tmp_path / "r.json"
    rc = main(["latency", "--check", str(_write_budgets(tmp_path / "b.yaml", 1e-9)), "--iterations", "2",
               "--warmup", "0", "--json", str(out)])
    rep = json.loads(out.read_text())
    assert asked == ["cuda"] and rep["device_class"] == "h100" and rep["device"] == "cuda"
    assert rep["device_name"] == "NVIDIA H100 80GB HBM3" and rc in (0, 1)  # 3 ms/frame absolute: not asserted


def test_wav2lip_budgets(tmp_path: Path) -> None:
    """A budget for the wav2lip generator is timed like a RealTalk stage: one generous, one impossible."""
    pytest.importorskip("baselines.wav2lip.model")
    f = tmp_path / "w2l.yaml"
    f.write_text("device_classes: {cpu: {match: cpu}}\nbudgets:\n"
                 "  - {method: wav2lip, stage: generator, device_class: cpu, ratio: 1.0e6}\n"
                 "  - {method: wav2lip, stage: generator, device_class: cpu, ratio: 1.0e-9}\n")
    out = tmp_path / "w2l.json"
    assert main(["latency", "--check", str(f), "--device", "cpu", "--iterations", "1", "--warmup", "0",
                 "--json", str(out)]) == 1
    rows = json.loads(out.read_text())["results"]
    assert [(r["method"], r["stage"], r["budget_ok"]) for r in rows] == [("wav2lip", "generator", True),
                                                                         ("wav2lip", "generator", False)]
    assert rows[0]["params"] > 1e7
    repo = load_budgets(ROOT / "budgets.yaml")
    assert any(b.method == "wav2lip" and b.stage == "generator" and b.device_class == "cpu" for b in repo.budgets)
