"""Errors that name the file and the problem, so a failed clip is recorded, not a traceback."""
from __future__ import annotations

from pathlib import Path


class BenchError(Exception):
    """Base error: carries the offending path (if any) and a one-line problem statement."""

    def __init__(self, problem: str, path: str | Path | None = None, hint: str | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.hint = hint
        msg = f"{self.path}: {problem}" if self.path else problem
        if hint:
            msg += f"\n  hint: {hint}"
        super().__init__(msg)


class MediaError(BenchError):
    """A video or audio file cannot be decoded or is unusable (truncated, no stream, empty, ...)."""


class NoFaceError(BenchError):
    """No face was found in a clip or picture; names the frames."""


class WeightsMissingError(BenchError):
    """A model file is not at its documented location (or fails its checksum)."""


class ManifestError(BenchError):
    """A split manifest is malformed or its files do not match."""


class MetricUnavailable(BenchError):
    """A metric cannot run on this machine (missing weights/backend); the run goes on without it."""
