"""The Gram-matrix Fréchet distance (metrics/frechet_gram.py) is the FID formula: a closed-form answer on
rank-deficient sets (fewer frames than feature dimensions, every clip's case), and pytorch-fid's sqrtm value
within the round-off that the D x D route itself carries there."""
from __future__ import annotations

import numpy as np
import pytest

from metrics.frechet import fid_from_features, frechet_distance, gaussian_stats
from metrics.frechet_gram import fid_gram

EPS = np.finfo(np.float64).eps


def test_scaled_copy_has_the_closed_form_answer():
    """f2 = c f1 + shift: S2 = c^2 S1, sqrt(S1 S2) = c S1, so FID = |shift + (c-1) mu1|^2 + (1-c)^2 Tr S1 exactly;
    60 frames of 512-d features (rank 59), far below full rank."""
    rng = np.random.default_rng(0)
    f1 = rng.gamma(2.0, 1.0, (60, 512))
    c, shift = 0.8, rng.normal(0, 0.1, 512)
    f2 = c * f1 + shift
    mu1, s1 = gaussian_stats(f1)
    dmu = mu1 - (c * mu1 + shift)
    expect = dmu.dot(dmu) + (1 - c) ** 2 * np.trace(s1)
    # one SVD of a 60 x 60 matrix plus sums over 60 x 512 products: a few hundred eps of the terms' size
    assert fid_gram(f1, f2) == pytest.approx(expect, rel=1e3 * EPS * 512, abs=0)
    assert fid_gram(f1, f1) == pytest.approx(0.0, abs=1e3 * EPS * 512 * np.trace(s1))
    assert fid_from_features(f1, f2) == fid_gram(f1, f2)  # the default path takes it (60 <= 512 rows)


@pytest.mark.parametrize("n1,n2,dim", [(40, 60, 256), (100, 100, 512)])
def test_equals_pytorch_fid_sqrtm_within_its_round_off(n1: int, n2: int, dim: int):
    """Against scipy sqrtm(S1 S2) (pytorch-fid): the D x D route takes square roots of the ~eps |S1||S2| round-off
    left in the D - rank zero eigenvalues, each up to sqrt(D eps |S1| |S2|); the bound is twice their sum."""
    rng = np.random.default_rng(n1 + n2)
    f1 = rng.gamma(2.0, 1.0, (n1, dim))
    f2 = rng.gamma(2.0, 1.1, (n2, dim))
    m1, s1 = gaussian_stats(f1)
    m2, s2 = gaussian_stats(f2)
    ref = frechet_distance(m1, s1, m2, s2, method="sqrtm")
    bound = 2 * dim * np.sqrt(dim * EPS * np.linalg.norm(s1, 2) * np.linalg.norm(s2, 2))
    got = fid_gram(f1, f2)
    assert abs(got - ref) <= bound


def test_more_rows_than_dimensions_keeps_the_covariance_route():
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(80, 16)), rng.normal(1.0, 1.2, size=(90, 16))
    m1, s1 = gaussian_stats(f1)
    m2, s2 = gaussian_stats(f2)
    assert fid_from_features(f1, f2) == frechet_distance(m1, s1, m2, s2)
    assert fid_gram(f1, f2) == pytest.approx(fid_from_features(f1, f2), rel=1e-9)  # the formula holds at any rank


def test_bad_shapes_say_so():
    with pytest.raises(ValueError, match="same D"):
        fid_gram(np.zeros((5, 4)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="N>=2"):
        fid_gram(np.zeros((1, 4)), np.zeros((5, 4)))
