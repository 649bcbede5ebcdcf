"""Fused fp32 channels_last CPU kernels for the renderer's inference path (issue 16 item 4), as torch ops.

Why: at 256 px the small renderer is memory-bound on a CPU; eager torch spends 5-6 passes over an activation
on a norm + modulation + leaky ReLU and writes a nearest 2x upsample + concat only for the FIA's 1x1 merge to
read it. `cpu_kernels.c` does the norm as one statistics pass (double accumulation) and one apply pass, and
`upsample2x_merge` never writes the concatenation. Registered as torch ops (`torch.ops.realtalk.*`, CPU only) so that dispatch modes see them: the
floor table's byte counter (harness.core.flops.count_bytes) counts each pass's reads and writes.

Built at first use with the system C compiler (gcc -O3 -march=native -fopenmp) into
`<home>/kernels/<key>/` (key: sha256 of the source, the compiler's version, the flags and this CPU's model and
flags, so a different machine builds its own), loaded with ctypes. Without a compiler, or with
REALTALK_CPU_KERNELS=0, `available()` is False and every caller keeps its torch path; `status()` says which
and why (the floor table prints it).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("cpu_kernels.c")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"]
ENV_SWITCH = "REALTALK_CPU_KERNELS"  # "0": never build or use them

_lock = threading.Lock()
_state: dict[str, object] = {}


def _cpu_signature() -> str:
    """Model name and ISA flags of this CPU (what -march=native compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def _build_key(cc: str) -> str:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), version.encode(), " ".join(FLAGS).encode(), _cpu_signature().encode(),
                 platform.machine().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _build(cc: str) -> Path:
    """The shared library for this source, compiler and CPU: built once (atomic rename: concurrent processes
    may race to build, each ends with a complete file)."""
    from harness.core.paths import home

    out_dir = home() / "kernels" / _build_key(cc)
    lib = out_dir / "librealtalk_cpu.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        res = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True,
                             timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
        os.chmod(tmp, 0o755)  # mkstemp's 0600 would keep a shared home's other users from loading it
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def _load() -> ctypes.CDLL | None:
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib = None
        if os.environ.get(ENV_SWITCH, "1") == "0":
            _state["why"] = f"off ({ENV_SWITCH}=0)"
        elif (cc := _compiler()) is None:
            _state["why"] = "off (no C compiler: gcc/cc not found)"
        else:
            try:
                path = _build(cc)
                lib = ctypes.CDLL(str(path))
                i64, f64, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
                lib.rt_norm_stats_nhwc.argtypes = [ptr, i64, i64, i64, i64, ptr, i64, f64, ptr, i64, f64, ptr]
                lib.rt_affine_act_nhwc.argtypes = [ptr, ptr, i64, i64, i64, ptr, f64, ctypes.c_int]
                lib.rt_add_upsampled2x_nhwc.argtypes = [ptr, ptr, i64, i64, i64, i64]
                for fn in (lib.rt_norm_stats_nhwc, lib.rt_affine_act_nhwc, lib.rt_add_upsampled2x_nhwc):
                    fn.restype = ctypes.c_int
                _state["why"] = f"on ({path})"
            except Exception as exc:  # noqa: BLE001 - any build/load failure: the torch path stays
                lib = None
                _state["why"] = f"off (build failed: {type(exc).__name__}: {exc})"
        _state["lib"] = lib
        return lib


def available() -> bool:
    """True when the kernels are built and loaded (builds them on the first call)."""
    return _load() is not None


def status() -> str:
    """'on (<library>)' or 'off (<why>)'."""
    _load()
    return str(_state.get("why", "off"))


def _check(rc: int, name: str) -> None:
    if rc != 0:
        raise RuntimeError(f"realtalk cpu kernel {name} returned {rc}")


