"""Atomic file writes: write a temp file in the same folder, then os.replace(), so readers and
concurrent runs never see half-written files and a kill -9 never leaves a corrupt record."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from harness.core.faults import fault_point


TMP_PREFIX = ".tmp-"  # every temp file of an atomic write: readers skip it, a run taking its lock sweeps it


def atomic_write_with(path: str | os.PathLike, write: Callable[[BinaryIO], None], fault: str | None = None) -> Path:
    """write(f) into a temp file beside `path`, fsync, then os.replace onto it. `fault` names the crash point
    (harness.core.faults) between the fsync and the rename: a killed writer leaves a whole temp file there
    and no visible change."""
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=TMP_PREFIX, suffix=dst.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if fault:
            fault_point(fault)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fault: str | None = None) -> Path:
    return atomic_write_with(path, lambda f: f.write(data), fault)


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> Path:
    return atomic_write_bytes(path, json.dumps(value, indent=indent, default=str, allow_nan=True).encode())


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())
