"""Landmark distance (LMD, M-LMD, F-LMD; lower is better) and face coverage (FaceCov) of generated crops.

68-point iBUG landmarks on both 256x256 crops (same crop track, so pixel-aligned). Each landmark GROUP is
centred on its OWN mean (mouth points minus the mouth mean, ...: removes a global shift, so the measure
is shape/motion, not position); per-point L2 distance in px at 256x256, mean over the group's points,
then over frames. Followed: ATVGnet `evaluation_matrix.py` (lelechen63/ATVGnet, commit
b2c758b98070ea6e4d9c155311627b4a85d1b72d: `generating_landmark_lips` subtracts the mouth mean
`sum(mouth)/20` from the 20 mouth points, `compare_landmarks` takes per-point L2 and averages over frames;
note it SUMS over the 20 points where we take the mean, so its numbers are 20x ours) and EAT's
`test_lmd.py` (yuangan/EAT_code; that file was not in the stored reference we could read, so its
groups below come from issue 12: mouth for M-LMD, all 68 for F-LMD).

Protocols (constructor kwarg `protocol`, recorded in the Protocol settings):
  realtalk (default)  LMD = 0-67, M-LMD = 48-67 (mouth), F-LMD = 0-47 (face without mouth)
  eat                 LMD = 0-67, M-LMD = 48-67 (mouth), F-LMD = 0-67 (all 68)
FaceCov (higher is better, in [0,1]): of the frames with ground-truth landmarks, the fraction on which the
GENERATED crop has landmarks too. Frames without landmarks on either side are excluded from the distances
and reported in extra (frames_used, frames_total, gen_no_face, gt_no_face, excluded_frames), so a method
that loses the face shows it (all generated faces lost: distances NaN, FaceCov 0). Ground truth without
any landmarks -> NoFaceError. Ground-truth landmarks are cached (key: crop bytes + backend + weights).
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, ClassVar

import numpy as np

from metrics.landmark_source import LandmarkSource
from metrics.base import FRAMES_TOTAL, FRAMES_USED, ChunkState, ClipInput, ClipResult, Metric, Protocol, register

# protocol -> {value: (first, last + 1)} over the iBUG 68 points
PROTOCOLS: dict[str, dict[str, tuple[int, int]]] = {
    "realtalk": {"LMD": (0, 68), "M-LMD": (48, 68), "F-LMD": (0, 48)},
    "eat": {"LMD": (0, 68), "M-LMD": (48, 68), "F-LMD": (0, 68)},
}
REFERENCES = {
    "realtalk": "ATVGnet evaluation_matrix.py (lelechen63/ATVGnet@b2c758b98070ea6e4d9c155311627b4a85d1b72d): "
                "group-own-mean centring, per-point L2; mean (not sum) over points",
    "eat": "EAT test_lmd.py (yuangan/EAT_code; groups as in issue 12, file not verified) with the same centring",
}
CACHE_VERSION = "1"
RESOLUTION = 256


def lmd_frames(gen_lm: np.ndarray, gt_lm: np.ndarray, protocol: str = "realtalk"
               ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-frame distances {value: [T]} (nan on excluded frames) and the bool mask of used frames.
    Each group is centred on its own mean before the per-point L2 (see module docstring)."""
    g = np.asarray(gen_lm, np.float64)
    r = np.asarray(gt_lm, np.float64)
    ok = np.isfinite(g).all(axis=(1, 2)) & np.isfinite(r).all(axis=(1, 2))
    per = {}
    for name, (a, b) in PROTOCOLS[protocol].items():
        gg = g[:, a:b] - g[:, a:b].mean(axis=1, keepdims=True)
        rr = r[:, a:b] - r[:, a:b].mean(axis=1, keepdims=True)
        per[name] = np.where(ok, np.linalg.norm(gg - rr, axis=2).mean(axis=1), np.nan)
    return per, ok


