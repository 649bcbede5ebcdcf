"""Every available registered metric for one (generated, ground truth) pair of videos or frame folders.

Both are cropped with the GROUND TRUTH's crop track (harness.core.faces.clip_faces on the ground truth, the
same crop_track applied to the generated frames), so the crops are pixel-aligned. Split-level metrics
(FID) are aggregated over this one pair. Unavailable metrics are listed with their reason. With a side worker
(metrics/overlap.py) the dlib-bound metrics run in its process while the others run here, with the same values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import MediaError
from metrics.base import ClipInput, Protocol, load_all

if TYPE_CHECKING:
    from metrics.overlap import SideWorker

MIN_FRAMES = 3  # a pair needs at least this many frames: velocity (F-LMD) and the track's smoothing need neighbours
MAX_MISSING = 0.10  # generated frames the ground truth has and the generated video lacks (as the folder method)
ASPECT_TOL = 0.01  # relative aspect-ratio difference still taken as "the same framing, another resolution"

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


def ground_truth_faces(gt: Any) -> Any:
    """The ground truth's face track and crops (harness.core.faces.clip_faces, cached on disk unless gt is a frame
    folder): what aligned_pair cuts both sides with. Several versions of one ground truth: compute it once."""
    from harness.core.faces.clip import clip_faces

    # the default models, shared per process by harness.core.faces (a cache hit still needs their descriptions)
    return clip_faces(gt, detector="dlib_hog", landmarker="dlib", cache=not Path(gt.path).is_dir())


def aligned_pair(gen: Any, gt: Any, faces: Any = None) -> AlignedPair:
    """aligned_crops plus the generated full frames and the ground truth's face-track boxes (same n frames).
    faces: ground_truth_faces(gt) when the caller has it already (several versions of one ground truth)."""
    from harness.core.faces.crop import crop_frames
    from harness.core.faces.clip import tracked_face_boxes

    gen_frames = fit_pair(gen.frames, gt.frames, gen.path, gt.path)
    n = len(gen_frames)
    faces = faces if faces is not None else ground_truth_faces(gt)
    ct = faces.crop_track
    gen_crops = crop_frames(gen_frames, ct) if len(ct.boxes) == n else crop_frames(gen_frames, _cut(ct, n))
    return AlignedPair(gen_crops, faces.crops[:n], gen_frames, tracked_face_boxes(faces, n))


def fit_pair(gen: np.ndarray, gt: np.ndarray, gen_path: Any, gt_path: Any) -> np.ndarray:
    """The generated frames made comparable with the ground truth's, by the stated rules (README, "Pairs that do
    not match"): fewer than MIN_FRAMES frames on either side, or more than MAX_MISSING of the ground truth's frames
    missing from the generated video, or another aspect ratio: MediaError; a shorter generated video within
    MAX_MISSING is scored on the common frames, a longer one is cut, another resolution with the same aspect
    ratio is resized to the ground truth's (each with a warning saying so)."""
    import warnings

    for frames, path, what in ((gt, gt_path, "ground truth"), (gen, gen_path, "generated video")):
        if len(frames) < MIN_FRAMES:
            raise MediaError(f"{what} has {len(frames)} frame(s); at least {MIN_FRAMES} are needed to score a pair",
                             path)
    n_gen, n_gt = len(gen), len(gt)
    if n_gen < n_gt:
        missing = n_gt - n_gen
        if missing > MAX_MISSING * n_gt:
            raise MediaError(f"generated video has {n_gen} frames, the ground truth {n_gt}: {missing} "
                             f"({missing / n_gt:.0%}) missing, more than {MAX_MISSING:.0%}", gen_path)
        warnings.warn(f"{gen_path}: {missing} frame(s) shorter than the ground truth ({n_gen} vs {n_gt}); "
                      f"scored on the first {n_gen}", stacklevel=3)
    elif n_gen > n_gt:
        warnings.warn(f"{gen_path}: {n_gen - n_gt} frame(s) longer than the ground truth; cut to {n_gt}", stacklevel=3)
    gen = gen[:min(n_gen, n_gt)]
    (gh, gw), (th, tw) = gen.shape[1:3], gt.shape[1:3]
    if (gh, gw) != (th, tw):
        if abs(gw / gh - tw / th) > ASPECT_TOL * (tw / th):
            raise MediaError(f"generated frames are {gw}x{gh}, the ground truth {tw}x{th}: another aspect ratio "
                             "(a face crop scored against full frames?)", gen_path)
        import cv2

        interp = cv2.INTER_AREA if gw > tw else cv2.INTER_LINEAR
        gen = np.stack([cv2.resize(f, (tw, th), interpolation=interp) for f in gen])
        warnings.warn(f"{gen_path}: generated frames {gw}x{gh} resized to the ground truth's {tw}x{th}", stacklevel=3)
    return gen


SILENCE_DBFS = -60.0  # driving audio whose peak stays below this is silence: no speech to sync with


def silent(audio: np.ndarray | None) -> str | None:
    """Why the driving audio cannot drive a sync metric (silence), or None. Metrics that correlate the mouth with
    the speech would divide by a zero envelope on silence; they say so instead."""
    if audio is None or len(audio) == 0:
        return None
    peak = float(np.max(np.abs(audio)))
    if peak <= 10 ** (SILENCE_DBFS / 20):
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
        return f"the driving audio is silent (peak {level} dBFS, below {SILENCE_DBFS:g}): no speech to sync with"
    return None


