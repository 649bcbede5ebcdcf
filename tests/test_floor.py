"""The floor table's arithmetic and FLOP counts (harness/floor.py, harness/floor_networks.py); nothing timed."""
from __future__ import annotations

import pytest
import torch

from harness.core.latency import count_flops
from harness.floor import FloorRow, format_table


@pytest.mark.parametrize("batch,n_in,n_out", [(1, 3, 5), (7, 64, 10), (32, 2048, 1008)])
def test_flop_counter_counts_a_linear_layer_as_2_in_out_batch(batch, n_in, n_out):
    lin = torch.nn.Linear(n_in, n_out)
    x = torch.zeros(batch, n_in)
    assert count_flops(lambda: lin(x)) == 2 * n_in * n_out * batch


def test_flop_counter_counts_a_conv_as_2_macs():
    conv = torch.nn.Conv2d(3, 32, 7, stride=2)  # dlib's stem: 150 -> 72
    x = torch.zeros(2, 3, 150, 150)
    assert count_flops(lambda: conv(x)) == 2 * (3 * 7 * 7) * 32 * 72 * 72 * 2


def test_row_ratio_is_time_over_flops_at_gemm_rate():
    row = FloorRow("net", batch=4, threads=2, flops_per_frame=10e9, s_per_frame=0.25, gemm_gflops=100.0)
    assert row.floor_s == pytest.approx(0.1)  # 10 GFLOP at 100 GFLOP/s
    assert row.ratio == pytest.approx(2.5)
    assert row.achieved_gflops == pytest.approx(40.0)
    line = format_table([row]).splitlines()[2]
    assert line.split()[:2] == ["net", "4"]
    assert "2.50" in line.split() and "250.00" in line.split() and "100.00" in line.split()


def test_memory_columns_are_bytes_over_the_measured_bandwidth():
    """The roofline columns: MB/frame, mem GB/s and mem ms = bytes / bandwidth; '-' where not counted."""
    row = FloorRow("net", 4, 2, 10e9, 0.25, 100.0, bytes_per_frame=2e8, mem_gbs=10.0)
    assert row.mem_s == pytest.approx(0.02)  # 200 MB at 10 GB/s
    cols = format_table([row]).splitlines()[2].split()
    assert cols[11:15] == ["-", "200.0", "10.0", "20.00"]
    bare = format_table([FloorRow("net", 4, 2, 10e9, 0.25, 100.0)]).splitlines()[2].split()
    assert bare[11:15] == ["-", "-", "-", "-"]


def test_roofline_columns_are_max_of_flop_and_byte_time():
    """roof ms = max(floor ms, mem ms) and roof ratio = ms/frame over it, printed after mem ms; the judged ratio
    and verdict stay on the FLOP floor (a memory-bound row can fail while its roof ratio is small)."""
    mem_bound = FloorRow("net", 4, 1, 10e9, 0.25, 100.0, target=1.5, bytes_per_frame=2e9, mem_gbs=10.0)
    assert mem_bound.floor_s == pytest.approx(0.1) and mem_bound.mem_s == pytest.approx(0.2)
    assert mem_bound.roof_s == pytest.approx(0.2) and mem_bound.roof_ratio == pytest.approx(1.25)
    assert mem_bound.ratio == pytest.approx(2.5) and mem_bound.verdict == "FAIL"
    cols = format_table([mem_bound]).splitlines()[2].split()
    assert cols[8] == "2.50" and cols[14:17] == ["200.00", "200.00", "1.25"]
    flop_bound = FloorRow("net", 4, 1, 10e9, 0.25, 100.0, bytes_per_frame=2e8, mem_gbs=10.0)
    assert flop_bound.roof_s == pytest.approx(0.1) and flop_bound.roof_ratio == pytest.approx(2.5)
    bare = FloorRow("net", 4, 1, 10e9, 0.25, 100.0)
    assert bare.roof_s is None and bare.roof_ratio is None
    assert format_table([bare]).splitlines()[2].split()[15:17] == ["-", "-"]
    assert "roof ratio" in format_table([bare]).splitlines()[0]


def test_cpu_ratio_is_cpu_seconds_over_flops_at_the_cpu_gemm_rate():
    """cpu ratio: CPU s/frame over FLOPs / (GEMM FLOPs per CPU second); the wall ratio and verdict are
    unchanged by it (a loaded machine: wall 0.25 s, CPU 0.12 s)."""
    row = FloorRow("net", 4, 2, 10e9, 0.25, 100.0, target=1.5, cpu_s_per_frame=0.12, gemm_cpu_gflops=100.0)
    assert row.cpu_ratio == pytest.approx(1.2) and row.ratio == pytest.approx(2.5) and row.verdict == "FAIL"
    assert format_table([row]).splitlines()[2].split()[11] == "1.20"