def coverage(gen_lm: np.ndarray, gt_lm: np.ndarray) -> dict[str, Any]:
    """Which frames have landmarks on each side; FaceCov = gen-and-gt frames / gt frames."""
    gen_ok = np.isfinite(np.asarray(gen_lm, np.float64)).all(axis=(1, 2))
    gt_ok = np.isfinite(np.asarray(gt_lm, np.float64)).all(axis=(1, 2))
    used = gen_ok & gt_ok
    return {"FaceCov": float(used.sum() / gt_ok.sum()) if gt_ok.any() else float("nan"),
            FRAMES_USED: int(used.sum()), FRAMES_TOTAL: int(len(used)),
            "gen_no_face": int((~gen_ok).sum()), "gt_no_face": int((~gt_ok).sum()),
            "frames_excluded": int((~used).sum()), "excluded_frames": np.flatnonzero(~used).tolist(),
            "gen_no_face_frames": np.flatnonzero(~gen_ok).tolist()}


@register
class LMD(Metric):
    name: ClassVar[str] = "lmd"
    outputs: ClassVar[tuple[str, ...]] = ("LMD", "M-LMD", "F-LMD", "FaceCov")
    higher_is_better: ClassVar[dict[str, bool | None]] = {"LMD": False, "M-LMD": False, "F-LMD": False,
                                                          "FaceCov": True}
    needs: ClassVar[frozenset[str]] = frozenset({"generated", "ground_truth"})

    def __init__(self, batch_size: int = 32, device: str = "cpu", backend: str = "dlib", protocol: str = "realtalk",
                 landmarks_fn: Callable[[np.ndarray], np.ndarray] | None = None, cache: Any = None) -> None:
        """landmarks_fn: crops [T,H,W,3] -> [T,68,2] (nan rows where none); default harness.core.faces."""
        super().__init__(batch_size, device)
        if protocol not in PROTOCOLS:
            raise ValueError(f"lmd protocol {protocol!r} not in {tuple(PROTOCOLS)}")
        self.backend = backend
        self.lmd_protocol = protocol
        self._source = LandmarkSource(backend, landmarks_fn, owner="lmd", device=device)
        self._cache = cache

    def config(self) -> dict[str, Any]:
        return {"backend": self.backend, "protocol": self.lmd_protocol}

    def availability(self) -> tuple[bool, str]:
        return self._source.availability()

    def protocol(self) -> Protocol:
        digest, weights_state = self._source.weights()
        groups = {k: f"{a}-{b - 1}" for k, (a, b) in PROTOCOLS[self.lmd_protocol].items()}
        return Protocol(metric="LMD", backend=self.backend, weights_sha256=digest,
                        crop="gt crop track, 256x256 RGB uint8", resolution=RESOLUTION, fps=25.0,
                        settings={"protocol": self.lmd_protocol, "landmark_backend": self.backend,
                                  "points": "iBUG 68", "groups": groups,
                                  "centering": "each group's points minus that group's own mean, per frame",
                                  "units": "px at 256x256",
                                  "reduce": "per-point L2, mean over the group's points, then over frames; "
                                            "frames without landmarks on either side excluded and counted",
                                  "FaceCov": "frames with gen and gt landmarks / frames with gt landmarks",
                                  "reference": REFERENCES[self.lmd_protocol],
                                  "landmarks_on_crops": "harness.core.faces.landmarks_on_crops (prior box confirmed by detector)",
                                  "weights_state": weights_state})

    def landmarks(self, crops: np.ndarray) -> np.ndarray:
        return self._source(crops)

    def gt_landmarks(self, gt: np.ndarray) -> np.ndarray:
        """Landmarks [T,68,2] (crop px) of ground-truth crops, cached on disk (key: crop bytes, backend, weights):
        the ground truth of a clip is fitted once ever, whichever method or metric asks."""
        from harness.core.cache import default_cache, make_key

        if self._source.custom is not None:  # custom landmarker: no cache identity to key on
            return self.landmarks(gt)
        cache = self._cache if self._cache is not None else default_cache()
        digest = hashlib.sha256(memoryview(np.ascontiguousarray(gt))).hexdigest()  # = .tobytes()'s, no copy
        on = {} if self._source.device_type == "cpu" else {"device": self._source.device_type}  # FAN on a GPU
        if self.backend == "fan":  # FAN runs BN-folded and batched (fp32 rounding differs from the plain network)
            on["impl"] = "folded-cl-batched"
        key = make_key("lmdgt", CACHE_VERSION, backend=self.backend, weights=self.protocol().weights_sha256,
                       crops=digest, shape=list(gt.shape), **on)
        return cache.arrays(key, lambda: {"landmarks": self.landmarks(gt)})["landmarks"]

    def landmark_pair(self, gen: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(generated, ground-truth) landmarks [T,68,2] in px at 256x256 (nan rows where none): what LMD scores,
        and what every metric built on LMD's landmarks (mouth_r, the demo's figures) reads."""
        from metrics.frame_memo import frames_equal

        scale = RESOLUTION / gt.shape[1]
        gt_raw = self.gt_landmarks(gt)
        # the ground truth's own crops scored as a method: their landmarks are the cached ground-truth ones
        gen_raw = gt_raw if frames_equal(gen, gt) and self._source.custom is None else self.landmarks(gen)
        return gen_raw * scale, gt_raw * scale

    # the chunked path: the ground truth's landmarks once (start), the generated crops' chunk by chunk ----
    def pair_start(self, clip: ClipInput) -> ChunkState:
        """A ChunkState for landmark_pair fed in chunks: the ground truth's raw landmarks fitted (cached) here."""
        from metrics.ssim import check_pair

        gt = clip.ground_truth
        check_pair(clip.clip_id, gt, gt)  # uint8 [T,H,W,3], non-empty
        st = ChunkState(clip)
        st.memo["gt_raw"] = self.gt_landmarks(gt)
        return st

    def pair_update(self, state: ChunkState, gen: np.ndarray, gt: np.ndarray | None) -> None:
        """landmark_pair's generated landmarks for the next chunk (the ground truth's own crops: its cached
        landmarks, as landmark_pair's whole-clip shortcut; landmarks are per frame, so chunks change nothing)."""
        from metrics.frame_memo import frames_equal
        from metrics.ssim import check_pair

        gen, gt = check_pair(state.clip.clip_id, gen, gt)
        gt_raw = state.memo["gt_raw"][state.seen:state.seen + len(gen)]
        same = self._source.custom is None and len(gt_raw) == len(gen) and frames_equal(gen, gt)
        state.add(gt_raw if same else self.landmarks(gen), len(gen))

    def pair_finish(self, state: ChunkState) -> tuple[np.ndarray, np.ndarray]:
        """landmark_pair(whole generated, whole ground truth) from the chunks fed."""
        state.check_complete()
        scale = RESOLUTION / state.clip.ground_truth.shape[1]
        return state.joined() * scale, state.memo["gt_raw"] * scale

    chunked: ClassVar[bool] = True

    def start(self, clip: ClipInput) -> ChunkState:
        return self.pair_start(clip)

    def update(self, state: ChunkState, generated: np.ndarray, ground_truth: np.ndarray | None) -> None:
        self.pair_update(state, generated, ground_truth)

    def finish(self, state: ChunkState) -> ClipResult:
        return self.result(state.clip, *self.pair_finish(state))

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        from metrics.ssim import _pair

        gen, gt = _pair(clip)
        return self.result(clip, *self.landmark_pair(gen, gt))

    def result(self, clip: ClipInput, gen_lm: np.ndarray, gt_lm: np.ndarray) -> ClipResult:
        """The values from the landmark pair [T,68,2] (px at 256x256)."""
        from harness.core.errors import NoFaceError

        cov = coverage(gen_lm, gt_lm)
        if cov["gt_no_face"] == len(gt_lm):
            raise NoFaceError(f"clip {clip.clip_id}: no ground-truth frame has landmarks; LMD undefined")
        per, ok = lmd_frames(gen_lm, gt_lm, self.lmd_protocol)
        values = {k: float(np.mean(v[ok])) if ok.any() else float("nan") for k, v in per.items()}
        values["FaceCov"] = cov["FaceCov"]
        return ClipResult(values=values, per_frame=per, extra=cov)
