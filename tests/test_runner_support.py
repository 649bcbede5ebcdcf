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

from harness.core.methods import REGISTRY as METHODS, Method, MethodInput
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


# ---------------------------------------------------------------------------------------------------
# synthetic run stores written through the real RunStore + finalize (for compare / finalize tests)
# ---------------------------------------------------------------------------------------------------
FAIL = "fail"  # a per-clip value of FAIL writes a failed record


class SynthErr(Metric):
    """Per-clip, lower is better; records coverage extras like the real per-frame metrics."""

    name = "t_err"
    outputs = ("ERR",)
    higher_is_better = {"ERR": False}
    needs = frozenset({"generated", "ground_truth"})
    variant = "v1"

    def __init__(self, batch_size: int = 32, device: str = "cpu", variant: str = "v1") -> None:
        super().__init__(batch_size, device)
        self.variant = variant

    def protocol(self) -> Protocol:
        return Protocol("t_err", "numpy", None, "gt-crop-track", 256, 25.0, {"variant": self.variant})

    def config(self) -> dict[str, Any]:
        return {"variant": self.variant}


class SynthOffset(Metric):
    """Per-clip informational value (higher_is_better None), like an AV offset."""

    name = "t_offset"
    outputs = ("OFFSET",)
    higher_is_better = {"OFFSET": None}
    needs = frozenset({"generated", "audio"})

    def protocol(self) -> Protocol:
        return Protocol("t_offset", "numpy", None, "gt-crop-track", 256, 25.0)


class SynthPool(Metric):
    """Split-level: the mean of the pooled per-clip states 'x' (FID-like: depends on which clips are pooled)."""

    name = "t_pool"
    outputs = ("POOL",)
    higher_is_better = {"POOL": False}
    needs = frozenset({"generated", "ground_truth"})
    split_level = True

    def protocol(self) -> Protocol:
        return Protocol("t_pool", "numpy", None, "gt-crop-track", 256, 25.0)

    def aggregate(self, states: list[dict[str, np.ndarray]]) -> dict[str, float]:
        return {"POOL": float(np.mean([float(s["x"]) for s in states]))}


class _Stub:
    """What finalize needs of a method: its name and describe()."""

    def __init__(self, name: str) -> None:
        self.name = name

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "in-process", "fingerprint": f"{self.name}-1"}


def write_synthetic_run(path: Any, values: dict[str, dict[str, Any]], offsets: dict[str, dict[str, float]] | None = None,
                        variant: str = "v1", max_frames: int | None = 20, metrics: tuple[str, ...] = ("t_err", "t_offset", "t_pool"),
                        frames: int = 20) -> dict[str, Any]:
    """A finished run folder: values[method][clip_id] = ERR (also t_pool's state x; NaN = value missing,
    FAIL = failed clip). offsets[method][clip_id] = OFFSET (default 1.0). Returns the summary."""
    from pathlib import Path
    from types import SimpleNamespace

    from harness.runner import RunConfig, finalize
    from harness.store import RunStore, flatten_states

    all_metrics = {"t_err": SynthErr(variant=variant), "t_offset": SynthOffset(), "t_pool": SynthPool()}
    mets = {n: all_metrics[n] for n in metrics}
    fps = {n: m.protocol().fingerprint() for n, m in mets.items()}
    store = RunStore(path)
    clip_ids = sorted({c for by_clip in values.values() for c in by_clip})
    for method, by_clip in values.items():
        for cid, v in by_clip.items():
            rec: dict[str, Any] = {"method": method, "setting": "reconstruction", "clip_id": cid, "status": "ok",
                                   "error": None, "method_fingerprint": f"{method}-1", "values": {}, "extra": {},
                                   "protocols": {}, "metric_errors": {}, "timings": {"total_s": 0.1}, "n_frames": frames}
            if v == FAIL:
                rec.update(status="failed", error="RuntimeError: synthetic failure")
                store.write_record(rec)
                continue
            states = None
            if "t_err" in mets:
                rec["values"]["t_err"] = {"ERR": float(v)}
                rec["extra"]["t_err"] = {"frames_used": frames - 2, "frames_total": frames}
                rec["protocols"]["t_err"] = fps["t_err"]
            if "t_offset" in mets:
                rec["values"]["t_offset"] = {"OFFSET": float((offsets or {}).get(method, {}).get(cid, 1.0))}
                rec["protocols"]["t_offset"] = fps["t_offset"]
            if "t_pool" in mets and np.isfinite(float(v)):
                states = flatten_states({"t_pool": {"x": np.array(float(v))}})
                rec["protocols"]["t_pool"] = fps["t_pool"]
            store.write_record(rec, states)
    cfg = RunConfig(split="synthetic", out=str(path), methods=list(values), settings=["reconstruction"],
                    metrics=list(metrics), max_frames=max_frames,
                    metric_args={"t_err": {"variant": variant}} if "t_err" in mets else {})
    summary = finalize(store, cfg, SimpleNamespace(path=Path("synthetic.yaml")),
                       [SimpleNamespace(clip_id=c) for c in clip_ids], {m: _Stub(m) for m in values},
                       mets, {}, {})
    store.write_summary(summary)
    return summary
