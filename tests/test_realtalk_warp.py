"""Landmark-driven warp prior (ours): identity when the landmarks agree, follows a landmark shift, and on a
real clip the first crop warped to frame t's fitted expression and pose matches frame t's lower face better
than the unwarped first crop."""
from __future__ import annotations

import numpy as np
import torch

from realtalk.warp import landmark_flow, warp_image


def test_identity_and_shift():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 64, 64, generator=g)
    pts = torch.rand(1, 20, 2, generator=g) * 40 + 12
    same = warp_image(img, landmark_flow(pts, pts, 64))
    # sampling exactly at pixel centres: bilinear weights are 1/0 up to fp32 rounding of the grid maths
    assert (same - img).abs().max() < 1e-4
    shifted = warp_image(img, landmark_flow(pts + torch.tensor([3.0, 0.0]), pts, 64, sigma=30.0))
    # with a wide kernel the whole central region samples 3 px to the right
    assert (shifted[..., 20:44, 20:41] - img[..., 20:44, 23:44]).abs().max() < 0.05


def test_warp_to_target_expression_on_real_clip(data_root):
    """dlib (the LMD metric's landmarker) on the first crop warped to the frame whose mouth differs most:
    its mouth shape is nearer that frame's than the unwarped first crop's is."""
    from harness.demo_figures import mouth_opening
    from harness.core.faces.clip import clip_faces, landmarks_on_crops
    from harness.core.media import read_video
    from realtalk.coefficients import clip_coefficients
    from realtalk.data import to_image
    from realtalk.face_models import load_default_face_model
    from realtalk.inference import to_uint8
    from realtalk.warp import warp_reference

    video = read_video(data_root / "styletalk/video/Obama_clip1.mp4", fps=25.0, max_frames=75)
    faces = clip_faces(video)
    fm = load_default_face_model()
    co = clip_coefficients(faces, fm)
    crops = to_image(faces.crops)
    alpha = torch.as_tensor(co.alpha).float()[None]
    beta, rho = torch.as_tensor(co.beta).float(), torch.as_tensor(co.rho).float()
    t = int(torch.argmax((beta[:, 0] - beta[0, 0]).abs()))  # beta0 is the opening mode (test_realtalk_face_model)
    warped = warp_reference(fm, crops[:1], alpha, beta[:1], rho[:1], beta[t:t + 1], rho[t:t + 1])
    assert np.isfinite(warped.numpy()).all()
    lm = landmarks_on_crops(np.concatenate([to_uint8(warped), faces.crops[[0, t]]]), "dlib")
    mouth = lm[:, 48:] - lm[:, 48:].mean(1, keepdims=True)
    err_w = np.linalg.norm(mouth[0] - mouth[2], axis=1).mean()
    err_0 = np.linalg.norm(mouth[1] - mouth[2], axis=1).mean()
    op = mouth_opening(lm)
    print(f"frame {t}: mouth error warped {err_w:.2f} px vs first crop {err_0:.2f}; opening {op.round(1)}")
    assert err_w < err_0
    assert abs(op[0] - op[2]) < abs(op[1] - op[2])


def _dense_flow64(ref_pts: torch.Tensor, tgt_pts: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """The warp's definition evaluated directly in float64: the [B,HW,K] Gaussian kernel, no factorisation."""
    from realtalk.warp import EPS

    c = torch.arange(size, dtype=torch.float64) + 0.5
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    p = torch.stack([xs, ys], -1).reshape(1, -1, 1, 2)
    t, r = tgt_pts.double()[:, None], ref_pts.double()
    g = torch.exp(-((p - t) ** 2).sum(-1) / (2 * sigma * sigma))  # [B,HW,K]
    d = torch.bmm(g, r - tgt_pts.double()) / (g.sum(-1, keepdim=True) + EPS)
    return ((p[:, :, 0] + d) / size * 2 - 1).reshape(-1, size, size, 2)


def test_separable_flow_equals_the_dense_kernel():
    """landmark_flow factorises the Gaussian kernel (exp(-(dx^2+dy^2)) = exp(-dx^2) exp(-dy^2)). Against the
    dense float64 evaluation its error must be fp32 rounding: grid coordinates ~1 carry 6e-8 ulp-level error
    and the displacement sums of <= 68 terms a few ulp of the largest displacement (<= 20 px / 128 px per unit
    here), so 1e-5 in normalised units; a wrong factorisation would be off by the displacements (~0.1)."""
    from realtalk.warp import SIGMA_FRAC, landmark_flow

    g = torch.Generator().manual_seed(0)
    size, k = 96, 68
    tgt = torch.rand(2, k, 2, generator=g) * 60 + 18
    ref = tgt + (torch.rand(2, k, 2, generator=g) - 0.5) * 40
    got = landmark_flow(ref, tgt, size).double()
    want = _dense_flow64(ref, tgt, size, SIGMA_FRAC * size)
    disp = (want - _dense_flow64(tgt, tgt, size, SIGMA_FRAC * size)).abs().max().item()
    err = (got - want).abs().max().item()
    print(f"max |separable fp32 - dense fp64| {err:.3g} (normalised units); largest displacement {disp:.3g}")
    assert disp > 0.1  # the displacements are real, so a wrong kernel could not pass
    assert err < 1e-5


def test_kernel_factors_are_never_subnormal():
    """landmark_flow sets kernel factors below exp(-CUT) to 0, so its GEMMs never meet subnormal floats (an
    x86 GEMM slows ~20x on them). The flow is unchanged beyond fp32 rounding: a dropped factor weighs
    < e^-CUT = 4e-18, a displacement sum of 68 such terms over a denominator >= EPS moves d by < 68 * 4e-18 *
    |disp| / EPS px, ~1e-11 px here, far below the fp32 ulp of the coordinates (6e-8)."""
    from realtalk.warp import CUT, _gauss, landmark_flow

    tiny = torch.finfo(torch.float32).tiny
    dist = torch.linspace(-256, 256, 4097)
    g = _gauss(dist, 4.1)
    assert ((g == 0) | (g >= tiny)).all() and (g == 0).any()  # zeros where cut, normal floats elsewhere
    assert torch.equal(g[g > 0], torch.exp(-dist ** 2 / (2 * 4.1 ** 2))[g > 0])
    assert float(torch.exp(torch.tensor(-CUT))) >= tiny ** 0.5  # a product of two kept factors stays normal
    gen = torch.Generator().manual_seed(3)
    size = 256
    tgt = torch.rand(1, 68, 2, generator=gen) * 120 + 68
    ref = tgt + (torch.rand(1, 68, 2, generator=gen) - 0.5) * 20
    got = landmark_flow(ref, tgt, size).double()
    from realtalk.warp import SIGMA_FRAC

    want = _dense_flow64(ref, tgt, size, SIGMA_FRAC * size)
    assert got.shape == (1, size, size, 2) and (got - want).abs().max().item() < 1e-5
