"""realtalk/cpu_kernels: the renderer's fused fp32 channels_last CPU kernels (norm + modulation + leaky ReLU,
the low-resolution skip merge), held to the float64 evaluation of the composite maths within
the fp32 rounding of their reductions, built with the machine's C compiler (a failing build is reported and the
torch path stays), and visible to dispatch modes (the floor table's byte counter)."""
from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from realtalk import cpu_kernels

ROOT = Path(__file__).resolve().parents[1]
EPS = torch.finfo(torch.float32).eps


@pytest.fixture(autouse=True)
def built():
    if not cpu_kernels.available():  # gcc is part of this project's machines: a build failure is a failure
        pytest.fail(f"the C kernels did not build: {cpu_kernels.status()}")
    grad = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(grad)


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _norm_tol(n: int, scale: float) -> float:
    """Two reductions over n values and a few elementwise ops in fp32: eps * sqrt(n) (random-walk accumulation,
    as tests/_numerics.rounding_bound) times the output scale."""
    return EPS * math.sqrt(n) * max(1.0, scale)


@pytest.mark.parametrize("shape,groups", [((2, 16, 64, 64), 16), ((3, 24, 16, 16), 4), ((1, 128, 8, 8), 128),
                                          ((2, 48, 32, 32), 4)])
@pytest.mark.parametrize("mean,std", [(5.0, 3.0), (1e3, 0.1)])
def test_norm_leaky_relu_is_group_or_instance_norm_then_leaky_relu(shape, groups, mean, std):
    """groups = C is AdaIN's instance norm with per-sample (1 + scale, bias) rows of a wider style tensor (a
    strided view, as FIAModule hands them); groups < C is GroupNorm with per-channel affine parameters. A mean
    far above the spread (1e3 vs 0.1) is where fp32 E[x^2] - E[x]^2 cancels: the kernel's shifted double sums
    must not."""
    torch.set_grad_enabled(False)  # inference (the fixture restores it)
    g = torch.Generator().manual_seed(0)
    b, c, h, w = shape
    x = _cl(torch.randn(shape, generator=g) * std + mean)
    if groups == c:
        style = torch.randn(b, 4 * c, generator=g) * 0.3
        s, bias = style[:, :c], style[:, c:2 * c]
        got = cpu_kernels.norm_leaky_relu(x, c, s, bias, gamma_add=1.0, slope=0.2)
        want = F.leaky_relu(F.instance_norm(x.double()) * (1 + s.double())[:, :, None, None]
                            + bias.double()[:, :, None, None], 0.2)
    else:
        gn = torch.nn.GroupNorm(groups, c)
        with torch.no_grad():
            gn.weight.normal_(generator=g)
            gn.bias.normal_(generator=g)
        with torch.no_grad():
            got = cpu_kernels.norm_leaky_relu(x, groups, gn.weight, gn.bias, eps=gn.eps, slope=0.2)
        want = F.leaky_relu(copy.deepcopy(gn).double()(x.double()), 0.2).detach()
    assert got is not None and got.shape == x.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    n = h * w * (c // groups)
    err = (got.double() - want).abs().max().item()
    assert err < _norm_tol(n, want.abs().max().item()), err
    # the output is not trivially close: leaky ReLU's negative side is there and the values are O(1)
    assert (got < 0).any() and got.abs().max() > 0.5


def test_norm_without_activation_and_without_affine():
    torch.set_grad_enabled(False)
    g = torch.Generator().manual_seed(1)
    x = _cl(torch.randn(2, 8, 16, 16, generator=g) + 2)
    got = cpu_kernels.norm_leaky_relu(x, 2, None, None, slope=None)
    want = F.group_norm(x.double(), 2)
    assert (got.double() - want).abs().max().item() < _norm_tol(8 * 16 * 16 // 2, want.abs().max().item())
    assert got.min() < -1  # no activation applied


def test_kernels_decline_what_they_do_not_cover():
    """NCHW memory, fp64, autograd: None, so the caller runs its torch path."""
    x = torch.randn(2, 8, 8, 8)
    s = torch.zeros(2, 8)
    assert cpu_kernels.norm_leaky_relu(x, 8, s, s, gamma_add=1.0) is None  # NCHW
    assert cpu_kernels.norm_leaky_relu(_cl(x).double(), 8, s.double(), s.double()) is None
    with torch.enable_grad():
        assert cpu_kernels.norm_leaky_relu(_cl(x).requires_grad_(True), 8, s, s) is None
    assert cpu_kernels.upsample2x_merge(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 8, 8),
                                        torch.randn(4, 4, 1, 1), None) is None  # NCHW
    assert cpu_kernels.upsample2x_merge(_cl(torch.randn(1, 2, 4, 4)), _cl(torch.randn(1, 3, 8, 7)),
                                        torch.randn(4, 5, 1, 1), None) is None  # skip not at 2x


@pytest.mark.parametrize("c,cs,h,cout", [(24, 16, 32, 16), (96, 48, 8, 48), (5, 3, 7, 4)])
def test_upsample2x_merge_is_the_1x1_conv_of_the_concatenation(c, cs, h, cout):
    """conv1x1(cat([up2x(x), skip])) = up2x(W_x x) + W_skip skip + bias: equal to the float64 conv of the
    concatenation within fp32 dot-product rounding (eps * sqrt(fan-in) times the output scale)."""
    g = torch.Generator().manual_seed(2)
    x, skip = _cl(torch.randn(2, c, h, h, generator=g)), _cl(torch.randn(2, cs, 2 * h, 2 * h, generator=g))
    conv = torch.nn.Conv2d(c + cs, cout, 1)
    with torch.no_grad():
        got = cpu_kernels.upsample2x_merge(x, skip, conv.weight, conv.bias)
    want = F.conv2d(torch.cat([F.interpolate(x.double(), scale_factor=2.0, mode="nearest"), skip.double()], 1),
                    conv.weight.double(), conv.bias.double()).detach()
    assert got is not None and got.shape == (2, cout, 2 * h, 2 * h)
    assert got.is_contiguous(memory_format=torch.channels_last)
    tol = EPS * math.sqrt(c + cs) * max(1.0, want.abs().max().item()) * 2
    assert (got.double() - want).abs().max().item() < tol


def test_ops_are_seen_by_the_byte_counter():
    """The kernels run as torch ops, so harness.core.flops.count_bytes counts them: the norm reads x twice
    (statistics, apply) and writes y once, plus its [4, B, C] coefficients and parameters."""
    from harness.core.flops import count_bytes

    x = _cl(torch.randn(2, 16, 32, 32))
    s = torch.zeros(2, 16)
    with torch.no_grad():
        moved = count_bytes(lambda: cpu_kernels.norm_leaky_relu(x, 16, s, s, gamma_add=1.0))
    nx = x.numel() * 4
    small = 2 * (s.numel() * 4) + 2 * (4 * 2 * 16 * 4)
    assert moved == 3 * nx + small


def _run_isolated(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


def test_switch_off_and_a_failing_build_keep_the_torch_path(tmp_path):
    """REALTALK_CPU_KERNELS=0, or a compiler that fails: available() is False, status says why, and the
    renderer helpers fall back (the same result as the kernels, within rounding)."""
    code = ("import torch; from realtalk import cpu_kernels as k; from realtalk.renderer import adain_leaky_relu;"
            "x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last); s = torch.zeros(2, 8);"
            "torch.set_grad_enabled(False); y = adain_leaky_relu(x, s, s);"
            "print(k.available(), '|', k.status(), '|', float((y - torch.nn.functional.leaky_relu("
            "torch.nn.functional.instance_norm(x), 0.2)).abs().max()))")
    off = _run_isolated(code, REALTALK_CPU_KERNELS="0", REALTALK_BENCH_HOME=str(tmp_path / "a"))
    assert off.returncode == 0, off.stderr
    avail, why, err = [p.strip() for p in off.stdout.strip().split("|")]
    assert avail == "False" and why == "off (REALTALK_CPU_KERNELS=0)" and float(err) < 1e-5
    bad = _run_isolated(code, CC="/bin/false", REALTALK_BENCH_HOME=str(tmp_path / "b"))
    assert bad.returncode == 0, bad.stderr
    avail, why, err = [p.strip() for p in bad.stdout.strip().split("|")]
    assert avail == "False" and why.startswith("off (build failed: RuntimeError: /bin/false failed")
    assert float(err) < 1e-5
    assert not list((tmp_path / "b").rglob("*.so"))  # no half-written library left behind


def test_a_fresh_home_builds_the_library(tmp_path):
    """What a new machine does on first use: compile into <home>/kernels/<key>/, load, and give the numbers the
    already-built library gives (the same source and flags)."""
    code = ("import torch; from realtalk import cpu_kernels as k; torch.set_grad_enabled(False);"
            "x = torch.arange(2 * 8 * 16 * 16, dtype=torch.float32).reshape(2, 8, 16, 16).sin()"
            ".contiguous(memory_format=torch.channels_last);"
            "y = k.norm_leaky_relu(x, 4, None, None); print(k.status(), '|', repr(float(y.double().sum())))")
    res = _run_isolated(code, REALTALK_BENCH_HOME=str(tmp_path))
    assert res.returncode == 0, res.stderr
    why, total = [p.strip() for p in res.stdout.strip().split("|")]
    libs = list((tmp_path / "kernels").glob("*/librealtalk_cpu.so"))
    assert len(libs) == 1 and why == f"on ({libs[0]})"
    assert libs[0].stat().st_mode & 0o777 == 0o755  # loadable by every user of a shared home
    torch.set_grad_enabled(False)
    x = _cl(torch.arange(2 * 8 * 16 * 16, dtype=torch.float32).reshape(2, 8, 16, 16).sin())
    assert float(total) == float(cpu_kernels.norm_leaky_relu(x, 4, None, None).double().sum())


def test_the_library_is_keyed_by_source_compiler_and_cpu(monkeypatch):
    """Another CPU (or source, or compiler) gets its own build: -march=native code is not portable."""
    cc = cpu_kernels._compiler()
    key = cpu_kernels._build_key(cc)
    assert key == cpu_kernels._build_key(cc)
    monkeypatch.setattr(cpu_kernels, "_cpu_signature", lambda: "model name : another cpu\nflags : sse2")
    assert cpu_kernels._build_key(cc) != key
    assert cpu_kernels.status().startswith("on (") and key in cpu_kernels.status()
