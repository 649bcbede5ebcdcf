"""mouth_r (metrics.mouth_corr): known answers on real 256x256 crops, the registry entry, a run and its report.

Known answers: the ground truth against itself is r = 1; the ground truth against itself shifted by K frames is
the lag-K Pearson r of the ground truth's own gap series (computed here independently with numpy.corrcoef from
LMD's landmarks), which is < 1 for a talking mouth; a frozen mouth (one real crop repeated) is NaN, counted.
Tolerance 1e-12: r is a ratio of sums of ~50 products of px-scale numbers in float64 (relative rounding
~50 * 2^-53 ~ 1e-14), and both sides read the same landmarks (memoised by frame content), so only the sum order
differs.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from _metric_media import styletalk_crops
from metrics.base import ClipInput, get_metric, load_all

TOL = 1e-12
N, LAG = 50, 5  # 2 s at 25 fps; a 0.2 s lag (a syllable) moves the mouth series off the ground truth's


@pytest.fixture(scope="module")
def crops(data_root):
    return styletalk_crops(data_root, "Obama_clip1", n=N)


def test_known_answers_on_real_crops(crops) -> None:
    from metrics.lmd import LMD
    from metrics.mouth_corr import mouth_opening

    metric = get_metric("mouth_r")
    same = metric.compute_clip(ClipInput("self", generated=crops, ground_truth=crops))
    assert same.values["mouth_r"] == pytest.approx(1.0, abs=TOL)
    assert same.extra["frames_used"] == same.extra["frames_total"] == N

    gap = mouth_opening(LMD().landmarks(crops))  # the independent answer: the gt's own series, lagged
    assert np.isfinite(gap).all() and np.ptp(gap) > 0  # the clip talks: its mouth opening varies
    expect = float(np.corrcoef(gap[LAG:], gap[:-LAG])[0, 1])
    shifted = metric.compute_clip(ClipInput("lag", generated=crops[LAG:], ground_truth=crops[:-LAG]))
    assert shifted.values["mouth_r"] == pytest.approx(expect, abs=TOL)
    assert shifted.values["mouth_r"] < 1.0 - 1e-6
    print(f"mouth_r: self {same.values['mouth_r']:.6f}, lag {LAG} frames {shifted.values['mouth_r']:.4f}")

    frozen = np.repeat(crops[:1], N, axis=0)  # a real crop that never moves
    still = metric.compute_clip(ClipInput("frozen", generated=frozen, ground_truth=crops))
    assert np.isnan(still.values["mouth_r"]) and still.extra["nan_reason"] == "no variation in the generated mouth opening"
    assert still.extra["frames_used"] == N  # NaN because r is undefined, not because frames were dropped


def test_too_few_frames_is_nan_and_says_why() -> None:
    from metrics.mouth_corr import mouth_r_result

    t = np.arange(12, dtype=np.float64)
    lm = np.zeros((12, 68, 2))
    lm[:, 61:64, 1], lm[:, 65:68, 1] = 0.0, (np.sin(t) + 2)[:, None]  # an inner-lip gap that varies
    lm[5:, :] = np.nan  # landmarks lost on 7 of 12 frames: 5 left < MIN_FRAMES
    res = mouth_r_result(lm, lm)
    assert np.isnan(res.values["mouth_r"]) and res.extra["frames_used"] == 5 and res.extra["frames_excluded"] == 7
    assert res.extra["nan_reason"] == "5 frames with landmarks on both sides (< 10)"


def test_registry_lists_it_with_direction_and_protocol() -> None:
    reg = load_all()
    cls = reg["mouth_r"]
    assert cls.outputs == ("mouth_r",) and cls.higher_is_better == {"mouth_r": True}
    p = get_metric("mouth_r").protocol()
    assert p.settings["reference"].startswith("ours") and p.settings["landmark_backend"] == "dlib"
    assert p.weights_sha256 == get_metric("lmd").protocol().weights_sha256  # the LMD metric's landmark file
    assert get_metric("mouth_r", backend="fan").protocol().settings["landmark_backend"] == "fan"


def test_metrics_list_shows_it(capsys) -> None:
    from harness.cli import main

    assert main(["metrics", "list"]) == 0
    rows = [ln.replace("│", " ").split() for ln in capsys.readouterr().out.splitlines()]
    row = next(r for r in rows if r[:1] == ["mouth_r"])
    assert row[1:4] == ["mouth_r", "↑", "higher"] and "built-in" in row and "available" in row


def test_run_and_report_show_mouth_r(data_root, tmp_path, capsys) -> None:
    """`run --metrics lmd,mouth_r` on a real demo clip: ground truth r = 1; the paper table shows the value as
    an extra Reconstruction column with its arrow (↑, from what the run recorded and from the registry)."""
    from harness.cli import main
    from reports.export import to_markdown
    from reports.load import load_run
    from reports.tables import paper_table

    out = tmp_path / "run"
    rc = main(["run", "--split", "demo", "--root", str(data_root), "--clips", "feifeili_clip3", "--max-frames", "30",
               "--methods", "ground_truth,static_frame", "--settings", "reconstruction", "--metrics", "lmd,mouth_r",
               "--out", str(out), "--no-videos", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    rec = json.loads((out / "summary.json").read_text())["results"]["reconstruction"]
    gt = rec["ground_truth"]["mouth_r"]
    assert gt["mean"] == pytest.approx(1.0, abs=TOL) and gt["higher_is_better"] is True and gt["metric"] == "mouth_r"
    sf = rec["static_frame"]["mouth_r"]
    assert sf["n_clips"] + sf["n_missing"] == 1  # a still frame: NaN (counted as missing) or a value, never dropped
    assert sf["mean"] is None or sf["mean"] < 1.0 - 1e-6
    table = paper_table([load_run(out)])
    j = [c[3] for c in table.columns].index("mouth_r")
    assert table.columns[j][0] == "Reconstruction" and table.arrows()[j] == "↑"
    assert "mouth_r" in to_markdown(table)