def test_count_bytes_reads_inputs_writes_outputs_and_skips_views():
    """count_bytes: an elementwise op moves its input and output, a matmul its two inputs and output, a view
    nothing, an in-place op reads and writes its tensor, a broadcast input counts its storage once."""
    from harness.core.flops import count_bytes

    x, w = torch.zeros(100, 100), torch.zeros(100, 100)
    n = 100 * 100 * 4
    assert count_bytes(lambda: x + 1) == 2 * n
    assert count_bytes(lambda: x @ w) == 3 * n
    assert count_bytes(lambda: x.t().unsqueeze(0)[:, :5]) == 0
    y = torch.zeros(100, 100)
    assert count_bytes(lambda: y.mul_(2)) == 2 * n
    col = torch.zeros(100, 1)
    assert count_bytes(lambda: x + col.expand(100, 100)) == 2 * n + 100 * 4


def test_count_bytes_counts_the_kernels_a_composite_op_runs():
    """In inference mode composite ops reach the counter whole; it counts their decomposition, the kernels
    eager runs: F.instance_norm of a channels_last tensor is a layout copy + the normalisation (4 passes),
    of a contiguous one the normalisation only (2); an allocation moves nothing."""
    from harness.core.flops import count_bytes

    x = torch.rand(2, 8, 16, 16)
    n = x.numel() * 4
    stats = 2 * 16 * 4  # mean and inverse std of the 16 (sample, channel) pairs

    def norm(t: torch.Tensor):
        return lambda: _in_inference(lambda: torch.nn.functional.instance_norm(t))

    assert count_bytes(norm(x)) == 2 * n + stats
    assert count_bytes(norm(x.contiguous(memory_format=torch.channels_last))) == 4 * n + stats
    assert count_bytes(lambda: torch.empty(100, 100)) == 0


def _in_inference(fn):
    with torch.inference_mode():
        return fn()


def test_verdict_column_passes_and_fails_against_the_target():
    """The pass column: within the target -> pass, over it -> FAIL (the gate can fail), no target -> '-'; the
    table's last line counts them and names the networks over."""
    from harness.floor import TARGET_RATIO

    ok = FloorRow("fast", 1, 2, 10e9, 0.14, 100.0, target=TARGET_RATIO)  # ratio 1.4
    slow = FloorRow("slow", 1, 2, 10e9, 0.2, 100.0, target=TARGET_RATIO)  # ratio 2.0
    dlib = FloorRow("dlib", 1, 1, 10e9, 1.0, 100.0)
    assert (ok.verdict, slow.verdict, dlib.verdict) == ("pass", "FAIL", "-")
    text = format_table([ok, slow, dlib])
    assert text.splitlines()[-1] == "1/2 networks within their target; over: slow"
    assert [ln.split()[9:11] for ln in text.splitlines()[2:5]] == [["<=1.5", "pass"], ["<=1.5", "FAIL"], ["-", "-"]]


def test_dlib_mirror_matches_the_model_file():
    """The torch mirror of dlib's ResNet gives 128-d out of a 150x150 chip, and its parameters (conv weights and
    biases, affine gamma/beta, fc) x 4 bytes come within 0.1% of the file dlib reads (the rest: layer headers)."""
    from harness.core import weights
    from harness.floor_networks import DlibResNetMirror

    net = DlibResNetMirror().eval()
    assert net(torch.zeros(1, 3, 150, 150)).shape == (1, 128)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 29
    if not weights.available("dlib_face_recognition"):
        pytest.skip("dlib_face_recognition_resnet_model_v1.dat not installed")
    size = weights.require("dlib_face_recognition").stat().st_size
    stored = 4 * net.dlib_parameter_count()
    assert stored <= size < stored * 1.001, (stored, size)


def test_bench_floor_rejects_an_unknown_network(capsys):
    from harness.cli import main

    assert main(["bench", "floor", "--networks", "inception,resnet"]) == 2
    assert "unknown network(s) ['resnet']" in capsys.readouterr().err


def test_bench_floor_strict_exits_1_when_a_network_is_over_target(monkeypatch, capsys):
    """--strict turns a FAIL row into exit 1 (the table is still printed); without it the table exits 0."""
    import harness.floor as floor
    from harness.cli import main

    rows = [FloorRow("slow", 1, 2, 10e9, 0.2, 100.0, target=floor.TARGET_RATIO)]
    monkeypatch.setattr(floor, "floor_table", lambda *a, **k: (rows, floor.format_table(rows)))
    assert main(["bench", "floor", "--networks", "fan", "--strict"]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["bench", "floor", "--networks", "fan"]) == 0
    rows[0] = FloorRow("fast", 1, 2, 10e9, 0.14, 100.0, target=floor.TARGET_RATIO)
    assert main(["bench", "floor", "--networks", "fan", "--strict"]) == 0
