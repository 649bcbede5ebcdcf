"""Small stand-in metrics and methods for the runner tests (no test functions here).

Cheap, exact arithmetic so the runner's plumbing (settings, split-level states, failures, resume, Ray) is
tested on real clips without waiting for heavy metric networks. Registered only where asked: by the
`standins` fixture, or when imported as a `--plugin tests.test_runner_support` in a subprocess / Ray worker.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from harness.methods import REGISTRY as METHODS, Method, MethodInput
from metrics.base import REGISTRY as METRICS, ClipInput, ClipResult, Metric, Protocol


class AbsDiff(Metric):
    """Mean absolute pixel difference generated vs ground truth (0 for identical crops)."""

    name = "t_absdiff"
    outputs = ("ABSDIFF",)
    higher_is_better = {"ABSDIFF": False}
    needs = frozenset({"generated", "ground_truth"})

    def protocol(self) -> Protocol:
        return Protocol("t_absdiff", "numpy", None, "gt-crop-track", 256, 25.0)

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        d = np.abs(clip.generated.astype(np.float64) - clip.ground_truth.astype(np.float64)).mean(axis=(1, 2, 3))
        return ClipResult({"ABSDIFF": float(d.mean())}, per_frame={"ABSDIFF": d}, extra={"frames": len(d)})


class Motion(Metric):
    """Mean absolute frame-to-frame change of the generated crops (audio-free; applies in both settings)."""

    name = "t_motion"
    outputs = ("MOTION",)
    higher_is_better = {"MOTION": True}
    needs = frozenset({"generated", "identity"})

    def protocol(self) -> Protocol:
        return Protocol("t_motion", "numpy", None, "gt-crop-track", 256, 25.0)

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        g = clip.generated.astype(np.float64)
        return ClipResult({"MOTION": float(np.abs(np.diff(g, axis=0)).mean()) if len(g) > 1 else 0.0})


class MeanColorDistance(Metric):
    """Split-level: distance between the mean colours of all generated and all real crops."""

    name = "t_split"
    outputs = ("MCD",)
    higher_is_better = {"MCD": False}
    needs = frozenset({"generated", "ground_truth"})
    split_level = True

    def protocol(self) -> Protocol:
        return Protocol("t_split", "numpy", None, "gt-crop-track", 256, 25.0)

    def clip_state(self, clip: ClipInput) -> dict[str, np.ndarray]:
        return {"gen": clip.generated.reshape(-1, 3).astype(np.float64).mean(0),
                "real": clip.ground_truth.reshape(-1, 3).astype(np.float64).mean(0),
                "n": np.array(len(clip.generated))}

    def aggregate(self, states: list[dict[str, np.ndarray]]) -> dict[str, float]:
        w = np.array([float(s["n"]) for s in states])
        g = np.average(np.stack([s["gen"] for s in states]), axis=0, weights=w)
        r = np.average(np.stack([s["real"] for s in states]), axis=0, weights=w)
        return {"MCD": float(np.linalg.norm(g - r))}


class Shifted(Method):
    """Source frames brightened by 10 (a cacheable, in-process 'model'); counts generate() calls in a file."""

    name = "t_shifted"
    kind = "in-process"

    def __init__(self, delay: float = 0.0, offset: int = 10) -> None:
        self.delay, self.offset = float(delay), int(offset)

    def fingerprint(self) -> str:
        return f"t_shifted-{self.offset}"

    def generate(self, inp: MethodInput) -> np.ndarray:
        counter = os.environ.get("RTB_TEST_COUNTER")
        if counter:
            with open(counter, "a") as f:
                f.write(f"{inp.clip_id}/{inp.setting}\n")
        if self.delay:
            time.sleep(self.delay)
        out = inp.source_frames[: inp.n_frames].astype(np.int16) + self.offset
        return np.clip(out, 0, 255).astype(np.uint8)


class Broken(Method):
    """Always fails: the run must record it and go on."""

    name = "t_broken"
    kind = "in-process"

    def fingerprint(self) -> str:
        return "t_broken-1"

    def generate(self, inp: MethodInput) -> np.ndarray:
        raise RuntimeError("stand-in failure")


STANDIN_METRICS: list[type[Metric]] = [AbsDiff, Motion, MeanColorDistance]
STANDIN_METHODS: list[type[Method]] = [Shifted, Broken]


def register_standins() -> None:
    for cls in STANDIN_METRICS:
        METRICS.setdefault(cls.name, cls)
    for cls in STANDIN_METHODS:
        METHODS.setdefault(cls.name, cls)


def unregister_standins() -> None:
    for cls in STANDIN_METRICS:
        if METRICS.get(cls.name) is cls:
            del METRICS[cls.name]
    for cls in STANDIN_METHODS:
        if METHODS.get(cls.name) is cls:
            del METHODS[cls.name]


def small_split(tmp_dir: Any, data_root: Any, n_frames: int = 20) -> str:
    """A 2-clip manifest (styletalk Obama_clip3, andrew_clip_2) of n_frames each, cross-audio paired."""
    import yaml

    doc = {
        "name": "runner-test", "description": "2 styletalk test clips, short", "selection_rule": "fixed",
        "clips": [
            {"clip_id": "Obama_clip3", "identity": "obama", "role": "test", "video": "styletalk/video/Obama_clip3.mp4",
             "audio": "styletalk/wav/Obama_clip3.wav", "frame_range": [0, n_frames],
             "drive_audio": "styletalk/wav/andrew_clip_2.wav", "drive_clip": "andrew_clip_2"},
            {"clip_id": "andrew_clip_2", "identity": "andrew", "role": "test", "video": "styletalk/video/andrew_clip_2.mp4",
             "audio": "styletalk/wav/andrew_clip_2.wav", "frame_range": [0, n_frames],
             "drive_audio": "styletalk/wav/Obama_clip3.wav", "drive_clip": "Obama_clip3"},
        ],
    }
    p = os.path.join(str(tmp_dir), "runner-test.yaml")
    with open(p, "w") as f:
        yaml.safe_dump(doc, f)
    return p


if __name__.startswith("tests."):  # imported as a --plugin (subprocess / Ray worker): register for real
    register_standins()
