"""LMD on real crops: identical -> 0, shifted copy -> 0 (centering), perturbed mouth -> M-LMD only,
excluded frames counted; the default harness.faces path agrees with a direct dlib stand-in."""
from __future__ import annotations

import numpy as np
import pytest

from _metric_media import dlib_landmarks_on_crops, styletalk_crops
from metrics.base import ClipInput
from metrics.lmd import LMD, lmd_frames


def test_lmd_frames_groups():
    rng = np.random.default_rng(0)
    gt = rng.uniform(50, 200, size=(3, 68, 2))
    gen = gt + np.array([5.0, -3.0])  # pure shift: removed by centering
    per, ok = lmd_frames(gen, gt)
    assert ok.all() and np.allclose(per["LMD"], 0)
    gen2 = gt.copy()
    gen2[:, 48:68] += rng.normal(size=(3, 20, 2))
    gen2[1] = np.nan
    per, ok = lmd_frames(gen2, gt)
    assert ok.tolist() == [True, False, True] and np.isnan(per["LMD"][1])
    assert (per["M-LMD"][ok] > per["F-LMD"][ok]).all()
    g, r = gen2[0] - gen2[0].mean(0), gt[0] - gt[0].mean(0)
    assert per["M-LMD"][0] == pytest.approx(np.linalg.norm(g - r, axis=1)[48:].mean())


def test_real_clip(data_root):
    crops = styletalk_crops(data_root, "Obama_clip2", n=20)
    metric = LMD(landmarks_fn=dlib_landmarks_on_crops)
    same = metric.compute_clip(ClipInput("c", generated=crops, ground_truth=crops))
    assert same.values == {"LMD": 0.0, "M-LMD": 0.0, "F-LMD": 0.0}
    other = crops[::-1].copy()
    other[3] = 0  # black frame: no face -> excluded
    res = metric.compute_clip(ClipInput("c", generated=other, ground_truth=crops))
    assert res.extra["frames_excluded"] >= 1 and 3 in res.extra["excluded_frames"]
    assert res.values["LMD"] > 0 and np.isfinite(res.values["M-LMD"])


def test_default_landmarker_path_and_protocol(data_root):
    crops = styletalk_crops(data_root, "Obama_clip2", n=8)
    metric = LMD()
    assert metric.availability() == (True, "")
    p = metric.protocol()
    assert p.backend == "dlib" and p.weights_sha256
    lm = metric.landmarks(crops)
    assert lm.shape == (8, 68, 2)
    ref = dlib_landmarks_on_crops(crops)
    per, ok = lmd_frames(lm, ref)
    print("harness.faces vs direct dlib LMD per frame:", per["LMD"])
    assert ok.sum() >= 6 and np.nanmean(per["LMD"]) < 3.0
    res = metric.compute_clip(ClipInput("c", generated=crops, ground_truth=crops))
    assert res.values["LMD"] == 0.0
