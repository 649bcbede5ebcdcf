"""LMD on real crops: the published formula (group-own-mean centring) reimplemented plainly here agrees
to 1e-9 for both protocols; coverage (FaceCov, excluded frames) is exact; the harness landmark path
agrees with a direct dlib stand-in better than one frame of real lip motion."""
from __future__ import annotations

import math

import numpy as np
import pytest

from _metric_media import dlib_landmarks_on_crops, styletalk_crops
from harness.core.errors import NoFaceError
from metrics.base import ClipInput, get_metric
from metrics.lmd import LMD, lmd_frames

# the groups written out independently of metrics.lmd.PROTOCOLS
GROUPS = {"realtalk": {"LMD": range(68), "M-LMD": range(48, 68), "F-LMD": range(48)},
          "eat": {"LMD": range(68), "M-LMD": range(48, 68), "F-LMD": range(68)}}


def published_lmd(gen: np.ndarray, gt: np.ndarray, groups: dict[str, range]) -> dict[str, float]:
    """ATVGnet-style LMD in plain loops: per frame and group, centre each side's group points on their own
    mean, per-point Euclidean distance, mean over points; mean over frames where both sides have points."""
    out = {}
    for name, idx in groups.items():
        frame_vals = []
        for t in range(len(gt)):
            if np.isnan(gen[t]).any() or np.isnan(gt[t]).any():
                continue
            gx = sum(float(gen[t, i, 0]) for i in idx) / len(idx)
            gy = sum(float(gen[t, i, 1]) for i in idx) / len(idx)
            rx = sum(float(gt[t, i, 0]) for i in idx) / len(idx)
            ry = sum(float(gt[t, i, 1]) for i in idx) / len(idx)
            d = [math.hypot((float(gen[t, i, 0]) - gx) - (float(gt[t, i, 0]) - rx),
                            (float(gen[t, i, 1]) - gy) - (float(gt[t, i, 1]) - ry)) for i in idx]
            frame_vals.append(sum(d) / len(d))
        out[name] = sum(frame_vals) / len(frame_vals)
    return out


class MemoLandmarks:
    """The real harness landmarker, run once per distinct frame (the tests reuse frames across shifts)."""

    def __init__(self) -> None:
        self.metric, self.memo = LMD(), {}

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        todo = [i for i, c in enumerate(crops) if c.tobytes() not in self.memo]
        if todo:
            for i, lm in zip(todo, self.metric.landmarks(crops[todo])):
                self.memo[crops[i].tobytes()] = lm
        return np.stack([self.memo[c.tobytes()] for c in crops])


@pytest.fixture(scope="module")
def obama(data_root):
    return styletalk_crops(data_root, "Obama_clip1", n=43)


@pytest.fixture(scope="module")
def landmarker():
    return MemoLandmarks()


@pytest.mark.parametrize("protocol", ["realtalk", "eat"])
def test_matches_published_formula_on_real_landmarks(obama, landmarker, protocol):
    gt, gen = obama[:40], obama[3:43].copy()  # the same clip 3 frames later
    gen[7] = 128  # uniform grey: no face on the generated side
    res = LMD(protocol=protocol, landmarks_fn=landmarker).compute_clip(ClipInput("c", generated=gen, ground_truth=gt))
    lg, lr = landmarker(gen), landmarker(gt)
    assert np.isnan(lg[7]).all() and not np.isnan(lr).any()
    expect = published_lmd(lg, lr, GROUPS[protocol])
    print(protocol, "LMD 3-frame lag:", expect)
    for k, v in expect.items():
        assert res.values[k] == pytest.approx(v, rel=1e-9, abs=1e-12)
        assert np.isnan(res.per_frame[k][7])
    assert 0 < res.values["M-LMD"]
    if protocol == "eat":
        assert res.values["F-LMD"] == res.values["LMD"]
    assert res.values["FaceCov"] == 39 / 40
    e = res.extra
    assert (e["frames_used"], e["frames_total"], e["gen_no_face"], e["gt_no_face"]) == (39, 40, 1, 0)
    assert e["excluded_frames"] == [7] and e["frames_excluded"] == 1


