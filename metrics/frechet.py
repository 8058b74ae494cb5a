"""Fréchet distance between Gaussians, by the eigenvalue route (no ``scipy.linalg.sqrtm``).

``d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``. The product ``S1 S2`` of two
symmetric positive semi-definite matrices has real non-negative eigenvalues, the same as those of the
symmetric ``A = S1^(1/2) S2 S1^(1/2)``; so ``tr((S1 S2)^(1/2)) = sum(sqrt(eigvalsh(A)))``. Two
symmetric eigendecompositions are faster than a general matrix square root and stay finite for the
rank-deficient covariances of few samples (N < d), where ``sqrtm`` returns NaN / complex values.
"""

from __future__ import annotations

import torch

__all__ = ["frechet_distance", "gaussian_statistics", "statistics_from_sums"]


def _zero_roundoff(values: torch.Tensor) -> torch.Tensor:
    """Eigenvalues within round-off of zero (|v| <= d * eps * max|v|) set to 0.

    Covariances of N < d samples have d - N + 1 zero eigenvalues, which eigh returns as +-1e-16-ish
    noise; their square roots (1e-8) would otherwise add up to a visible, batch-order-dependent error.
    """
    tol = values.abs().max() * values.shape[-1] * torch.finfo(values.dtype).eps
    return torch.where(values > tol, values, torch.zeros_like(values))


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix (round-off eigenvalues zeroed)."""
    values, vectors = torch.linalg.eigh(sigma)
    return (vectors * _zero_roundoff(values).sqrt()) @ vectors.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """``tr((sigma1 @ sigma2)^(1/2))`` for symmetric PSD (d, d) matrices, in float64."""
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    inner = (inner + inner.T) / 2  # exact symmetry for eigvalsh
    return _zero_roundoff(torch.linalg.eigvalsh(inner)).sqrt().sum()


def frechet_distance(mu1, sigma1, mu2, sigma2) -> torch.Tensor:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1, mu2: (d,) means (tensors or arrays).
        sigma1, sigma2: (d, d) symmetric positive semi-definite covariances.

    Returns:
        float64 scalar tensor (on the inputs' device).

    Raises:
        ValueError: mismatched shapes, or non-finite inputs.
    """
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(x, dtype=torch.float64) for x in (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[-1] if mu1.ndim == 1 else None
    if d is None or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"expected mu (d,) and sigma (d, d) with one d, got mu1 {tuple(mu1.shape)}, sigma1 {tuple(sigma1.shape)}, "
            f"mu2 {tuple(mu2.shape)}, sigma2 {tuple(sigma2.shape)}"
        )
    for name, x in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} has non-finite values")
    diff = mu1 - mu2
    return diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2)


def statistics_from_sums(total: torch.Tensor, outer: torch.Tensor, count: int | torch.Tensor, unbiased: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance from the running sums kept by the Fréchet metrics.

    Args:
        total: (d,) sum of features.
        outer: (d, d) sum of outer products ``x x^T``.
        count: number of samples N (>= 2).
        unbiased: divide by N - 1 (TF / torch-fidelity / clean-fid) instead of N (StyleGAN-V).

    Returns:
        mu (d,), sigma (d, d), float64.
    """
    n = int(count)
    if n < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {n}")
    total, outer = total.double(), outer.double()
    mu = total / n
    sigma = (outer - n * torch.outer(mu, mu)) / (n - 1 if unbiased else n)
    return mu, (sigma + sigma.T) / 2


def gaussian_statistics(features: torch.Tensor, unbiased: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, d) features -> mean (d,) and covariance (d, d) in float64."""
    x = features.double()
    return statistics_from_sums(x.sum(0), x.T @ x, x.shape[0], unbiased)
