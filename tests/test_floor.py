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
    line = format_table([row]).splitlines()[-1]
    assert line.split()[:2] == ["net", "4"]
    assert "2.50" in line.split() and "250.00" in line.split() and "100.00" in line.split()


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
