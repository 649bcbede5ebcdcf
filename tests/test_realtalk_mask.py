"""The 3D-prior lower-face mask on a real frame, and the naive lower-half ablation."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from realtalk.face_models import load_default_face_model
from realtalk.mask import compose, lower_face_mask, naive_lower_half_mask


def _real_frame(data_root):
    from harness.core.faces.clip import landmarks_on_crops

    img = cv2.cvtColor(cv2.imread(str(data_root / "styletalk/image/Obama_clip1.png")), cv2.COLOR_BGR2RGB)
    lm = landmarks_on_crops(img[None])
    assert np.isfinite(lm).all(), "dlib found no face in the styletalk Obama frame"
    return img, lm


def _generated(mask: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """True where the landmark's pixel is in the generated region (mask == 0)."""
    ij = np.clip(np.round(pts).astype(int), 0, mask.shape[-1] - 1)
    return mask[ij[:, 1], ij[:, 0]] == 0


def test_mask_covers_mouth_and_jaw_not_eyes(data_root, tmp_path) -> None:
    from realtalk.coefficients import fit_landmarks

    img, lm = _real_frame(data_root)
    m = load_default_face_model()
    c = fit_landmarks(lm, m, smooth=1)
    mask = lower_face_mask(m, torch.from_numpy(c.alpha), torch.from_numpy(c.beta), torch.from_numpy(c.rho), 256)
    assert mask.shape == (1, 1, 256, 256) and mask.dtype == torch.float32
    assert set(np.unique(mask.numpy())) == {0.0, 1.0}
    g = mask[0, 0].numpy()
    pts = lm[0]
    assert _generated(g, pts[48:68]).all(), "mouth not covered"
    assert _generated(g, pts[3:14]).all(), "jaw not covered"
    assert not _generated(g, pts[36:48]).any(), "an eye point is in the generated region"
    assert (g[:100] == 1).all() or not _generated(g, pts[17:27]).any()  # brows always kept
    overlay = img.copy()
    overlay[g == 0] = (0.5 * overlay[g == 0] + [127, 0, 0]).astype(np.uint8)
    for x, y in pts:
        cv2.circle(overlay, (int(x), int(y)), 1, (0, 255, 0), -1)
    out = tmp_path / "mask_overlay.png"
    cv2.imwrite(str(out), overlay[..., ::-1])
    assert out.stat().st_size > 0
    # masked source / composition
    src = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    gen = torch.zeros_like(src)
    out_img = compose(src, gen, mask)
    assert torch.equal(out_img[mask.expand_as(src) == 1], src[mask.expand_as(src) == 1])


def test_mask_batch_follows_predicted_expression() -> None:
    m = load_default_face_model()
    alpha = torch.zeros(m.n_id)  # one clip's identity broadcast over the batch
    beta = torch.zeros(3, m.n_exp)
    beta[1, 0], beta[2, 0] = 2.0, 4.0  # mouth opening: the chin drops, the region grows
    rho = torch.tensor([[0.0, 0.0, 0.0, 128.0, 120.0, float(np.log(55.0))]]).expand(3, -1)
    mask = lower_face_mask(m, alpha, beta, rho, 256)
    area = (mask == 0).sum(dim=(1, 2, 3)).tolist()
    assert mask.shape == (3, 1, 256, 256) and area[0] < area[1] < area[2]
    small = lower_face_mask(m, alpha, beta, rho.clone() * torch.tensor([1, 1, 1, 0.5, 0.5, 1]), 128)
    assert small.shape == (3, 1, 128, 128)


def test_naive_lower_half_mask() -> None:
    m = naive_lower_half_mask(2, 256)
    assert m.shape == (2, 1, 256, 256)
    assert m[:, :, :128].eq(1).all() and m[:, :, 128:].eq(0).all()


def test_region_mask_picks_the_configured_mask() -> None:
    from realtalk.mask import region_mask

    m = load_default_face_model()
    alpha = torch.zeros(m.n_id)
    beta = torch.zeros(3, m.n_exp)
    beta[1, 0] = 3.0
    rho = torch.tensor([[0.0, 0.0, 0.0, 128.0, 120.0, float(np.log(55.0))]]).expand(3, -1)
    naive = region_mask("naive", m, alpha, beta, rho, 256)
    assert torch.equal(naive, naive_lower_half_mask(3, 256))
    learn = region_mask("learnable", m, alpha, beta, rho, 256)
    assert torch.equal(learn, lower_face_mask(m, alpha, beta, rho, 256))
    assert (learn == 0).any() and not torch.equal(learn, naive)  # the face's region, not the lower half
    import pytest

    with pytest.raises(ValueError, match="unknown mask"):
        region_mask("upper", m, alpha, beta, rho, 64)
