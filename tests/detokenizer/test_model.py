"""VideoDetokenizerConfig validation and the EDM training loss of VideoDetokenizerModel."""

import pytest
import torch

from lavit.detokenizer.config import VideoDetokenizerConfig
from lavit.detokenizer.edm import edm_loss_weight, edm_scalings
from lavit.detokenizer.model import VideoDetokenizerModel


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VideoDetokenizerModel("tiny").eval()


def _inputs(model, b=2, t=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config.latent_channels
    latents = torch.randn(b, t, c, h, w, generator=g)
    motion = model.motion_condition(torch.randn(b, 2, t, 20, 36, generator=g), (h, w))
    return latents, latents[:, 0].clone(), motion


def test_presets_are_consistent_and_round_trip():
    for name in ("paper", "tiny", "demo"):
        config = VideoDetokenizerConfig.from_name(name)
        assert VideoDetokenizerConfig.from_dict(config.to_dict()) == config
    paper = VideoDetokenizerConfig()
    assert paper.unet["in_channels"] == 10 and paper.motion_encoder.out_channels == 1024


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(unet="tiny"), "cross_attention_dim"),
        (dict(latent_channels=3), "unet.in_channels"),
        (dict(unconditional_dropout=1.5), "unconditional_dropout"),
        (dict(motion_encoder=dict(grid=(8, 8))), "motion_encoder.grid"),
    ],
)
def test_inconsistent_config_names_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        VideoDetokenizerConfig(**changes)


def test_motion_condition_is_bicubic_and_scaled(model):
    motion = torch.randn(1, 2, 2, 20, 36)
    out = model.motion_condition(motion, (8, 12))
    frame = torch.nn.functional.interpolate(motion[:, :, 1], size=(8, 12), mode="bicubic", align_corners=False)
    torch.testing.assert_close(out[:, :, 1], frame / 10.0)
    with pytest.raises(ValueError, match=r"\(B, 2, T, H, W\)"):
        model.motion_condition(torch.randn(1, 3, 2, 20, 36), (8, 8))


def test_denoise_applies_the_preconditioning(model):
    latents, keyframe, motion = _inputs(model)
    sigma = torch.tensor([0.7, 3.0])
    noisy = latents + sigma.view(-1, 1, 1, 1, 1) * torch.randn_like(latents)
    with torch.no_grad():
        denoised = model.denoise(noisy, sigma, keyframe, motion)
        s = edm_scalings(sigma.view(-1, 1, 1, 1, 1))
        sample = model.unet_input(noisy * s.c_in, keyframe, motion)
        f = model.unet(sample, s.c_noise.flatten(), model.motion_encoder.encode(motion), model.added_time_ids(2)).sample
    torch.testing.assert_close(denoised, s.c_skip * noisy + s.c_out * f, rtol=1e-5, atol=1e-5)


def test_loss_is_weighted_mse_and_seeded(model):
    latents, keyframe, motion = _inputs(model)
    with torch.no_grad():
        a = model.loss(latents, keyframe, motion, generator=torch.Generator().manual_seed(1))
        b = model.loss(latents, keyframe, motion, generator=torch.Generator().manual_seed(1))
        c = model.loss(latents, keyframe, motion, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.loss, b.loss)
    assert not torch.allclose(a.loss, c.loss)
    mse = (a.denoised - latents).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(a.loss, edm_loss_weight(a.sigma) * mse)


def test_condition_dropout_rates_and_unconditional_branch():
    model = VideoDetokenizerModel(VideoDetokenizerConfig.from_name(
        "tiny", keyframe_latent_dropout=0.2, motion_channel_dropout=0.3, motion_feature_dropout=0.0, unconditional_dropout=0.1))
    n = 20_000
    ones = torch.ones(n, 1)
    kept = model.drop_conditions(ones, ones, ones, torch.Generator().manual_seed(0))
    dropped = [1 - k.mean().item() for k in kept]
    # P(dropped) = 1 - (1 - rate) * (1 - unconditional)
    for value, rate in zip(dropped, (0.2, 0.3, 0.0)):
        assert value == pytest.approx(1 - (1 - rate) * 0.9, abs=0.01)
    all_three = ((kept[0] == 0) & (kept[1] == 0) & (kept[2] == 0)).float().mean().item()
    assert all_three == pytest.approx(0.1, abs=0.01)  # feature dropout is 0: only the unconditional branch drops it


def test_gradients_reach_the_motion_encoder(model):
    latents, keyframe, motion = _inputs(model)
    model.zero_grad()
    model.loss(latents, keyframe, motion, generator=torch.Generator().manual_seed(0), drop_conditions=False).loss.mean().backward()
    assert model.motion_encoder.in_proj.weight.grad.abs().sum() > 0
    assert model.unet.conv_in.weight.grad.abs().sum() > 0


def test_keyframe_residual_denoises_around_the_keyframe():
    """``D(x) = k + c_skip (x - k) + c_out F``: with F = 0 (zeroed conv_out) the hand value; at sigma 80 that is k."""
    torch.manual_seed(0)
    model = VideoDetokenizerModel(VideoDetokenizerConfig.from_name("demo", keyframe_residual=True)).eval()
    torch.nn.init.zeros_(model.unet.conv_out.weight)
    torch.nn.init.zeros_(model.unet.conv_out.bias)
    latents, keyframe, motion = _inputs(model, h=16, w=16)
    sigma = torch.tensor([0.5, 80.0])
    noisy = latents + sigma.view(-1, 1, 1, 1, 1) * torch.randn_like(latents)
    k = keyframe.unsqueeze(1)
    with torch.no_grad():
        denoised = model.denoise(noisy, sigma, keyframe, motion, anchor=keyframe)
    c_skip = 1.0 / (sigma**2 + 1.0)
    torch.testing.assert_close(denoised, k + c_skip.view(-1, 1, 1, 1, 1) * (noisy - k))
    assert (denoised[1] - k[1]).abs().max() < 0.05  # an untrained U-Net already copies the keyframe
    with pytest.raises(ValueError, match=r"keyframe_residual needs anchor, the \(B, c, h, w\) = \(2, 3, 16, 16\)"):
        model.denoise(noisy, sigma, keyframe, motion)
    # the training loss anchors at frame 0 of the clip: a clip that repeats its keyframe is denoised exactly at sigma 80
    still = k.expand_as(latents).clone()
    with torch.no_grad():
        out = model.loss(still, keyframe, motion, sigma=torch.tensor([80.0, 80.0]), noise=torch.zeros_like(still), drop_conditions=False)
    assert out.loss.max() < 1e-10