def _nhwc_ok(x: Tensor) -> bool:
    """fp32 CPU 4-D tensor whose memory is dense NHWC."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last))


# ---------------------------------------------------------------- torch ops (visible to dispatch modes)
_lib = torch.library.Library("realtalk", "DEF")
_lib.define("norm_stats_nhwc(Tensor x, int groups, Tensor? gamma, Tensor? beta, float gamma_add, float eps) -> Tensor")
_lib.define("affine_act_nhwc(Tensor x, Tensor coef, float slope, bool act) -> Tensor")
_lib.define("affine_act_nhwc_(Tensor(a!) x, Tensor coef, float slope, bool act) -> Tensor(a!)")
_lib.define("add_upsampled2x_nhwc_(Tensor(a!) y, Tensor low) -> Tensor(a!)")


def _row_stride(t: Tensor | None, b: int, c: int) -> tuple[int, int]:
    """(data pointer, stride between samples) of per-channel [C] or per-sample [B, C] parameters."""
    if t is None:
        return 0, 0
    if t.dim() == 1 and t.shape[0] == c and t.stride(0) == 1:
        return t.data_ptr(), 0
    if t.dim() == 2 and t.shape == (b, c) and t.stride(1) == 1:
        return t.data_ptr(), t.stride(0)
    raise ValueError(f"parameters of shape {tuple(t.shape)} / strides {t.stride()} for [{b}, {c}]")


def _norm_stats_cpu(x: Tensor, groups: int, gamma: Tensor | None, beta: Tensor | None, gamma_add: float,
                    eps: float) -> Tensor:
    b, c, h, w = x.shape
    gp, gs = _row_stride(gamma, b, c)
    bp, bs = _row_stride(beta, b, c)
    coef = torch.empty(4, b, c, dtype=torch.float32)
    _check(_load().rt_norm_stats_nhwc(x.data_ptr(), b, h * w, c, groups, gp, gs, gamma_add, bp, bs, eps,
                                      coef.data_ptr()), "norm_stats_nhwc")
    return coef


def _affine_act_cpu(x: Tensor, coef: Tensor, slope: float, act: bool) -> Tensor:
    b, c, h, w = x.shape
    y = torch.empty_like(x, memory_format=torch.channels_last)
    _check(_load().rt_affine_act_nhwc(x.data_ptr(), y.data_ptr(), b, h * w, c, coef.data_ptr(), slope,
                                      int(act)), "affine_act_nhwc")
    return y


def _affine_act_cpu_(x: Tensor, coef: Tensor, slope: float, act: bool) -> Tensor:
    b, c, h, w = x.shape
    _check(_load().rt_affine_act_nhwc(x.data_ptr(), x.data_ptr(), b, h * w, c, coef.data_ptr(), slope,
                                      int(act)), "affine_act_nhwc_")
    return x


def _add_upsampled2x_cpu(y: Tensor, low: Tensor) -> Tensor:
    b, c, h, w = low.shape
    _check(_load().rt_add_upsampled2x_nhwc(y.data_ptr(), low.data_ptr(), b, h, w, c), "add_upsampled2x_nhwc_")
    return y


_lib.impl("norm_stats_nhwc", _norm_stats_cpu, "CPU")
_lib.impl("add_upsampled2x_nhwc_", _add_upsampled2x_cpu, "CPU")
_lib.impl("affine_act_nhwc", _affine_act_cpu, "CPU")
_lib.impl("affine_act_nhwc_", _affine_act_cpu_, "CPU")


# ---------------------------------------------------------------- what the renderer calls
def norm_leaky_relu(x: Tensor, groups: int, gamma: Tensor | None, beta: Tensor | None, *, gamma_add: float = 0.0,
                    eps: float = 1e-5, slope: float | None = 0.2, inplace: bool = False) -> Tensor | None:
    """leaky_relu(((x - mean_g) / sqrt(var_g + eps)) * (gamma + gamma_add) + beta, slope) with mean/var per
    sample and channel group (groups = C: instance norm; gamma/beta [C] or [B, C] rows); slope None: no
    activation. inplace: written into x (for an x nothing else reads: the write then lands on cache lines the
    statistics pass just read instead of fresh memory). None when the kernels cannot take x (not fp32 NHWC on
    CPU, autograd on, kernels off): the caller runs its torch path."""
    if torch.is_grad_enabled() or not _nhwc_ok(x) or x.shape[1] % groups or not available():
        return None
    for t in (gamma, beta):
        if t is not None and (t.dtype != torch.float32 or t.device.type != "cpu" or t.stride(-1) != 1):
            return None
    coef = torch.ops.realtalk.norm_stats_nhwc(x, groups, gamma, beta, gamma_add, eps)
    apply = torch.ops.realtalk.affine_act_nhwc_ if inplace else torch.ops.realtalk.affine_act_nhwc
    return apply(x, coef, 0.0 if slope is None else slope, slope is not None)


def upsample2x_merge(x: Tensor, skip: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor | None:
    """conv1x1(cat([nearest 2x upsample of x, skip], 1), weight, bias) as up(W_x x) + W_skip skip + bias: a 1x1
    conv is per pixel, so it commutes with the nearest upsample; the x part runs at the low resolution and
    the concatenation is never written (channels_last in, channels_last out; the same sum in another order:
    fp32 rounding apart, equal). None when not applicable."""
    if torch.is_grad_enabled() or not (_nhwc_ok(x) and _nhwc_ok(skip)) or not available():
        return None
    b, c, h, w = x.shape
    cs = skip.shape[1]
    if skip.shape[0] != b or skip.shape[2:] != (2 * h, 2 * w) or weight.shape[1:] != (c + cs, 1, 1):
        return None
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        return None
    w2 = weight.reshape(weight.shape[0], c + cs)
    cout = w2.shape[0]
    low = torch.mm(x.permute(0, 2, 3, 1).reshape(-1, c), w2[:, :c].t())  # [B*h*w, cout]
    flat = skip.permute(0, 2, 3, 1).reshape(-1, cs)
    y = torch.addmm(bias, flat, w2[:, c:].t()) if bias is not None else torch.mm(flat, w2[:, c:].t())
    y4 = y.view(b, 2 * h, 2 * w, cout).permute(0, 3, 1, 2)  # NCHW view of NHWC memory
    return torch.ops.realtalk.add_upsampled2x_nhwc_(y4, low.view(b, h, w, cout).permute(0, 3, 1, 2))