def fit_audio(audio: np.ndarray, n_frames: int, fps: float, sample_rate: int, path: Any,
              warn: bool = True) -> np.ndarray:
    """The driving audio cut to the scored frames (a longer file is cut, with a warning saying by how much);
    a shortfall follows harness.core.media.align_audio (zero-padded up to 0.1 s, else MediaError)."""
    import warnings

    from harness.core.media import align_audio

    need = int(round(n_frames * sample_rate / fps))
    extra = (len(audio) - need) / sample_rate
    if warn and extra > 1.0 / fps:
        warnings.warn(f"{path}: audio is {len(audio) / sample_rate:.2f}s, the {n_frames} scored frames "
                      f"{need / sample_rate:.2f}s: cut to the frames ({extra:.2f}s dropped)", stacklevel=2)
    return align_audio(audio, n_frames, fps, sample_rate, path=path)


def _cut(ct: Any, n: int) -> Any:
    import dataclasses

    return dataclasses.replace(ct, boxes=ct.boxes[:n])


def compute_pair(gen_crops: np.ndarray, gt_crops: np.ndarray, audio: np.ndarray | None = None,
                 names: list[str] | None = None, batch_size: int = 32, device: str = "cpu",
                 clip_id: str = "pair", metric_args: dict[str, dict[str, Any]] | None = None,
                 gen_full: np.ndarray | None = None, face_boxes: np.ndarray | None = None,
                 side: SideWorker | None = None) -> PairResult:
    """Run each selected registered metric on one aligned crop pair (metric_args: constructor kwargs by name).
    gen_full / face_boxes (from aligned_pair) feed metrics that need "full_frames"; without them those are
    listed as unavailable. side: a metrics.overlap.SideWorker, so the dlib-bound metrics run in its process
    while this one runs the others (same values; None: all here, one after the other)."""
    return start_pair(gen_crops, gt_crops, audio, names, batch_size, device, clip_id, metric_args, gen_full,
                      face_boxes, side).result()


class PendingPair:
    """compute_pair's result once the side worker's part is in. start_pair computed every other metric already;
    all outcomes are recorded here, in the metric order (the serial path's order, which tables print in)."""

    def __init__(self, out: PairResult, order: list[str], outcomes: dict[str, Any], side: Any = None) -> None:
        self._out, self._order, self._outcomes, self._side = out, order, outcomes, side

    def result(self) -> PairResult:
        if self._side is not None:
            self._outcomes.update(self._side.result())
            self._side = None
        for name in self._order:
            if name in self._outcomes:
                _record(self._out, name, self._outcomes.pop(name))
        return self._out


def _record(out: PairResult, name: str, outcome: Any) -> None:
    if outcome.protocol is not None:
        out.protocols[name] = outcome.protocol
    if outcome.error is not None:
        out.errors[name] = outcome.error
        return
    out.values[name] = outcome.values
    if outcome.extra is not None:
        out.extra[name] = outcome.extra


def start_pair(gen_crops: np.ndarray, gt_crops: np.ndarray, audio: np.ndarray | None = None,
               names: list[str] | None = None, batch_size: int = 32, device: str = "cpu",
               clip_id: str = "pair", metric_args: dict[str, dict[str, Any]] | None = None,
               gen_full: np.ndarray | None = None, face_boxes: np.ndarray | None = None,
               side: SideWorker | None = None) -> PendingPair:
    """compute_pair in two steps: the side worker's metrics submitted, every other metric computed here, then
    PendingPair.result() (the caller may prepare the next pair in between: the worker keeps working)."""
    from metrics.overlap import SideJob, evaluate, runs_on_side, side_bytes, side_clip

    registry = load_all()
    names = names or sorted(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; known: {sorted(registry)}")
    clip = ClipInput(clip_id, generated=gen_crops, ground_truth=gt_crops, audio=audio, identity=gt_crops[0],
                     generated_full=gen_full, face_boxes=face_boxes)
    out = PairResult(n_frames=len(gen_crops))
    runnable: list[tuple[str, Any]] = []
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
        if "audio" in metric.needs and silent(audio):
            out.unavailable[name] = f"needs speech: {silent(audio)}"
            continue
        if "full_frames" in metric.needs and (gen_full is None or face_boxes is None):
            out.unavailable[name] = "needs the full generated frames and the ground truth's face boxes (aligned_pair)"
            continue
        runnable.append((name, metric))
    away = [n for n, m in runnable if runs_on_side(m, (metric_args or {}).get(n, {}))] if side is not None else []
    # both halves non-empty, or nothing overlaps; short single pairs and huge ones run here (SideWorker.wanted)
    if len(away) == len(runnable) or (away and not side.wanted(len(gen_crops), side_bytes(clip))):
        away = []
    pending = None
    if away:
        kwargs = {n: dict((metric_args or {}).get(n, {})) for n in away}
        try:
            pending = side.submit(SideJob(away, kwargs, batch_size, device, side_clip(clip)))
        except Exception as exc:  # noqa: BLE001 - no worker process to be had here: the same metrics, in turn
            import warnings

            warnings.warn(f"metric worker not started ({type(exc).__name__}: {exc}); "
                          f"{', '.join(away)} computed in this process", stacklevel=2)
            away = []
    here = {name: evaluate(metric, clip) for name, metric in runnable if name not in away}
    return PendingPair(out, names, here, pending)
