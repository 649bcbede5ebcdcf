"""The metric API: one registry; each metric declares its inputs, direction and pinned protocol.

Shaped like torchmetrics (a metric object with state and a compute step) but per clip: every value is
kept per frame and per clip, and the split value is the mean over clips (per-clip values stay for
confidence intervals). Split-level metrics (FID) keep per-clip *states* (features) and aggregate them.
A per-clip metric may also take a clip's generated crops in chunks (`chunked = True`: start / update /
finish, torchmetrics' update/compute per clip), so the evaluator never holds a long clip's generated crops
whole (harness/evaluate.py); finish() gives exactly compute_clip()'s result (compute_chunked tests it).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

# full_frames: ClipInput.generated_full + ClipInput.face_boxes (metrics that cut their own crops, e.g. SyncNet)
NEEDS = frozenset({"generated", "ground_truth", "audio", "identity", "full_frames"})

# ClipResult.extra keys every per-frame metric fills, so coverage is shown wherever the value is:
# frames_used = frames that entered the value, frames_total = frames of the clip (the rest were excluded).
FRAMES_USED, FRAMES_TOTAL = "frames_used", "frames_total"


@dataclass(frozen=True)
class Protocol:
    """How a value was made; two values are comparable only when their protocols are equal."""

    metric: str
    backend: str
    weights_sha256: str | None
    crop: str
    resolution: int
    fps: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ClipInput:
    """One clip's aligned material, all at `fps` with frame i covering audio samples [sr/fps*i, sr/fps*(i+1)).

    generated / ground_truth: uint8 RGB face crops [T, 256, 256, 3] from the same crop track (the ground
    truth's), so they are pixel-aligned. identity: the identity reference crop [256, 256, 3] (by default
    the first ground-truth frame). audio: float32 mono at `sample_rate`, the audio that drove generation.
    generated_full: the generated frames at full source resolution [T, H, W, 3] uint8; face_boxes: the
    ground truth's face-track boxes [T, 4] (x1, y1, x2, y2 in full-frame px, as tracked, before any crop
    scaling); both set by the harness for metrics that need "full_frames".
    """

    clip_id: str
    generated: np.ndarray
    ground_truth: np.ndarray | None = None
    audio: np.ndarray | None = None
    identity: np.ndarray | None = None
    fps: float = 25.0
    sample_rate: int = 16000
    generated_full: np.ndarray | None = None
    face_boxes: np.ndarray | None = None


@dataclass
class ClipResult:
    """Values of one metric on one clip: named scalars, optional per-frame arrays, and bookkeeping."""

    values: dict[str, float]
    per_frame: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. frames excluded, sync offset


class Metric(ABC):
    """A registered metric. Subclasses set the class attributes and implement compute_clip (or the
    state/aggregate pair for split-level metrics)."""

    name: ClassVar[str]  # registry key, e.g. "lmd"
    outputs: ClassVar[tuple[str, ...]]  # value names, e.g. ("LMD", "M-LMD", "F-LMD")
    # per output; None = informational (e.g. an AV offset in frames): shown, compared, never ranked
    higher_is_better: ClassVar[dict[str, bool | None]]
    needs: ClassVar[frozenset[str]]  # subset of NEEDS
    split_level: ClassVar[bool] = False  # True: values come from aggregate() over all clips' states

    def __init__(self, batch_size: int = 32, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device

    @abstractmethod
    def protocol(self) -> Protocol:
        """The pinned protocol of this configured instance (backend, weights sha256, crop, fps, settings)."""

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (besides batch_size / device) that rebuild this exact instance,
        with every 'auto' choice resolved: a run resolves them once at start, records them, and builds
        every worker's metric from them, so a weights file appearing mid-run cannot change the protocol."""
        return {}

    def availability(self) -> tuple[bool, str]:
        """(True, "") when it can run here, else (False, reason naming the missing file/backend)."""
        return True, ""

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        """Per-clip values. Split-level metrics may leave this unimplemented."""
        raise NotImplementedError(f"{self.name} is split-level: use clip_state() + aggregate()")

    # split-level metrics ---------------------------------------------------------------------------
    def clip_state(self, clip: ClipInput) -> dict[str, np.ndarray]:
        """Per-clip sufficient statistics (e.g. Inception features), cacheable and order-independent."""
        raise NotImplementedError

    def aggregate(self, states: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Split value from all clips' states."""
        raise NotImplementedError

    # per-clip metrics fed in chunks (optional) -------------------------------------------------------
    chunked: ClassVar[bool] = False  # True: start / update / finish below are implemented

    def start(self, clip: ClipInput) -> Any:
        """The state of one clip whose generated crops come in chunks: `clip` has everything but them
        (clip.generated is an empty [0,H,W,3] array; ground_truth, audio, identity are whole)."""
        raise NotImplementedError(f"{self.name} takes a clip's generated crops whole (compute_clip)")

    def update(self, state: Any, generated: np.ndarray, ground_truth: np.ndarray | None) -> None:
        """The next chunk of generated crops [t,H,W,3], in clip order, with the ground truth's crops of the same
        frames (None when the metric does not need them)."""
        raise NotImplementedError

    def finish(self, state: Any) -> ClipResult:
        """The clip's result once every chunk went through update(): compute_clip()'s result on the whole clip.
        Per-frame metrics keep the per-frame values (a few floats per frame) and reduce them as compute_clip
        does, so the two paths agree bit for bit."""
        raise NotImplementedError


@dataclass
class ChunkState:
    """A chunked metric's state for one clip: the clip (generated crops empty), the per-chunk outputs in order
    (per-frame values, landmarks: small next to the crops) and the frames seen."""

    clip: ClipInput
    parts: list[Any] = field(default_factory=list)
    seen: int = 0
    memo: dict[str, Any] = field(default_factory=dict)  # what start() prepared (e.g. ground-truth landmarks)

    def add(self, part: Any, frames: int) -> None:
        self.parts.append(part)
        self.seen += int(frames)

    def joined(self) -> np.ndarray:
        """The per-chunk arrays concatenated along frames (what the whole clip would have given)."""
        return np.concatenate(self.parts) if self.parts else np.zeros(0)

    def check_complete(self) -> None:
        """Every ground-truth frame was fed (a short feed would score a prefix of the clip)."""
        from harness.core.errors import MediaError

        want = None if self.clip.ground_truth is None else len(self.clip.ground_truth)
        if self.seen == 0 or (want is not None and self.seen != want):
            raise MediaError(f"clip {self.clip.clip_id}: {self.seen} generated frames fed in chunks, "
                             f"expected {want} (the ground truth's)")


def compute_chunked(metric: Metric, clip: ClipInput, size: int) -> ClipResult:
    """compute_clip(clip) through start / update / finish, clip.generated fed `size` frames at a time (what the
    evaluator does for a clip decoded in chunks; tests compare the two)."""
    gen = clip.generated
    empty = np.empty((0, *np.shape(gen)[1:]), np.uint8)
    from dataclasses import replace

    state = metric.start(replace(clip, generated=empty))
    for i in range(0, len(gen), max(1, int(size))):
        gt = None if clip.ground_truth is None else clip.ground_truth[i:i + size]
        metric.update(state, gen[i:i + size], gt)
    return metric.finish(state)


REGISTRY: dict[str, Callable[..., Metric]] = {}
ORIGINS: dict[str, str] = {}  # name -> "built-in" | "--plugin X" | "entry point N (package version)"
ENTRY_POINT_GROUP = "realtalk_bench.metrics"  # installed packages register metrics here (harness/plugins.py)
_entry_points_loaded = False


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: adds a metric to the one registry under cls.name."""
    from harness.core.plugin_sources import origin_of

    if cls.name in REGISTRY:
        raise ValueError(f"metric {cls.name!r} registered twice ({ORIGINS.get(cls.name)} and {origin_of(cls)})")
    unknown = set(cls.needs) - NEEDS
    if unknown:
        raise ValueError(f"metric {cls.name!r} needs unknown inputs {sorted(unknown)}; known: {sorted(NEEDS)}")
    missing = set(cls.outputs) - set(cls.higher_is_better)
    if missing:
        raise ValueError(f"metric {cls.name!r}: higher_is_better lacks {sorted(missing)} (True, False or None each)")
    REGISTRY[cls.name] = cls
    ORIGINS[cls.name] = origin_of(cls)
    return cls


def get_metric(name: str, **kwargs: Any) -> Metric:
    load_all()
    if name not in REGISTRY:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name](**kwargs)


def load_all() -> dict[str, Callable[..., Metric]]:
    """Import every metric module so its @register runs (modules list kept in metrics/__init__.py), then the
    installed plugins' entry points (group realtalk_bench.metrics)."""
    import importlib

    from metrics import METRIC_MODULES

    global _entry_points_loaded
    for mod in METRIC_MODULES:
        importlib.import_module(mod)
    if not _entry_points_loaded:  # installed plugins, once per process
        from harness.core.plugin_sources import load_entry_points

        load_entry_points(ENTRY_POINT_GROUP, REGISTRY, register, Metric)
        _entry_points_loaded = True  # after success: a broken plugin fails every call, not only the first
    return REGISTRY
