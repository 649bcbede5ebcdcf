"""FAN's fast path (harness.core.faces.landmarks: BN folded into the convs, channels_last, faces and their flipped
copies batched in one call) against the network as face-alignment loads it, run the way FANLandmarker used to
(one face per call, the flipped copy in a second call).

The real 2DFAN4 file cannot be had offline: a random FAN(4) state dict in the official format (torch.save'd,
face-alignment's key names), with random BatchNorm statistics and affine parameters so the fold is really
exercised (default-initialised BNs are identities and would fold trivially), goes through the real loader.
Real face crops (styletalk clip, 256x256) with the crop framing's prior box, as landmarks_on_crops feeds FAN.

Tolerance, derived from the computation: both paths are fp32 evaluations of the same function, so each is
compared with the float64 evaluation of the unfolded network; the fast path's error must stay within 2x the
reference path's own fp32 rounding error (a different summation order or a rounded fold may double it; a wrong
fold, layout or flip would be off by orders of magnitude). Landmarks come from an argmax and the signs of
neighbour differences, so they must be identical wherever the reference heatmap decides them by more than
that error bound (and that must be most points, or the test proves nothing).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _metric_media import styletalk_crops

N_FRAMES = 2  # FAN(4) is ~50 GFLOP per 256x256 input: 2 faces x (flip) x (fp32 ref, fast, float64) in ~20 s


@pytest.fixture
def torch_one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core machine: 2 threads were ~10x slower (tests/test_faces.py)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def random_fan_file(tmp_path_factory):
    """A FAN(4) state dict with random weights AND random BN statistics, saved under the official file name."""
    from face_alignment.models import FAN

    from harness.core import weights

    torch.manual_seed(0)
    net = FAN(4)
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=g))
    path = tmp_path_factory.mktemp("fan") / weights.REGISTRY["fan_2d_pth"].filename
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def crops(data_root):
    return styletalk_crops(data_root, "Obama_clip1", n=40)[::20][:N_FRAMES].copy()


def _reference_heatmaps(net, x: torch.Tensor) -> torch.Tensor:
    """FANLandmarker's former per-face code: net(x)[-1] + flip(net(flip(x))[-1], is_label=True)."""
    from face_alignment.utils import flip

    out = net(x)[-1]
    return out + flip(net(flip(x))[-1], is_label=True)


def _inputs(crops: np.ndarray):
    from harness.core.faces.clip import prior_box
    from harness.core.faces.landmarks import _fan_crop_input

    box = prior_box(crops.shape[1])
    prep = [_fan_crop_input(c, box) for c in crops]
    return torch.from_numpy(np.stack([p[0] for p in prep])), prep, box


def _decided(h: np.ndarray, bound: float) -> np.ndarray:
    """[68] bool: points whose argmax (top-2 gap) and quarter-pixel steps (neighbour differences) in the
    heatmaps h [68,64,64] are decided by more than 2 * bound, so no rounding within the bound can change them."""
    flat = h.reshape(68, -1)
    top2 = np.sort(flat, axis=1)[:, -2:]
    py, px = np.divmod(flat.argmax(axis=1), 64)
    inner = (px > 0) & (px < 63) & (py > 0) & (py < 63)
    j = np.arange(68)
    dx = np.where(inner, h[j, py, np.clip(px + 1, 0, 63)] - h[j, py, np.clip(px - 1, 0, 63)], np.inf)
    dy = np.where(inner, h[j, np.clip(py + 1, 0, 63), px] - h[j, np.clip(py - 1, 0, 63), px], np.inf)
    return ((top2[:, 1] - top2[:, 0]) > 2 * bound) & (np.abs(dx) > 2 * bound) & (np.abs(dy) > 2 * bound)


