"""`--device cpu|cuda|cuda:N|auto` for `run` and `metrics`: checked once, then what runs where, stated.

A device that is not there is a usage error (exit 2, one line), never a crash inside the first metric. On a GPU
the metric networks run in full fp32 (TF32 off: cuDNN enables it for convolutions by default, which rounds
Inception / LPIPS / SyncNet inputs to 10 mantissa bits); so GPU features agree with CPU ones to fp32 rounding.
The device type is already part of the ground-truth feature cache keys (metrics/fid.py, csim.py,
syncnet_lse.py), so features computed on one device are never served to the other.
"""
from __future__ import annotations

import re
from typing import Any

from harness.core.errors import BenchError

EXIT_DEVICE = 2
DEVICE_RE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")
# what never runs on a GPU here, whatever --device says (the summary's devices.cpu_only)
CPU_ONLY = ("dlib HOG face detection + tracking of the ground truth (harness.core.faces), dlib 68-point landmarks, "
            "dlib face recognition (CSIM backend dlib) and the dlib alignment in front of ArcFace, PSNR (numpy), "
            "SSIM backend skimage, video decode / encode")


class DeviceError(BenchError):
    """--device names a device this machine does not have (exit 2)."""


def cuda_count() -> int:
    """Visible CUDA devices (0 without torch or a driver); one place, so tests can simulate a GPU."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(device: str | None) -> str:
    """The device metrics run on: 'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' / 'cuda:N' only
    when that GPU is visible (else DeviceError, one line)."""
    device = (device or "cpu").strip()
    if not DEVICE_RE.match(device):
        raise DeviceError(f"--device {device!r}: expected cpu, cuda, cuda:N or auto")
    n = cuda_count() if device != "cpu" else 0
    if device == "auto":
        return "cuda" if n else "cpu"
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if n == 0:
            raise DeviceError(f"--device {device}: no CUDA device is visible here (torch.cuda.is_available() is "
                              "False); use --device cpu or auto")
        if index >= n:
            raise DeviceError(f"--device {device}: only {n} CUDA device(s) visible (cuda:0..cuda:{n - 1})")
    return device


def full_precision(device: str) -> None:
    """TF32 off for the metric networks on a GPU (see the module docstring); nothing on a CPU."""
    if not device.startswith("cuda"):
        return
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def _onnx_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def metric_device(name: str, config: dict[str, Any], device: str) -> str:
    """Where a metric's network runs for this --device: the device, or 'cpu' with the reason."""
    if not device.startswith("cuda"):
        return "cpu"
    backend = config.get("backend")
    if name == "psnr":
        return "cpu (numpy)"
    if name == "ssim" and backend != "torch":
        return f"cpu (backend {backend})"
    if name in ("lmd", "av_sync", "mouth_r") and backend != "fan":
        return f"cpu (landmark backend {backend}: dlib)"
    if name == "csim":
        if backend != "arcface":
            return f"cpu (backend {backend}: dlib)"
        return f"{device} (ArcFace, onnxruntime CUDA provider; dlib alignment on cpu)" if _onnx_cuda() else \
            "cpu (onnxruntime has no CUDAExecutionProvider here)"
    if name in ("lmd", "av_sync", "mouth_r"):
        return f"{device} (FAN; dlib HOG crop check on cpu)"
    return device


def devices_record(requested: str, device: str, metric_config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """summary.json's "devices": the flag as given, the device it resolved to, per metric where its network ran,
    and what always stays on the CPU."""
    return {"requested": requested, "device": device,
            "metrics": {n: metric_device(n, c, device) for n, c in sorted(metric_config.items())},
            "cpu_only": CPU_ONLY}
