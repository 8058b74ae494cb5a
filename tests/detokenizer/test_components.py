"""load_scheduler / load_vae against SVD's published scheduler config and real saved diffusers folders."""

import json
import math

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder, EDMEulerScheduler, EulerDiscreteScheduler

from lavit.detokenizer.autoencoder import PixelSpaceAutoencoder
from lavit.detokenizer.components import SVD_SCHEDULER_CONFIG, MissingComponentError, load_scheduler, load_vae

# stabilityai/stable-video-diffusion-img2vid-xt scheduler/scheduler_config.json, as published (less _diffusers_version)
SVD_SCHEDULER_JSON = """{
  "_class_name": "EulerDiscreteScheduler",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "interpolation_type": "linear",
  "num_train_timesteps": 1000,
  "prediction_type": "v_prediction",
  "sigma_max": 700.0,
  "sigma_min": 0.002,
  "steps_offset": 1,
  "timestep_spacing": "leading",
  "timestep_type": "continuous",
  "use_karras_sigmas": true
}"""


def test_builtin_scheduler_is_svds():
    published = json.loads(SVD_SCHEDULER_JSON)
    assert SVD_SCHEDULER_CONFIG == published
    scheduler = load_scheduler()
    assert type(scheduler) is EulerDiscreteScheduler
    assert {k: scheduler.config[k] for k in published if k != "_class_name"} == {k: v for k, v in published.items() if k != "_class_name"}
    scheduler.set_timesteps(25)
    sigmas = scheduler.sigmas
    # Karras schedule 700 -> 0.002 (rho 7), then 0; continuous timesteps = 0.25 ln sigma (EDM c_noise)
    assert math.isclose(float(sigmas[0]), 700.0, rel_tol=1e-5) and math.isclose(float(sigmas[-2]), 0.002, rel_tol=1e-4)
    assert float(sigmas[-1]) == 0.0
    ramp = torch.linspace(0, 1, 25, dtype=torch.float64)
    karras = (700.0 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 700.0 ** (1 / 7))) ** 7
    assert torch.allclose(sigmas[:-1].double(), karras, rtol=1e-5)
    assert torch.allclose(scheduler.timesteps.double(), 0.25 * karras.log(), atol=1e-5)


@pytest.mark.parametrize("layout", ["folder", "root"])
def test_scheduler_from_folder(tmp_path, layout):
    folder = tmp_path / "scheduler" if layout == "root" else tmp_path
    folder.mkdir(exist_ok=True)
    (folder / "scheduler_config.json").write_text(SVD_SCHEDULER_JSON)
    scheduler = load_scheduler(tmp_path)
    assert type(scheduler) is EulerDiscreteScheduler and scheduler.config.sigma_max == 700.0


def test_edm_euler_scheduler_accepted_when_v_prediction_and_sigma_data_one(tmp_path):
    EDMEulerScheduler(prediction_type="v_prediction", sigma_data=1.0, sigma_max=700.0).save_config(tmp_path)
    assert type(load_scheduler(tmp_path)) is EDMEulerScheduler
    EDMEulerScheduler(prediction_type="v_prediction", sigma_data=0.5).save_config(tmp_path)
    with pytest.raises(ValueError, match="sigma_data=0.5"):
        load_scheduler(tmp_path)


@pytest.mark.parametrize("change, message", [
    (dict(prediction_type="epsilon"), "prediction_type='epsilon'"),
    (dict(timestep_type="discrete"), "timestep_type='discrete'"),
    (dict(_class_name="DDIMScheduler"), "DDIMScheduler"),
])
def test_schedulers_without_the_edm_formulas_are_refused(tmp_path, change, message):
    (tmp_path / "scheduler_config.json").write_text(json.dumps({**SVD_SCHEDULER_CONFIG, **change}))
    with pytest.raises(ValueError, match=message):
        load_scheduler(tmp_path)


def test_missing_scheduler_names_the_path_and_the_source(tmp_path):
    with pytest.raises(MissingComponentError) as missing_folder:
        load_scheduler(tmp_path / "nowhere")
    assert isinstance(missing_folder.value, FileNotFoundError)
    assert str(tmp_path / "nowhere") in str(missing_folder.value)
    with pytest.raises(MissingComponentError) as missing_config:
        load_scheduler(tmp_path)
    message = str(missing_config.value)
    assert str(tmp_path / "scheduler_config.json") in message
    assert "stabilityai/stable-video-diffusion-img2vid-xt" in message and "rain1011/Video-LaVIT-v1" in message


def tiny_svd_vae():
    torch.manual_seed(0)
    return AutoencoderKLTemporalDecoder(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                                        latent_channels=4)


@pytest.mark.parametrize("layout", ["folder", "root"])
def test_load_vae_reads_a_saved_temporal_decoder(tmp_path, layout):
    vae = tiny_svd_vae()
    folder = tmp_path / "vae" if layout == "root" else tmp_path / "saved"
    vae.save_pretrained(folder)
    loaded = load_vae(tmp_path if layout == "root" else folder)
    assert type(loaded) is AutoencoderKLTemporalDecoder and not loaded.training
    expected = vae.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items()) and loaded.state_dict().keys() == expected.keys()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.encode(x).latent_dist.mode(), vae.eval().encode(x).latent_dist.mode())


def test_load_vae_reads_a_pixel_space_autoencoder(tmp_path):
    PixelSpaceAutoencoder(latent_channels=3).save_pretrained(tmp_path)
    assert not (tmp_path / "diffusion_pytorch_model.safetensors").exists()  # no weights: config only
    vae = load_vae(tmp_path)
    assert type(vae) is PixelSpaceAutoencoder and vae.config.latent_channels == 3
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(vae.encode(x).latent_dist.mode(), x)


def test_missing_vae_parts_name_the_path(tmp_path):
    with pytest.raises(MissingComponentError, match="stabilityai/stable-video-diffusion-img2vid-xt") as missing:
        load_vae(tmp_path / "vae")
    assert str(tmp_path / "vae") in str(missing.value)
    with pytest.raises(MissingComponentError, match="config.json"):
        load_vae(tmp_path)
    tiny_svd_vae().save_pretrained(tmp_path)
    (tmp_path / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(MissingComponentError) as no_weights:
        load_vae(tmp_path)
    assert str(tmp_path / "diffusion_pytorch_model.safetensors") in str(no_weights.value)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(ValueError, match="AutoencoderKL"):
        load_vae(tmp_path)
