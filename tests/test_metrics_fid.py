"""FID: the bundled TorchScript Inception equals pytorch-fid's InceptionV3 (same weights, loaded into
pytorch-fid's architecture), the Fréchet distance behaves (self ~0, grows with blur), batch-size independence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _metric_media import styletalk_crops
from harness.core import weights
from metrics.fid import _FEATURE_MEMO, FID, build_pytorch_fid_inception, inception_features, preprocess
from metrics.fid import torchscript_state_dict as torchscript_to_fid_inception_state_dict
from metrics.frechet import fid_from_features, frechet_distance, gaussian_stats


@pytest.fixture(scope="module")
def frames(data_root):
    """60 real 256x256 face crops spread over 6 s of a clip (every 3rd frame)."""
    return styletalk_crops(data_root, "Obama_clip1", n=180)[::3].copy()


@pytest.fixture(scope="module")
def gt_features(frames):
    return inception_features(frames, "fid-helper", batch_size=16)


def test_torchscript_equals_pytorch_fid_architecture(frames):
    path = weights.require("fid_inception_torchscript")
    ts = torch.jit.load(str(path), map_location="cpu").eval()
    ref = build_pytorch_fid_inception(torchscript_to_fid_inception_state_dict(ts))
    x = preprocess(frames[:8])
    with torch.inference_mode():
        a = ts(x).reshape(8, -1).numpy()
        b = ref(x)[0].reshape(8, -1).numpy()
    err = np.abs(a - b).max()
    print(f"max |torchscript - pytorch-fid| feature difference: {err:.3g} (feature scale {np.abs(b).max():.3g})")
    assert err < 1e-4


def test_fid_of_a_set_with_itself_is_zero(gt_features):
    assert abs(fid_from_features(gt_features, gt_features)) < 1e-3


def test_fid_grows_with_blur(frames, gt_features):
    import cv2

    values = []
    for sigma in (1.0, 2.5, 5.0):
        blurred = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])
        values.append(fid_from_features(gt_features, inception_features(blurred, "fid-helper", batch_size=16)))
    print("FID vs blur sigma 1, 2.5, 5:", values)
    assert 0 < values[0] < values[1] < values[2]


def test_features_do_not_depend_on_batch_size(frames):
    sub = frames[:7]
    feats = []
    for b in (1, 7, 32):
        _FEATURE_MEMO.clear()  # recompute: the memo would otherwise return the first batch's rows
        feats.append(inception_features(sub, "fid-helper", batch_size=b))
    f1, f7, f32 = feats
    assert np.abs(f1 - f7).max() < 1e-4 and np.abs(f7 - f32).max() < 1e-4


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    v1, v2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    expect = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expect, rel=1e-9)
    m, s = gaussian_stats(rng.normal(size=(50, 3)))
    assert m.dtype == np.float64 and s.shape == (3, 3)


def test_frechet_eigh_equals_pytorch_fid_sqrtm():
    """The default eigh trace equals pytorch-fid's sqrtm algorithm on full-rank and rank-deficient
    (fewer frames than feature dims, as in every per-split FID here) covariances."""
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(64, 64))
    for n in (400, 40):  # full rank, then rank 39 < 64
        a = rng.normal(size=(n, 64)) @ mix
        b = rng.normal(size=(n, 64)) @ (mix + 0.3 * rng.normal(size=(64, 64))) + 0.5
        m1, s1 = gaussian_stats(a)
        m2, s2 = gaussian_stats(b)
        ref = frechet_distance(m1, s1, m2, s2, method="sqrtm")
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="unknown"):
        frechet_distance(m1, s1, m2, s2, method="svd")


def test_metric_state_and_aggregate(frames):
    from metrics.base import ClipInput

    metric = FID(batch_size=16)
    assert metric.availability() == (True, "")
    p = metric.protocol()
    assert p.backend in ("pytorch-fid", "fid-helper") and p.weights_sha256
    st = metric.clip_state(ClipInput("c", generated=frames[:10], ground_truth=frames[:10]))
    assert st["generated"].shape == (10, 2048)
    assert abs(metric.aggregate([st])["FID"]) < 1e-3


def test_pytorch_fid_backend_loads_the_hub_file_offline(tmp_path, monkeypatch):
    """The pytorch-fid backend loads pt_inception-...pth from $TORCH_HOME (here: the TorchScript weights
    saved in pytorch-fid's format, marked unverified) and gives the same features as fid-helper."""
    ts = torch.jit.load(str(weights.require("fid_inception_torchscript")), map_location="cpu").eval()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(torchscript_to_fid_inception_state_dict(ts), hub / weights.REGISTRY["pytorch_fid_inception"].filename)
    assert weights.check("pytorch_fid_inception")[0] == "unverified"
    metric = FID()
    assert metric.backend == "pytorch-fid"
    assert metric.protocol().settings["weights_state"] == "unverified"
    x = np.random.default_rng(0).integers(0, 256, size=(2, 256, 256, 3), dtype=np.uint8)
    import metrics.fid as fid_mod

    monkeypatch.setattr(fid_mod, "_NETS", {})
    with pytest.warns(UserWarning, match="UNVERIFIED"):
        a = inception_features(x, "pytorch-fid")
    b = inception_features(x, "fid-helper")
    assert np.abs(a - b).max() < 1e-4


def test_identical_frames_are_computed_once(frames, monkeypatch):
    """Static frames and the shared reference set hit the content memo: one network row per distinct frame."""
    import metrics.fid as fid

    _FEATURE_MEMO.clear()
    calls = []
    real = fid.load_network("fid-helper")
    monkeypatch.setitem(fid._NETS, ("fid-helper", "cpu"), lambda x: calls.append(len(x)) or real(x))
    static = np.repeat(frames[:1], 12, axis=0)
    out = inception_features(static, "fid-helper", batch_size=4)
    assert sum(calls) == 1 and out.shape == (12, 2048) and np.all(out == out[0])
    again = inception_features(frames[:3], "fid-helper")
    assert sum(calls) == 3  # frame 0 was already known
    assert np.array_equal(again[0], out[0])


def test_negative_distance_reported_as_zero(gt_features, monkeypatch):
    """Float rounding can make a set against itself slightly negative (-7e-05 seen); FID reports 0.0."""
    import metrics.fid as fid

    metric = FID(backend="fid-helper")
    st = {"generated": gt_features[:20], "ground_truth": gt_features[:20]}
    raw = fid_from_features(gt_features[:20].astype(np.float64), gt_features[:20].astype(np.float64))
    assert metric.aggregate([st])["FID"] == max(0.0, raw)
    monkeypatch.setattr(fid, "fid_from_features", lambda a, b: -7e-05)
    assert metric.aggregate([st])["FID"] == 0.0
    monkeypatch.setattr(fid, "fid_from_features", lambda a, b: 3.25)
    assert metric.aggregate([st])["FID"] == 3.25
    assert "negative values from float rounding reported as 0" in metric.protocol().settings["negative"]


def test_config_resolves_backend():
    m = FID()
    assert m.config() == {"backend": m.backend} and m.backend in ("pytorch-fid", "fid-helper")
    assert FID(backend="auto").backend == m.backend
    assert FID(**m.config()).protocol() == m.protocol()
    with pytest.raises(ValueError, match="fid backend"):
        FID(backend="tf")


def test_inception_impls_equal_within_fp32_rounding(frames):
    """Each way metrics.fid can run the network (IMPLS: TorchScript, eager, eager channels_last, BN-folded
    channels_last) equals the float64 evaluation of the same network to within 2x the rounding error of the
    TorchScript path itself (the scale of fp32 rounding through 94 convs; a different summation order may double
    it, no more). The folded impl also rounds its folded weights to fp32 once: that effect is computed exactly
    (the float64 evaluation of the folded fp32 weights against the float64 unfolded network) and added to its
    bound (triangle inequality). A wrong layout, dtype, fold or weight mapping would be off by orders of
    magnitude more."""
    import copy

    import metrics.fid as fid

    ts = torch.jit.load(str(weights.require("fid_inception_torchscript")), map_location="cpu").eval()
    x = preprocess(frames[:4])
    with torch.inference_mode():
        exact = ts.double()(x.double()).reshape(4, -1)
        out = {impl: fid.load_network("fid-helper", impl=impl)(x).double() for impl in fid.IMPLS}
        folded64 = copy.deepcopy(fid.load_network("fid-helper", impl="folded-cl").module).double()
        fold_effect = (folded64(x.double())[0].reshape(4, -1) - exact).abs().max().item()
    err = {impl: (o - exact).abs().max().item() for impl, o in out.items()}
    diff = {impl: (o - out["torchscript"]).abs().max().item() for impl, o in out.items()}
    print(f"max |impl - float64|: {err}; max |impl - torchscript|: {diff}; fold rounding effect {fold_effect:.3g} "
          f"(feature scale {exact.abs().max():.3g})")
    assert 0 < err["torchscript"] < 1e-4  # fp32 does round; 1e-4 = the backends' agreement bound above
    for impl in fid.IMPLS:
        assert err[impl] <= 2 * err["torchscript"] + (fold_effect if impl == "folded-cl" else 0.0), impl
    assert fid.DEFAULT_IMPL["fid-helper"] == "folded-cl" and fid.fold_inception(copy.deepcopy(folded64)) == 0
    with pytest.raises(ValueError, match="impl"):
        fid.load_network("pytorch-fid", impl="torchscript")


def test_fold_inception_folds_every_basic_conv(frames):
    """94 BasicConv2d layers, each BN replaced by an identity; the feature cache key names the impl."""
    import metrics.fid as fid

    ts = torch.jit.load(str(weights.require("fid_inception_torchscript")), map_location="cpu").eval()
    net = build_pytorch_fid_inception(torchscript_to_fid_inception_state_dict(ts))
    assert fid.fold_inception(net) == 94
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert FID(backend="fid-helper").cache_fingerprint()["impl"] == "folded-cl"