def test_fast_fan_equals_the_unfolded_network_within_fp32_rounding(random_fan_file, crops, torch_one_thread):
    from face_alignment.utils import get_preds_fromhm

    from harness.core.faces.landmarks import FANLandmarker, _load_fan_state_dict

    fast = FANLandmarker(path=random_fan_file)
    assert fast.fast and isinstance(fast._net.bn1, torch.nn.Identity)  # the fold really happened
    ref_net = _load_fan_state_dict(random_fan_file, "cpu")
    x, prep, box = _inputs(crops)
    with torch.inference_mode():
        ref = torch.cat([_reference_heatmaps(ref_net, x[i:i + 1]) for i in range(len(x))]).double()
        exact = _reference_heatmaps(ref_net.double(), x.double())
    got = fast.heatmaps(x).double()  # all faces and their flipped copies in one call
    err_ref = (ref - exact).abs().max().item()
    err_fast = (got - exact).abs().max().item()
    scale = exact.abs().max().item()
    print(f"max |ref fp32 - float64| {err_ref:.3g}, max |fast - float64| {err_fast:.3g}, heatmap scale {scale:.3g}")
    assert 0 < err_ref < 1e-4 * scale  # fp32 rounds, at fp32's scale
    assert err_fast <= 2 * err_ref

    # landmarks: identical wherever the reference heatmap decides them by more than the bound
    bound = 2 * err_ref + err_fast
    pts_fast = fast.landmarks_batch(list(crops), [box] * len(crops))
    hm = ref.float().numpy()
    decided = total = 0
    for i, (_, center, sc) in enumerate(prep):
        _, pts_ref, _ = get_preds_fromhm(hm[i:i + 1], center, sc)
        pts_ref = np.asarray(pts_ref, np.float32).reshape(68, 2)
        ok = _decided(hm[i], bound)
        decided += int(ok.sum())
        total += 68
        np.testing.assert_array_equal(pts_fast[i][ok], pts_ref[ok])
    print(f"{decided}/{total} landmarks decided beyond the bound, all identical")
    assert decided >= total // 2


def test_flip_input_off_runs_one_pass_per_face(random_fan_file, crops, torch_one_thread):
    """flip_input=False: the heatmaps are net(x) alone (face-alignment's flip_input=False), batched."""
    from harness.core.faces.landmarks import FANLandmarker, _load_fan_state_dict

    fast = FANLandmarker(path=random_fan_file, flip_input=False)
    ref_net = _load_fan_state_dict(random_fan_file, "cpu")
    x, _, _ = _inputs(crops[:1])
    with torch.inference_mode():
        ref = ref_net(x)[-1].double()
        flipped = _reference_heatmaps(ref_net, x).double()
        exact = ref_net.double()(x.double())[-1]  # .double() converts the module in place: last
    got = fast.heatmaps(x).double()
    err_ref = (ref - exact).abs().max().item()
    assert (got - exact).abs().max().item() <= 2 * err_ref
    assert (flipped - got).abs().max().item() > 1e3 * err_ref  # the flip pass really is left out


def test_landmarks_batch_skips_missing_boxes_and_matches_single_calls(random_fan_file, crops, torch_one_thread):
    """None / nan boxes give None in place; a batch gives the single-face answers (same decided points)."""
    from harness.core.faces.clip import landmarks_on_crops, prior_box
    from harness.core.faces.landmarks import FANLandmarker

    fan = FANLandmarker(path=random_fan_file, batch_size=4)
    box = prior_box(crops.shape[1])
    nan = np.full(4, np.nan, np.float32)
    out = fan.landmarks_batch([crops[0], crops[0], crops[1], crops[0]], [box, nan, box, None])
    assert out[1] is None and out[3] is None and out[0].shape == out[2].shape == (68, 2)
    single = fan.landmarks(crops[0], box)
    x, _, _ = _inputs(crops)
    one, both = fan.heatmaps(x[:1])[0].numpy(), fan.heatmaps(x)[0].numpy()
    ok = _decided(one, float(np.abs(one - both).max()))  # batch size changes only fp32 rounding
    assert ok.sum() >= 34
    np.testing.assert_array_equal(single[ok], out[0][ok])  # batch of 2 vs alone
    # landmarks_on_crops hands all boxes to landmarks_batch at once (one batched pass, not a loop of calls)
    seen = []
    real = fan.landmarks_batch
    fan.landmarks_batch = lambda fs, bs: seen.append(len(bs)) or real(fs, bs)  # type: ignore[method-assign]
    lms = landmarks_on_crops(crops[:1], fan, boxes=np.stack([box]))
    assert seen == [1] and np.isfinite(lms).all()


def test_default_batch_follows_the_thread_count(random_fan_file):
    """Without batch_size: FAN_CPU_BATCH faces per call at one CPU thread (measured faster there), FAN_BATCH with
    more threads, resolved when called (a pool worker sets its threads after building); an explicit size wins."""
    from harness.core.faces.landmarks import FAN_BATCH, FAN_CPU_BATCH, FANLandmarker

    fan, fixed = FANLandmarker(path=random_fan_file), FANLandmarker(path=random_fan_file, batch_size=3)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert (fan.batch_size, fixed.batch_size) == (FAN_CPU_BATCH, 3)
        torch.set_num_threads(2)
        assert (fan.batch_size, fixed.batch_size) == (FAN_BATCH, 3)
    finally:
        torch.set_num_threads(n)
    assert FAN_CPU_BATCH != FAN_BATCH
