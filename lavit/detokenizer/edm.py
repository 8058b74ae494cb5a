"""The EDM objective of the video detokenizer, as SVD trains it (generative-models ``VScalingWithEDMcNoise``).

Karras et al. 2022 preconditioning with v-prediction: the denoiser is
``D(x; sigma) = c_skip * x + c_out * F(c_in * x; c_noise)`` with

- ``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``
- ``c_out = -sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)`` (the sign of v-prediction)
- ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``
- ``c_noise = 0.25 * ln(sigma)``

and the loss ``lambda(sigma) * ||D(x0 + sigma * n; sigma) - x0||^2`` with ``lambda = (sigma^2 + sigma_data^2) /
(sigma * sigma_data)^2`` and training sigmas ``ln(sigma) ~ N(p_mean, p_std^2)`` (SVD: 1.0, 1.2). With
``sigma_data = 1`` these are exactly what diffusers' ``EulerDiscreteScheduler`` (``prediction_type="v_prediction"``,
``timestep_type="continuous"``, SVD's scheduler config) applies when sampling: ``scale_model_input`` divides by
``sqrt(sigma^2 + 1)``, the timesteps are ``0.25 * ln(sigma)`` and ``step`` forms ``c_skip * x + c_out * F``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

SIGMA_DATA = 1.0
"""SVD's data standard deviation; the sampler's ``EulerDiscreteScheduler`` formulas assume 1."""


class EDMScalings(NamedTuple):
    """Preconditioning factors, each shaped like ``sigma``."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_scalings(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> EDMScalings:
    """``(c_skip, c_out, c_in, c_noise)`` of v-prediction EDM for noise levels ``sigma`` (any shape, > 0)."""
    total = sigma**2 + sigma_data**2
    return EDMScalings(
        c_skip=sigma_data**2 / total,
        c_out=-sigma * sigma_data / total.sqrt(),
        c_in=1.0 / total.sqrt(),
        c_noise=0.25 * sigma.log(),
    )


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM's ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2``: unit effective weight on ``F``."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_sigmas(
    n: int, p_mean: float = 1.0, p_std: float = 1.2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(n,)`` float32 training noise levels, ``ln(sigma) ~ N(p_mean, p_std^2)``, on the generator's device."""
    device = generator.device if generator is not None else None
    return (p_mean + p_std * torch.randn(n, generator=generator, device=device)).exp()