def test_own_mean_centring_differs_from_68_point_centring():
    """A mouth moved as a whole (vs the rest of the face) has M-LMD 0 under group-own-mean centring; centring
    on the 68-point mean, the old definition, would charge it to every mouth point."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(50, 200, size=(2, 68, 2))
    gen = gt + np.array([5.0, -3.0])  # global shift: every group 0
    per, ok = lmd_frames(gen, gt)
    tol = 200 * np.finfo(float).eps * 68  # coordinates ~200 px, rounding of the shift and of 68-point means
    assert ok.all() and all(np.abs(v).max() < tol for v in per.values())
    gen[:, 48:68] += np.array([2.0, 1.0])  # mouth shifted relative to the face
    per, _ = lmd_frames(gen, gt)
    assert np.abs(per["M-LMD"]).max() < tol and np.abs(per["F-LMD"]).max() < tol
    assert per["LMD"][0] > 0.5  # the whole-face group sees the relative shift
    expect = published_lmd(gen, gt, GROUPS["realtalk"])
    assert per["LMD"].mean() == pytest.approx(expect["LMD"], rel=1e-12)


def test_lost_face_shows_in_coverage(obama, landmarker):
    gt = obama[:10]
    blank = np.full_like(gt, 128)
    res = LMD(landmarks_fn=landmarker).compute_clip(ClipInput("c", generated=blank, ground_truth=gt))
    assert res.values["FaceCov"] == 0.0 and math.isnan(res.values["M-LMD"])
    assert res.extra["frames_used"] == 0 and res.extra["gen_no_face"] == 10
    with pytest.raises(NoFaceError, match="ground-truth"):
        LMD(landmarks_fn=landmarker).compute_clip(ClipInput("c", generated=gt, ground_truth=blank))


def test_config_and_protocol_record_backend_and_protocol():
    m = get_metric("lmd", protocol="eat")
    assert m.config() == {"backend": "dlib", "protocol": "eat"}
    again = get_metric("lmd", **m.config())
    assert again.protocol() == m.protocol()
    s = m.protocol().settings
    assert s["protocol"] == "eat" and s["landmark_backend"] == "dlib"
    assert s["groups"] == {"LMD": "0-67", "M-LMD": "48-67", "F-LMD": "0-67"}
    assert "own mean" in s["centering"] and "EAT test_lmd.py" in s["reference"]
    assert "b2c758b98070ea6e4d9c155311627b4a85d1b72d" in get_metric("lmd").protocol().settings["reference"]
    assert get_metric("lmd").protocol().settings["groups"]["F-LMD"] == "0-47"
    assert get_metric("lmd").protocol() != m.protocol()  # values of the two protocols never compare
    with pytest.raises(ValueError, match="protocol"):
        LMD(protocol="atvg")
    assert LMD.higher_is_better["FaceCov"] is True and "FaceCov" in LMD.outputs


def test_default_landmarker_agrees_with_direct_dlib(data_root, obama):
    """harness.core.faces (prior box confirmed by the detector) vs dlib's own detector box: the two landmark
    sets differ by less than one frame of real lip motion (the smallest signal LMD must resolve)."""
    crops = obama[:21]
    metric = LMD()
    assert metric.availability() == (True, "")
    p = metric.protocol()
    assert p.backend == "dlib" and p.weights_sha256
    lm, ref = metric.landmarks(crops), dlib_landmarks_on_crops(crops)
    assert lm.shape == (21, 68, 2) and not np.isnan(lm).any() and not np.isnan(ref).any()
    disagree, _ = lmd_frames(lm, ref)
    lag1, _ = lmd_frames(ref[1:], ref[:-1])
    for k in ("LMD", "M-LMD", "F-LMD"):
        print(f"{k}: harness vs direct dlib {disagree[k].mean():.3f} px, 1-frame lag {lag1[k].mean():.3f} px")
        assert disagree[k].mean() < lag1[k].mean()
    res = metric.compute_clip(ClipInput("c", generated=crops, ground_truth=crops))
    assert res.values == {"LMD": 0.0, "M-LMD": 0.0, "F-LMD": 0.0, "FaceCov": 1.0}
