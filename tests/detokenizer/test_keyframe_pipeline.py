"""KeyframeDetokenizerPipeline on tiny real diffusers models: the official sampler, re-noising and Eq. 4 inversion."""

import copy

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

import lavit
from lavit.detokenizer import (
    KeyframeDecoderConfig,
    KeyframeDetokenizerPipeline,
    KeyframeFeatureDecoder,
    MissingComponentError,
    load_keyframe_detokenizer,
)

SIZE = (32, 32)  # spatial multiple: VAE factor 8 x 2 (two U-Net levels) = 16
N_CODE = 64
DECODER = KeyframeDecoderConfig.from_name("tiny")  # prompt 24 + 40 = 64 wide, pooled 40, at most 16 codes


def tiny_unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=DECODER.prompt_dim, attention_head_dim=(2, 4), addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=DECODER.pooled_dim + 6 * 8, norm_num_groups=32,
    ).eval()


def tiny_vae():
    torch.manual_seed(1)
    return AutoencoderKL(block_out_channels=(32,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1).eval()


def ddim():
    """SDXL's DDIM config (scaled-linear betas, leading spacing, offset 1, no clipping)."""
    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")


def make_pipe(unet=None):
    torch.manual_seed(2)
    decoder = KeyframeFeatureDecoder(DECODER)
    codebook = torch.randn(N_CODE, DECODER.in_channels)
    return KeyframeDetokenizerPipeline(decoder, codebook, unet or tiny_unet(), tiny_vae(), ddim())


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


@pytest.fixture(scope="module")
def smooth_pipe():
    """U-Net whose output is scaled by 0.1 (a noise predictor that varies gently with its input; the random one's
    Lipschitz constant is ~27, which no fixed-point inversion tames)."""
    unet = tiny_unet()
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    return make_pipe(unet).to(dtype=torch.float64)


IDS = [torch.tensor([3, 1, 4, 1, 5, 9, 2, 6]), torch.tensor([27, 18, 28, 18, 28, 45, 9, 0, 63, 7])]


def init_image(seed=0):
    return torch.randint(0, 256, (2, *SIZE, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def reference_loop(pipe, ids, guidance, steps, seed):
    """The official image_decoding written out with diffusers calls only: CFG batch [zeros; cond], time ids
    (h, w, 0, 0, h, w), randn * init_noise_sigma, DDIM steps, VAE decode of latents / scaling_factor."""
    prompt, pooled = pipe.decoder.decode_ids(ids, pipe.codebook)
    b, (h, w) = prompt.shape[0], SIZE
    time_ids = torch.tensor([[h, w, 0, 0, h, w]] * b, dtype=torch.float32)
    scheduler = ddim()
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(b, 4, h // 8, w // 8, generator=g) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        if guidance == 1.0:
            eps = pipe.unet(latents, t, prompt, added_cond_kwargs=dict(text_embeds=pooled, time_ids=time_ids)).sample
        else:
            out = pipe.unet(torch.cat([latents, latents]), t, torch.cat([torch.zeros_like(prompt), prompt]),
                            added_cond_kwargs=dict(text_embeds=torch.cat([torch.zeros_like(pooled), pooled]),
                                                   time_ids=torch.cat([time_ids, time_ids]))).sample
            u, c = out.chunk(2)
            eps = u + guidance * (c - u)
        latents = scheduler.step(eps, t, latents).prev_sample
    return latents, pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample


@torch.no_grad()
def test_generate_shapes_and_seeded_twice_identical(pipe):
    a = pipe.generate(IDS, size=SIZE, num_steps=5, seed=7)
    b = pipe.generate(IDS, size=SIZE, num_steps=5, seed=7)
    c = pipe.generate(IDS, size=SIZE, num_steps=5, seed=8)
    assert a.images.shape == (2, *SIZE, 3) and a.images.dtype == torch.uint8
    assert a.latents.shape == (2, 4, 4, 4)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.images, b.images)
    assert not torch.equal(a.latents, c.latents)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
@torch.no_grad()
def test_matches_the_official_loop_written_out(pipe, guidance):
    out = pipe.generate(IDS, size=SIZE, guidance=guidance, num_steps=6, seed=3, output_type="pt")
    latents, image = reference_loop(pipe, IDS, guidance, 6, 3)
    torch.testing.assert_close(out.latents, latents, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.images, image, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_guidance_one_equals_the_conditional_branch_of_the_cfg_batch(pipe):
    """At s = 1, u + s (c - u) == c: the CFG batch's conditional half alone (up to rounding), and guidance matters."""
    cond1 = pipe.generate(IDS, size=SIZE, guidance=1.0, num_steps=4, seed=1, output_type="latent").latents
    cfg1, _ = reference_loop(pipe, IDS, 1.0 + 1e-12, 4, 1)  # the two-branch formula at s = 1 (float: 1 + 1e-12 == 1)
    torch.testing.assert_close(cond1, cfg1, atol=1e-5, rtol=1e-5)
    cfg3 = pipe.generate(IDS, size=SIZE, guidance=3.0, num_steps=4, seed=1, output_type="latent").latents
    assert (cfg3 - cond1).abs().max() > 1e-3


@torch.no_grad()
def test_lm_ids_with_img_markers_equal_code_ids(pipe):
    lm = [torch.cat([torch.tensor([32000]), ids + 32002, torch.tensor([32001])]) for ids in IDS]
    a = pipe.generate(lm, size=SIZE, num_steps=2, seed=0, output_type="latent").latents
    b = pipe.generate(IDS, size=SIZE, num_steps=2, seed=0, output_type="latent").latents
    assert torch.equal(a, b)


@torch.no_grad()
def test_renoise_at_full_inverse_rate_returns_the_initial_latent(pipe):
    """inverse_rate 1 = k = num_steps: no noise is added and no step runs, so the latent is the encoded frame
    exactly; every other rate starts from add_noise(z0, n, timesteps[k]) and runs timesteps[k:]."""
    image = init_image()
    z0 = pipe.vae.encode(image.permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mode() * pipe.vae.config.scaling_factor
    out = pipe.generate(IDS, size=SIZE, num_steps=10, init_image=image, inverse_rate=1.0, output_type="pt")
    assert torch.equal(out.latents, z0)
    torch.testing.assert_close(out.images, pipe.vae.decode(z0 / pipe.vae.config.scaling_factor).sample)
    # inverse_rate 0.85 of 10 steps: noise to timesteps[8], then 2 DDIM steps (guidance 3), written out
    got = pipe.generate(IDS, size=SIZE, num_steps=10, init_image=image, seed=5, output_type="latent").latents
    scheduler = ddim()
    scheduler.set_timesteps(10)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(5))
    x = scheduler.add_noise(z0, noise, scheduler.timesteps[8:9].repeat(2))
    prompt, pooled = pipe.decoder.decode_ids(IDS, pipe.codebook)
    cond = pipe._conditioning(prompt, pooled, SIZE)
    for t in scheduler.timesteps[8:]:
        x = scheduler.step(pipe.predict_noise(x, t, scheduler, cond, 3.0), t, x).prev_sample
    torch.testing.assert_close(got, x, atol=1e-6, rtol=1e-6)
    assert (got - z0).abs().max() > 1e-4


@torch.no_grad()
def test_inverse_ddim_step_is_the_exact_inverse_of_diffusers_ddim_step():
    """With a noise prediction that does not depend on the input (a real U-Net whose conv_out weight is zero:
    eps = its bias), inverting all 50 steps and sampling them back with DDIMScheduler.step returns the latent to
    float64 rounding (measured 7.7e-15)."""
    unet = tiny_unet()
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.copy_(torch.tensor([0.5, -1.0, 0.25, 2.0]))
    pipe = make_pipe(unet).to(dtype=torch.float64)
    image = init_image(1)
    z0 = pipe.encode_image(image)
    out = pipe.generate(IDS, size=SIZE, num_steps=50, init_image=image, continuation="ddim_inversion",
                        inversion_steps=50, output_type="latent")
    assert (out.latents - z0).abs().max() < 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@torch.no_grad()
def test_eq4_inversion_then_ddim_sampling_returns_the_latent(smooth_pipe, dtype):
    """Eq. 4 with the long-video default (8 of 50 steps, guidance 3): classic inversion (prediction at the lower-noise
    input) returns z0 within 4.4e-3 (measured, float32 and float64); 20 fixed-point refinements per inverse step within
    5.1e-12 in float64 and 2.0e-7 in float32 (measured; bounds 1e-10 / 1e-6)."""
    pipe = copy.deepcopy(smooth_pipe).to(dtype=dtype)
    image = init_image(2)
    z0 = pipe.encode_image(image)
    errors = {}
    for iterations in (0, 20):
        out = pipe.generate(IDS, size=SIZE, num_steps=50, init_image=image, continuation="ddim_inversion",
                            inversion_iterations=iterations, output_type="latent")
        errors[iterations] = float((out.latents - z0).abs().max())
    assert errors[0] < 1e-2
    assert errors[20] < (1e-10 if dtype == torch.float64 else 1e-6)


@torch.no_grad()
def test_inversion_of_zero_steps_returns_the_latent(pipe):
    image = init_image()
    out = pipe.generate(IDS, size=SIZE, num_steps=10, init_image=image, continuation="ddim_inversion",
                        inversion_steps=0, output_type="latent")
    assert torch.equal(out.latents, pipe.encode_image(image))


def test_bad_inputs_raise_naming_what_was_expected(pipe):
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe.generate(IDS, size=(40, 32), num_steps=1)
    with pytest.raises(ValueError, match="more than the decoder's limit of 16"):
        pipe.generate([torch.zeros(17, dtype=torch.long)], size=SIZE, num_steps=1)
    with pytest.raises(ValueError, match=r"id 64 outside the codebook's 0\.\.63"):
        pipe.generate([torch.tensor([1, 64])], size=SIZE, num_steps=1)
    with pytest.raises(ValueError, match=r"id 64 outside the codebook's 0\.\.63"):
        pipe.generate([torch.tensor([32000, 32002 + 64, 32001])], size=SIZE, num_steps=1)
    with pytest.raises(ValueError, match="neither \\[IMG\\]"):
        pipe.generate([torch.tensor([32000, 5, 32001])], size=SIZE, num_steps=1)
    with pytest.raises(ValueError, match=r"init_image must be \(2, 32, 32, 3\)"):
        pipe.generate(IDS, size=SIZE, num_steps=1, init_image=init_image()[:1])
    with pytest.raises(ValueError, match="continuation must be one of"):
        pipe.generate(IDS, size=SIZE, num_steps=1, init_image=init_image(), continuation="sdedit")


def test_components_that_do_not_fit_are_refused():
    unet = tiny_unet()
    decoder = KeyframeFeatureDecoder(KeyframeDecoderConfig.from_name("tiny", unet_proj_dims=(24, 48)))
    with pytest.raises(ValueError, match="cross_attention_dim 64 != the decoder's prompt width 72"):
        KeyframeDetokenizerPipeline(decoder, torch.randn(8, 8), unet, tiny_vae(), ddim())


def _official_root(tmp_path, pipe):
    """A Video-LaVIT-shaped root with the tiny parts saved as the official files / folders."""
    (tmp_path / "visual_tokenizer").mkdir()
    torch.save(pipe.decoder.state_dict(), tmp_path / "visual_tokenizer" / "highres_tokenizer_decoder.bin")
    torch.save({"quantize.embedding.weight": pipe.codebook, "encode_task_layer.0.weight": torch.zeros(2, 2)},
               tmp_path / "visual_tokenizer" / "tokenizer_encoder.bin")
    pipe.unet.save_pretrained(tmp_path / "image_detokenizer" / "unet")
    pipe.vae.save_pretrained(tmp_path / "image_detokenizer" / "vae")
    pipe.scheduler.save_pretrained(tmp_path / "image_detokenizer" / "scheduler")
    return tmp_path


@torch.no_grad()
def test_load_from_an_official_root_reproduces_the_pipeline(tmp_path, pipe):
    root = _official_root(tmp_path, pipe)
    loaded = lavit.load_keyframe_detokenizer(root, decoder_config="tiny")
    assert isinstance(loaded.scheduler, DDIMScheduler)
    a = loaded.generate(IDS, size=SIZE, num_steps=3, seed=0, output_type="latent").latents
    b = pipe.generate(IDS, size=SIZE, num_steps=3, seed=0, output_type="latent").latents
    assert torch.equal(a, b)


@pytest.mark.parametrize("missing", ["visual_tokenizer/highres_tokenizer_decoder.bin", "visual_tokenizer/tokenizer_encoder.bin",
                                     "image_detokenizer/unet", "image_detokenizer/vae/config.json",
                                     "image_detokenizer/vae/diffusion_pytorch_model.safetensors",
                                     "image_detokenizer/scheduler"])
def test_missing_parts_name_the_file_and_the_source(tmp_path, pipe, missing):
    import shutil

    root = _official_root(tmp_path, pipe)
    target = root / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(MissingComponentError) as error:
        load_keyframe_detokenizer(root, decoder_config="tiny")
    message = str(error.value)
    assert "rain1011/Video-LaVIT-v1" in message
    assert missing.split("/")[-1] in message or missing.split("/")[-1] in error.value.path


def test_missing_root_is_named(tmp_path):
    with pytest.raises(MissingComponentError, match="nowhere"):
        lavit.load_keyframe_detokenizer(tmp_path / "nowhere")


def test_ddim_inversion_of_a_clipping_ddim_runs_an_unclipped_copy(pipe):
    from diffusers import DDIMScheduler

    clipping = KeyframeDetokenizerPipeline(pipe.decoder, pipe.codebook, pipe.unet, pipe.vae,
                                           DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=True))
    inversion = clipping.ddim_scheduler()
    assert inversion is not clipping.scheduler and not inversion.config.clip_sample
    assert clipping.scheduler.config.clip_sample  # fresh samples still clip
    assert {k: v for k, v in inversion.config.items() if k not in ("clip_sample", "_use_default_values")} == \
        {k: v for k, v in clipping.scheduler.config.items() if k not in ("clip_sample", "_use_default_values")}
    assert pipe.ddim_scheduler() is pipe.scheduler  # an unclipped DDIM is used as it is
