"""Issue 14 item 5: the demo checkpoint's lips move. On the demo split's held-out test clips in
reconstruction it must beat static_frame and copy_reference on M-LMD (metrics.lmd), and its per-frame
mouth opening must correlate with the ground truth's at r >= 0.5 averaged over the clips
(harness.demo_figures). Slow: generates 5 x 100 frames per method and runs dlib on every crop."""
from __future__ import annotations

import numpy as np
import pytest

SHIPPED_ONLY = "the shipped checkpoint (realtalk/assets) is what the criteria are about"


@pytest.fixture(scope="module")
def figures(data_root):
    import torch

    from harness.demo_figures import evaluate_methods, format_summary, summarize
    from harness.core.methods import get_method, load_all
    from realtalk.demo_checkpoint import SHIPPED, check_shipped

    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} absent: {SHIPPED_ONLY}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    load_all()
    ms = {"realtalk": get_method("realtalk", checkpoint=str(check_shipped())),
          "static_frame": get_method("static_frame"), "copy_reference": get_method("copy_reference")}
    figs = evaluate_methods(ms, data_root)
    summ = summarize(figs)
    print("\n".join(format_summary(summ)))
    return figs, summ


@pytest.mark.slow
def test_demo_model_beats_references_on_mlmd(figures):
    figs, summ = figures
    for name in summ:  # every held-out clip counted, none dropped
        assert summ[name]["M-LMD_clips"] == summ[name]["clips"] == 5, (name, figs[name])
    assert summ["realtalk"]["M-LMD"] < summ["static_frame"]["M-LMD"]
    assert summ["realtalk"]["M-LMD"] < summ["copy_reference"]["M-LMD"]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 14 item 5 not met yet: mean mouth-opening r 0.323 on the shipped "
                   "checkpoint (4-seed phones+logmel A2E ensemble; 0.220 with the earlier single log-mel A2E); its A2E "
                   "reaches r 0.388 against the fitted expressions (renderer ceiling 0.899, "
                   "tests/benchmarks/a2e_mouth_diagnostic.py; README 'The RealTalk demo checkpoint'); strict: passing "
                   "means update it")
def test_demo_model_mouth_opening_follows_ground_truth(figures):
    figs, summ = figures
    r = [c["mouth_r"] for c in figs["realtalk"].values()]
    assert np.isfinite(r).all(), r
    assert summ["realtalk"]["mouth_r"] >= 0.5, f"mean mouth-opening r {summ['realtalk']['mouth_r']:.3f} per clip {r}"


def test_shipped_checkpoint_pinned_and_records_its_train_commands(tmp_path):
    import torch

    from harness.core.errors import WeightsMissingError
    from realtalk.demo_checkpoint import SHIPPED, check_shipped, demo_checkpoint_path

    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} absent")
    assert demo_checkpoint_path() == check_shipped() == SHIPPED
    assert SHIPPED.stat().st_size <= 30 * 2 ** 20
    ck = torch.load(SHIPPED, map_location="cpu", weights_only=False)
    cmds = ck["train_commands"]
    assert cmds["a2e"].startswith("realtalk-bench train a2e ") and cmds["renderer"].startswith("realtalk-bench train renderer ")
    assert ck["config"]["renderer"]["output"] == "warp_residual"
    from realtalk.demo_checkpoint import DEMO_FEATURES

    from realtalk.audio_features import get_featurizer

    # the tokens it was trained on are the ones inference builds, and its command says so
    assert ck["featurizer"] == DEMO_FEATURES and ck["config"]["a2e"]["audio_dim"] == get_featurizer(DEMO_FEATURES).dim
    assert f"--features {DEMO_FEATURES}" in cmds["a2e"] or (DEMO_FEATURES == "logmel" and "--features" not in cmds["a2e"])
    # its A2E is the seed ensemble its command trained, and the members it names are the ones stored
    from realtalk.a2e_ensemble import ensemble_size
    from realtalk.demo_checkpoint import DEMO_ENSEMBLE

    assert f"--ensemble {DEMO_ENSEMBLE}" in cmds["a2e"] and ensemble_size(ck["a2e"]) == DEMO_ENSEMBLE
    assert len(ck["a2e_ensemble"]["seeds"]) == DEMO_ENSEMBLE == len(set(ck["a2e_ensemble"]["seeds"]))
    bad = tmp_path / "changed.pt"
    bad.write_bytes(SHIPPED.read_bytes()[:-1] + b"x")
    with pytest.raises(WeightsMissingError, match="changed.pt: sha256"):
        check_shipped(bad)


def test_mouth_opening_and_pearson_known_answers():
    from harness.demo_figures import mouth_opening, pearson

    lm = np.zeros((12, 68, 2))
    gap = np.arange(12, dtype=float)
    for a, b in ((61, 67), (62, 66), (63, 65)):
        lm[:, b, 1] = gap  # lower inner lip `gap` px below the upper one
    assert np.allclose(mouth_opening(lm), gap)
    assert abs(pearson(gap, 2 * gap + 1) - 1) < 1e-12 and abs(pearson(gap, -gap) + 1) < 1e-12
    assert np.isnan(pearson(gap, np.ones(12)))  # no variation: no correlation, never 0 by construction
    lm[3] = np.nan
    assert np.isnan(mouth_opening(lm)[3]) and abs(pearson(mouth_opening(lm), gap) - 1) < 1e-12
    assert np.isnan(pearson(gap[:5], gap[:5]))  # fewer than MIN_FRAMES frames: not reported


def test_a2e_diagnostic_lag_known_answers():
    """tests/benchmarks/a2e_mouth_diagnostic.py's lag search: a copy delayed by k frames peaks at lag k."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent / "benchmarks" / "a2e_mouth_diagnostic.py"
    spec = importlib.util.spec_from_file_location("a2e_mouth_diagnostic", path)
    diag = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diag)
    ref = np.random.default_rng(0).standard_normal(100)
    for k in (-3, 0, 2):
        pred = np.roll(ref, k)  # pred[t + k] = ref[t]: the prediction shows frame t's mouth k frames late
        r = {lag: diag.lagged_r(pred, ref, lag) for lag in diag.LAGS}
        assert max(r, key=r.get) == k and abs(r[k] - 1) < 1e-12, r
