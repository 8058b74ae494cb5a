"""EDM preconditioning and loss against hand-computed values and diffusers' SVD sampler."""

import math

import pytest
import torch

from lavit.detokenizer.components import load_scheduler
from lavit.detokenizer.edm import edm_loss_weight, edm_scalings, sample_sigmas


@pytest.mark.parametrize(
    "sigma, c_skip, c_out, c_in, weight",
    [
        (1.0, 0.5, -1 / math.sqrt(2), 1 / math.sqrt(2), 2.0),
        (2.0, 0.2, -2 / math.sqrt(5), 1 / math.sqrt(5), 1.25),
        (0.5, 0.8, -0.5 / math.sqrt(1.25), 1 / math.sqrt(1.25), 5.0),
        (10.0, 1 / 101, -10 / math.sqrt(101), 1 / math.sqrt(101), 1.01),
    ],
)
def test_scalings_and_weight_by_hand(sigma, c_skip, c_out, c_in, weight):
    s = edm_scalings(torch.tensor(sigma, dtype=torch.float64))
    assert s.c_skip.item() == pytest.approx(c_skip, rel=1e-12)
    assert s.c_out.item() == pytest.approx(c_out, rel=1e-12)
    assert s.c_in.item() == pytest.approx(c_in, rel=1e-12)
    assert s.c_noise.item() == pytest.approx(0.25 * math.log(sigma), abs=1e-12)
    assert edm_loss_weight(torch.tensor(sigma, dtype=torch.float64)).item() == pytest.approx(weight, rel=1e-12)


def test_sigma_data_enters_as_in_karras():
    s = edm_scalings(torch.tensor(1.0, dtype=torch.float64), sigma_data=0.5)
    assert s.c_skip.item() == pytest.approx(0.25 / 1.25)
    assert s.c_out.item() == pytest.approx(-0.5 / math.sqrt(1.25))
    assert edm_loss_weight(torch.tensor(1.0, dtype=torch.float64), 0.5).item() == pytest.approx(1.25 / 0.25)


def test_svd_scheduler_applies_the_same_preconditioning():
    """What the sampler does at each of 25 steps equals c_in, c_noise and c_skip * x + c_out * F."""
    scheduler = load_scheduler()  # SVD-xt's config (tests/detokenizer/test_components.py checks it is the published one)
    scheduler.set_timesteps(25)
    g = torch.Generator().manual_seed(0)
    for i, t in enumerate(scheduler.timesteps[:-1]):
        sigma = scheduler.sigmas[i].double()
        s = edm_scalings(sigma)
        x = torch.randn(3, 4, generator=g, dtype=torch.float64)
        f = torch.randn(3, 4, generator=g, dtype=torch.float64)
        assert float(t) == pytest.approx(s.c_noise.item(), abs=1e-5)
        scaled = scheduler.scale_model_input(x, t)
        torch.testing.assert_close(scaled, x * s.c_in, rtol=1e-6, atol=1e-6)
        scheduler._step_index = i
        out = scheduler.step(f, t, x)
        torch.testing.assert_close(out.pred_original_sample, s.c_skip * x + s.c_out * f, rtol=1e-5, atol=1e-6)


def test_training_sigmas_are_log_normal():
    g = torch.Generator().manual_seed(0)
    log_sigma = sample_sigmas(200_000, 1.0, 1.2, g).log()
    assert log_sigma.mean().item() == pytest.approx(1.0, abs=0.01)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.01)
    again = sample_sigmas(5, 1.0, 1.2, torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, sample_sigmas(5, 1.0, 1.2, torch.Generator().manual_seed(3)))
