"""Every available registered metric for one (generated, ground truth) pair of videos or frame folders.

Both are cropped with the GROUND TRUTH's crop track (harness.faces.clip_faces on the ground truth, the
same crop_track applied to the generated frames), so the crops are pixel-aligned. Split-level metrics
(FID) are aggregated over this one pair. Unavailable metrics are listed with their reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import MediaError
from metrics.base import ClipInput, Protocol, load_all

@dataclass
class PairResult:
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> value name -> value
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocols: dict[str, Protocol] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    n_frames: int = 0


@dataclass
class AlignedPair:
    """Crops cut with the ground truth's crop track, plus what metrics that cut their own crops need
    (ClipInput.generated_full / face_boxes: "full_frames")."""

    gen_crops: np.ndarray
    gt_crops: np.ndarray
    gen_full: np.ndarray
    face_boxes: np.ndarray | None


def aligned_crops(gen: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    """(generated crops, ground-truth crops) cut with the ground truth's crop track."""
    pair = aligned_pair(gen, gt)
    return pair.gen_crops, pair.gt_crops


def aligned_pair(gen: Any, gt: Any) -> AlignedPair:
    """aligned_crops plus the generated full frames and the ground truth's face-track boxes (same n frames)."""
    from harness.faces.clip import clip_faces
    from harness.faces.crop import crop_frames
    from harness.faces.clip import tracked_face_boxes

    n = min(len(gen.frames), len(gt.frames))
    if n == 0:
        raise MediaError("no frames to compare", gen.path)
    if gen.frames.shape[1:] != gt.frames.shape[1:]:
        raise MediaError(f"generated frames {gen.frames.shape[1:]} differ from ground truth {gt.frames.shape[1:]}",
                         gen.path)
    faces = clip_faces(gt, cache=not Path(gt.path).is_dir())
    ct = faces.crop_track
    gen_crops = crop_frames(gen.frames[:n], ct) if len(ct.boxes) == n else crop_frames(gen.frames[:n], _cut(ct, n))
    return AlignedPair(gen_crops, faces.crops[:n], gen.frames[:n], tracked_face_boxes(faces, n))


def _cut(ct: Any, n: int) -> Any:
    import dataclasses

    return dataclasses.replace(ct, boxes=ct.boxes[:n])


def compute_pair(gen_crops: np.ndarray, gt_crops: np.ndarray, audio: np.ndarray | None = None,
                 names: list[str] | None = None, batch_size: int = 32, device: str = "cpu",
                 clip_id: str = "pair", metric_args: dict[str, dict[str, Any]] | None = None,
                 gen_full: np.ndarray | None = None, face_boxes: np.ndarray | None = None) -> PairResult:
    """Run each selected registered metric on one aligned crop pair (metric_args: constructor kwargs by name).
    gen_full / face_boxes (from aligned_pair) feed metrics that need "full_frames"; without them those are
    listed as unavailable."""
    registry = load_all()
    names = names or sorted(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; known: {sorted(registry)}")
    clip = ClipInput(clip_id, generated=gen_crops, ground_truth=gt_crops, audio=audio, identity=gt_crops[0],
                     generated_full=gen_full, face_boxes=face_boxes)
    out = PairResult(n_frames=len(gen_crops))
    for name in names:
        try:
            metric = registry[name](batch_size=batch_size, device=device, **(metric_args or {}).get(name, {}))
        except Exception as exc:  # noqa: BLE001 - a metric that cannot even be built is reported, not fatal
            out.unavailable[name] = f"cannot construct: {exc}"
            continue
        ok, reason = metric.availability()
        if not ok:
            out.unavailable[name] = reason
            continue
        if "audio" in metric.needs and audio is None:
            out.unavailable[name] = "needs the driving audio (--audio, or a ground-truth video with sound)"
            continue
        if "full_frames" in metric.needs and (gen_full is None or face_boxes is None):
            out.unavailable[name] = "needs the full generated frames and the ground truth's face boxes (aligned_pair)"
            continue
        try:
            out.protocols[name] = metric.protocol()
            if metric.split_level:
                out.values[name] = metric.aggregate([metric.clip_state(clip)])
            else:
                res = metric.compute_clip(clip)
                out.values[name] = res.values
                out.extra[name] = res.extra
        except Exception as exc:  # noqa: BLE001 - one failing metric must not hide the others
            out.errors[name] = f"{type(exc).__name__}: {exc}"
    return out
