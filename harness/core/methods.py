"""The method API and its one registry: a method turns (source clip, driving audio, setting) into frames.

Data flows one way: splits -> methods -> metrics -> reports. A method never sees metrics.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np

Setting = Literal["reconstruction", "cross_audio"]
SETTINGS: tuple[str, ...] = ("reconstruction", "cross_audio")


@dataclass
class MethodInput:
    """What a method gets for one clip and setting.

    source_frames: uint8 RGB [T, H, W, 3] of the source clip at `fps` (full frames, source resolution).
    audio: float32 mono at `sample_rate`, the driving speech (the clip's own in reconstruction, another
    clip's in cross_audio). n_frames: how many frames to return = round(len(audio) / sample_rate * fps),
    so that frame i covers audio samples [i*sr/fps, (i+1)*sr/fps).
    """

    clip_id: str
    setting: str
    source_video: Path
    source_frames: np.ndarray
    audio: np.ndarray
    n_frames: int
    fps: float = 25.0
    sample_rate: int = 16000
    audio_path: Path | None = None
    workdir: Path | None = None  # scratch folder for subprocess methods
    source_timestamps: np.ndarray | None = None  # pts (s) of each source frame in source_video (cache keys)


class Method(ABC):
    """A registered talking-face method."""

    name: ClassVar[str]
    kind: ClassVar[str] = "in-process"  # "in-process" | "subprocess" | "reference" | "precomputed"
    # Per-clip facts about the last generate() (length/resolution adjustments, alignment residuals...):
    # the evaluator stores them as the record's "method_notes". Assign a new dict per clip, never mutate this one.
    last_notes: dict[str, Any] = {}

    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies the exact model (checkpoint sha256 + config) for caching generated videos."""

    def availability(self) -> tuple[bool, str]:
        """(True, "") when it can run here, else (False, reason naming the missing file)."""
        return True, ""

    @abstractmethod
    def generate(self, inp: MethodInput) -> np.ndarray:
        """Frames uint8 RGB [inp.n_frames, H, W, 3] at the source resolution, aligned to inp.audio."""

    def latency_stages(
        self, *, device: str = "cpu", batch: int = 1, dtype: str = "fp32", compile: bool = False,
        cuda_graphs: bool = False,
    ) -> list[Any]:
        """Timed regions (harness.core.latency.LatencyStage) for `realtalk-bench latency`. In-process methods
        override this; subprocess methods are timed by wall time per frame of their command in a run."""
        raise NotImplementedError(f"method {self.name!r} has no in-process latency stages")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "fingerprint": self.fingerprint()}


REGISTRY: dict[str, Callable[..., Method]] = {}
ORIGINS: dict[str, str] = {}  # name -> "built-in" | "--plugin X" | "entry point N (package version)"
ENTRY_POINT_GROUP = "realtalk_bench.methods"  # installed packages register methods here (harness/plugins.py)
_entry_points_loaded = False

# Modules whose import registers a method. Add one line per method module.
METHOD_MODULES: list[str] = [
    "realtalk.method",
    "baselines.reference",
    "baselines.wav2lip.method",
    "baselines.subprocess_adapter",
    "baselines.precomputed",
]


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: adds a method to the one registry under cls.name."""
    from harness.core.plugin_sources import origin_of

    if cls.name in REGISTRY:
        raise ValueError(f"method {cls.name!r} registered twice ({ORIGINS.get(cls.name)} and {origin_of(cls)})")
    REGISTRY[cls.name] = cls
    ORIGINS[cls.name] = origin_of(cls)
    return cls


def load_all() -> dict[str, Callable[..., Method]]:
    """Import the built-in method modules, then (once per process) the installed plugins' entry points."""
    import importlib

    global _entry_points_loaded
    for mod in METHOD_MODULES:
        importlib.import_module(mod)
    if not _entry_points_loaded:
        from harness.core.plugin_sources import load_entry_points

        load_entry_points(ENTRY_POINT_GROUP, REGISTRY, register, Method)
        _entry_points_loaded = True  # after success: a broken plugin fails every call, not only the first
    return REGISTRY


def get_method(name: str, /, **kwargs: Any) -> Method:  # positional-only: a method may take name=
    load_all()
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name](**kwargs)
