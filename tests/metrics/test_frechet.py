"""Fréchet distance (eigenvalue route) against two independent float64 references.

* scipy's ``sqrtm`` form (what pytorch-fid / StyleGAN-V compute) where it is finite;
* the exact low-rank identity ``tr((S1 S2)^(1/2)) = ||A B^T||_*`` for ``S1 = A^T A``, ``S2 = B^T B``
  (nuclear norm of an N1 x N2 matrix), which holds for any N, including N < d where ``sqrtm``
  is ill-conditioned or returns NaN.
"""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from metrics.frechet import frechet_distance, gaussian_statistics, statistics_from_sums


def _features(rng, n, d, shift=0.0):
    scale = rng.uniform(0.1, 3.0, d)
    mix = np.eye(d) + 0.1 * rng.standard_normal((d, d))
    return (rng.standard_normal((n, d)) * scale) @ mix + shift


def _scipy_reference(x, y):
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():
        return float("nan")
    return float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real)


def _nuclear_reference(x, y):
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    m1, m2 = x.mean(0), y.mean(0)
    tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float((m1 - m2) @ (m1 - m2) + (a * a).sum() + (b * b).sum() - 2 * tr_sqrt)


def _ours(x, y):
    m1, s1 = gaussian_statistics(torch.from_numpy(x))
    m2, s2 = gaussian_statistics(torch.from_numpy(y))
    return frechet_distance(m1, s1, m2, s2).item()


@pytest.mark.parametrize("n,d", [(2, 2), (50, 16), (3000, 64), (20000, 32), (600, 512)])
def test_matches_scipy_sqrtm(n, d):
    rng = np.random.default_rng(n * 7 + d)
    x, y = _features(rng, n, d), _features(rng, n, d, shift=0.3)
    ref = _scipy_reference(x, y)
    assert np.isfinite(ref)
    assert abs(_ours(x, y) - ref) <= 1e-6 * abs(ref)


@pytest.mark.parametrize("n1,n2,d", [(2, 2, 2), (2, 3, 64), (10, 12, 256), (64, 48, 2048), (300, 500, 128)])
def test_matches_exact_low_rank_identity(n1, n2, d):
    rng = np.random.default_rng(n1 + n2 + d)
    x, y = _features(rng, n1, d), _features(rng, n2, d, shift=-0.2)
    ref = _nuclear_reference(x, y)
    assert abs(_ours(x, y) - ref) <= 1e-6 * abs(ref)


def test_near_singular_where_sqrtm_fails_stays_exact():
    # rank-1 covariances in 64 dimensions (N = 2): scipy's sqrtm of the singular product is NaN or
    # inaccurate here; the eigenvalue route still equals the exact identity
    rng = np.random.default_rng(3)
    x, y = _features(rng, 2, 64), _features(rng, 2, 64, shift=1.0)
    with np.errstate(invalid="ignore"):
        naive = np.sqrt(np.linalg.eigvals(np.cov(x, rowvar=False) @ np.cov(y, rowvar=False)).real)
    assert np.isnan(naive).any()  # round-off makes some eigenvalues of the singular product negative
    ours, exact = _ours(x, y), _nuclear_reference(x, y)
    assert np.isfinite(ours)
    assert abs(ours - exact) <= 1e-6 * abs(exact)
    # duplicated feature columns: exactly singular covariances of full-rank data
    base = _features(rng, 500, 32)
    x = np.concatenate([base, base], axis=1)
    y = np.concatenate([base[::-1] * 1.1, base[::-1] * 1.1], axis=1) + 0.5
    assert abs(_ours(x, y) - _nuclear_reference(x, y)) <= 1e-6 * _nuclear_reference(x, y)


def test_identical_sets_give_zero_and_symmetry():
    rng = np.random.default_rng(4)
    x, y = _features(rng, 400, 128), _features(rng, 300, 128, shift=0.5)
    assert abs(_ours(x, x)) <= 1e-6
    assert _ours(x, y) == pytest.approx(_ours(y, x), rel=1e-9)


def test_statistics_from_sums_biased_and_unbiased():
    rng = np.random.default_rng(5)
    x = _features(rng, 37, 8)
    t = torch.from_numpy(x)
    mu, sigma = statistics_from_sums(t.sum(0), t.T @ t, len(x), unbiased=True)
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    _, biased = statistics_from_sums(t.sum(0), t.T @ t, len(x), unbiased=False)
    np.testing.assert_allclose(biased.numpy(), np.cov(x, rowvar=False, bias=True), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 samples"):
        statistics_from_sums(t[:1].sum(0), t[:1].T @ t[:1], 1)


def test_bad_shapes_and_values_raise():
    with pytest.raises(ValueError, match="sigma2 has non-finite"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError, match="expected mu"):
        frechet_distance(torch.zeros(3), torch.eye(4), torch.zeros(3), torch.eye(3))
