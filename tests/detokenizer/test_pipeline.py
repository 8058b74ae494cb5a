"""VideoDetokenizerPipeline: the official sampler (CFG batch, per-frame guidance, hooks) on tiny real models."""

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder

from lavit.detokenizer import (
    PAPER_UNET_CONFIG,
    PixelSpaceAutoencoder,
    VideoDetokenizerConfig,
    VideoDetokenizerModel,
    VideoDetokenizerPipeline,
    guidance_scales,
    load_scheduler,
    spatial_multiple,
)
from lavit.tokenizers import MotionTokenizer, MotionTokenizerConfig

_DEMO_OFFICIAL = VideoDetokenizerConfig.from_name("demo", keyframe_residual=False)
T = 4  # frames of the pixel-space runs; guidance linspace(1, 4, 4) = 1, 2, 3, 4


def _svd_vae():
    torch.manual_seed(0)
    return AutoencoderKLTemporalDecoder(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                                        latent_channels=4).eval()


@pytest.fixture(scope="module")
def pipe():
    """Pixel-space demo model (the official parameterisation: no keyframe_residual): latent = RGB, 16 x 16 keyframes."""
    torch.manual_seed(0)
    return VideoDetokenizerPipeline(VideoDetokenizerModel(_DEMO_OFFICIAL), PixelSpaceAutoencoder(), load_scheduler())


@pytest.fixture(scope="module")
def svd_pipe():
    """Tiny U-Net behind a real SVD-type VAE (factor 8)."""
    torch.manual_seed(0)
    return VideoDetokenizerPipeline(VideoDetokenizerModel("tiny"), _svd_vae(), load_scheduler())


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    return MotionTokenizer(MotionTokenizerConfig.from_name("tiny")).eval()


def _inputs(b=1, t=T, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    keyframe = torch.randint(0, 256, (b, size, size, 3), generator=g, dtype=torch.uint8)
    motion = torch.randn(b, 2, t, 20, 36, generator=g) * 5
    return keyframe, motion


class Recorder:
    """Records the U-Net's inputs and outputs and the scheduler's step inputs of one ``generate`` call."""

    def __init__(self, pipe):
        self.pipe, self.unet, self.steps = pipe, [], []

    def __enter__(self):
        def hook(module, args, output):
            self.unet.append(dict(sample=args[0].clone(), timestep=args[1], features=args[2].clone(), out=output.sample.clone()))

        self.handle = self.pipe.model.unet.register_forward_hook(hook)
        step = self.pipe.scheduler.step

        def recording_step(model_output, timestep, sample, *args, **kwargs):
            self.steps.append(dict(pred=model_output.clone(), sample=sample.clone()))
            return step(model_output, timestep, sample, *args, **kwargs)

        self.pipe.scheduler.step = recording_step
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        del self.pipe.scheduler.step  # back to the class method


# ---- determinism, outputs --------------------------------------------------------------------


def test_seeded_sample_is_identical_twice_and_seeds_differ(pipe):
    keyframe, motion = _inputs()
    a = pipe.generate(keyframe, motion, num_steps=3, seed=7)
    b = pipe.generate(keyframe, motion, num_steps=3, seed=7)
    c = pipe.generate(keyframe, motion, num_steps=3, generator=torch.Generator().manual_seed(7))
    d = pipe.generate(keyframe, motion, num_steps=3, seed=8)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.latents, b.latents)
    assert torch.equal(a.latents, c.latents)  # seed=int is a CPU torch.Generator seeded with it
    assert (a.latents - d.latents).abs().max() > 1e-2
    with pytest.raises(ValueError, match="seed or generator"):
        pipe.generate(keyframe, motion, num_steps=1, seed=1, generator=torch.Generator())


def test_output_types_shapes_and_uint8_mapping(pipe):
    keyframe, motion = _inputs(b=2)
    out = pipe.generate(keyframe, motion, num_steps=2, seed=0)
    assert out.frames.shape == (2, T, 16, 16, 3) and out.frames.dtype == torch.uint8
    assert out.latents.shape == (2, T, 3, 16, 16) and out.latents.dtype == torch.float32
    pt = pipe.generate(keyframe, motion, num_steps=2, seed=0, output_type="pt")
    assert pt.frames.shape == (2, T, 3, 16, 16) and pt.frames.dtype == torch.float32
    torch.testing.assert_close(pt.frames, pt.latents)  # pixel space: decoding is the identity
    expected = (((pt.latents + 1) / 2).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
    assert torch.equal(out.frames, expected)
    assert pipe.generate(keyframe, motion, num_steps=2, seed=0, output_type="latent").frames is None


def test_float_keyframe_equals_uint8_keyframe(pipe):
    keyframe, motion = _inputs()
    as_float = keyframe.permute(0, 3, 1, 2).float() / 127.5 - 1
    a = pipe.generate(keyframe, motion, num_steps=2, seed=1).latents
    b = pipe.generate(as_float, motion, num_steps=2, seed=1).latents
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        pipe.generate(as_float * 2, motion, num_steps=1)


def test_progress_bar_over_steps(pipe, capfd):
    keyframe, motion = _inputs(t=2)
    pipe.generate(keyframe, motion, num_steps=3, seed=0, progress=True)
    assert "3/3" in capfd.readouterr().err


# ---- sizes -------------------------------------------------------------------------------------


def test_size_multiple_is_vae_factor_times_unet_downsampling(svd_pipe):
    vae = svd_pipe.vae
    assert spatial_multiple(vae, PAPER_UNET_CONFIG) == 64  # 8 x 2**3
    assert svd_pipe.spatial_multiple == 16  # tiny U-Net: one down-sampling level
    assert spatial_multiple(PixelSpaceAutoencoder(), PAPER_UNET_CONFIG) == 8


@pytest.mark.parametrize("width, height", [(576, 320), (1024, 576), (384, 384)])
def test_official_sizes_are_accepted(svd_pipe, width, height):
    keyframe = torch.randint(0, 256, (1, height, width, 3), dtype=torch.uint8)
    out = svd_pipe.generate(keyframe, torch.randn(1, 2, 2, 20, 36), num_steps=1, seed=0, output_type="latent")
    assert out.latents.shape == (1, 2, 4, height // 8, width // 8)


def test_svd_vae_decodes_uint8_frames(svd_pipe):
    keyframe = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    out = svd_pipe.generate(keyframe, torch.randn(1, 2, 3, 20, 36), num_steps=1, seed=0, decode_chunk_size=2)
    assert out.frames.shape == (1, 3, 64, 64, 3) and out.frames.dtype == torch.uint8
    assert out.latents.shape == (1, 3, 4, 8, 8)


def test_size_not_a_multiple_is_rejected_with_the_multiple(svd_pipe):
    keyframe = torch.randint(0, 256, (1, 64, 100, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"multiples of 16 .*got 100x64"):
        svd_pipe.generate(keyframe, torch.randn(1, 2, 2, 20, 36), num_steps=1)


# ---- classifier-free guidance ------------------------------------------------------------------


def test_guidance_scales_are_linspace():
    torch.testing.assert_close(guidance_scales(4, 1.0, 4.0).flatten(), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert guidance_scales(5, 1.0, 3.0).shape == (1, 5, 1, 1, 1)


def test_per_frame_guidance_combines_uncond_and_cond(pipe):
    keyframe, motion = _inputs()
    with Recorder(pipe) as rec:
        pipe.generate(keyframe, motion, num_steps=3, seed=0, min_guidance=1.0, max_guidance=4.0)
    assert len(rec.unet) == len(rec.steps) == 3
    for call, step in zip(rec.unet, rec.steps):
        uncond, cond = call["out"].chunk(2)
        assert (cond - uncond).abs().max() > 1e-3  # the two halves really differ
        for frame, g in enumerate((1.0, 2.0, 3.0, 4.0)):
            expected = uncond[:, frame] + g * (cond[:, frame] - uncond[:, frame])
            torch.testing.assert_close(step["pred"][:, frame], expected, rtol=1e-6, atol=1e-6)
        # min_guidance 1: frame 0 is the conditional prediction (up to the rounding of uncond + (cond - uncond))
        torch.testing.assert_close(step["pred"][:, 0], cond[:, 0], rtol=0, atol=1e-6)
        assert not torch.allclose(step["pred"][:, 3], cond[:, 3], atol=1e-3)


def test_unconditional_half_gets_zero_conditions(pipe):
    keyframe, motion = _inputs(b=2)
    with Recorder(pipe) as rec:
        pipe.generate(keyframe, motion, num_steps=1, seed=0)
    call = rec.unet[0]
    c = pipe.model.config.latent_channels
    sample, features = call["sample"], call["features"]
    assert sample.shape == (4, T, 2 * c + 2, 16, 16) and features.shape[:2] == (4, T)
    uncond, cond = sample.chunk(2)
    assert torch.equal(uncond[:, :, :c], cond[:, :, :c])  # the same noisy latent in both halves
    assert uncond[:, :, c:].abs().max() == 0  # keyframe latent and motion channels
    assert features[:2].abs().max() == 0  # motion features: zeros, not encoder(0)
    expected_motion = pipe.model.motion_condition(motion, (16, 16)).transpose(1, 2)
    torch.testing.assert_close(cond[:, :, 2 * c:], expected_motion)
    torch.testing.assert_close(features[2:], pipe.model.motion_encoder.encode(expected_motion.transpose(1, 2)))
    pixels = keyframe.permute(0, 3, 1, 2).float() / 127.5 - 1
    for frame in range(T):  # pixel space: the keyframe latent is the keyframe plus 0.02-std noise, in every frame
        assert (cond[:, frame, c:2 * c] - pixels).abs().max() < 0.2
        assert torch.equal(cond[:, frame, c:2 * c], cond[:, 0, c:2 * c])


# ---- motion inputs -----------------------------------------------------------------------------


def test_motion_tokens_path_equals_decoded_motion(pipe, tokenizer):
    tokens = torch.randint(0, 64, (1, 135), generator=torch.Generator().manual_seed(0))
    keyframe, _ = _inputs()
    p = VideoDetokenizerPipeline(pipe.model, pipe.vae, pipe.scheduler, motion_tokenizer=tokenizer)
    a = p.generate(keyframe, motion_tokens=tokens, num_steps=1, seed=2, output_type="latent")
    b = p.generate(keyframe, tokenizer.detokenize(tokens), num_steps=1, seed=2, output_type="latent")
    assert a.latents.shape == (1, 24, 3, 16, 16)
    assert torch.equal(a.latents, b.latents)


@pytest.mark.parametrize("bad", [64, 1024, -1])
def test_token_ids_outside_the_codebook_are_rejected(pipe, tokenizer, bad):
    tokens = torch.zeros(1, 135, dtype=torch.long)
    tokens[0, 7] = bad
    p = VideoDetokenizerPipeline(pipe.model, pipe.vae, pipe.scheduler, motion_tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"0\.\.63"):
        p.generate(_inputs()[0], motion_tokens=tokens, num_steps=1)


def test_motion_tokens_need_a_tokenizer_and_the_right_shape(pipe, tokenizer):
    keyframe, _ = _inputs()
    with pytest.raises(ValueError, match="motion tokenizer"):
        pipe.generate(keyframe, motion_tokens=torch.zeros(1, 135, dtype=torch.long))
    p = VideoDetokenizerPipeline(pipe.model, pipe.vae, pipe.scheduler, motion_tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"\(1, 135\)"):
        p.generate(keyframe, motion_tokens=torch.zeros(1, 100, dtype=torch.long))


def test_motion_mismatches_are_rejected(pipe):
    keyframe, motion = _inputs()
    with pytest.raises(ValueError, match="exactly one"):
        pipe.generate(keyframe)
    with pytest.raises(ValueError, match=r"B = 1"):
        pipe.generate(keyframe, torch.randn(2, 2, T, 20, 36))
    with pytest.raises(ValueError, match=r"\(B, 2, T, H', W'\)"):
        pipe.generate(keyframe, torch.randn(1, 3, T, 20, 36))
    with pytest.raises(ValueError, match=f"num_frames=3 but the motion has {T} frames"):
        pipe.generate(keyframe, motion, num_frames=3)


# ---- hooks for the long-video pipeline ---------------------------------------------------------


@pytest.mark.parametrize("start", [1, 3])
def test_start_step_with_latents_continues_a_full_run(pipe, start):
    keyframe, motion = _inputs()
    with Recorder(pipe) as full:
        reference = pipe.generate(keyframe, motion, num_steps=4, seed=3, output_type="latent")
    state = full.steps[start]["sample"]  # the latents before step `start` of the full run
    with Recorder(pipe) as part:
        resumed = pipe.generate(keyframe, motion, num_steps=4, seed=3, latents=state, start_step=start, output_type="latent")
    assert len(part.unet) == 4 - start
    assert [c["timestep"].item() for c in part.unet] == [c["timestep"].item() for c in full.unet[start:]]
    torch.testing.assert_close(resumed.latents, reference.latents, rtol=0, atol=1e-6)


def test_given_latents_replace_the_noise(pipe):
    keyframe, motion = _inputs()
    start = torch.randn(1, T, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * pipe.scheduler.init_noise_sigma
    with Recorder(pipe) as rec:
        pipe.generate(keyframe, motion, num_steps=2, seed=0, latents=start, output_type="latent")
    assert torch.equal(rec.steps[0]["sample"], start)
    with pytest.raises(ValueError, match=r"latents must be \(B, T, c, h, w\) = \(1, 4, 3, 16, 16\)"):
        pipe.generate(keyframe, motion, num_steps=2, latents=torch.zeros(1, T, 3, 8, 8))
    with pytest.raises(ValueError, match="needs latents"):
        pipe.generate(keyframe, motion, num_steps=2, start_step=1)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        pipe.generate(keyframe, motion, num_steps=2, start_step=2, latents=start)


@pytest.mark.parametrize("start", [0, 2])
def test_keyframe_residual_samples_the_difference_to_the_keyframe(pipe, start):
    """The sampler is linear in x: running it on x - k (same weights, same seed) gives the plain run's latents + k,
    the start-latents hook included (given latents are x, not x - k)."""
    residual_model = VideoDetokenizerModel(VideoDetokenizerConfig.from_name("demo", keyframe_residual=True))
    residual_model.load_state_dict(pipe.model.state_dict())
    residual = VideoDetokenizerPipeline(residual_model, PixelSpaceAutoencoder(), load_scheduler())
    keyframe, motion = _inputs()
    k = (keyframe.permute(0, 3, 1, 2).float() / 127.5 - 1.0).unsqueeze(1)
    hook = {}
    if start:
        with Recorder(pipe) as full:
            pipe.generate(keyframe, motion, num_steps=4, seed=3, output_type="latent")
        hook = dict(latents=full.steps[start]["sample"], start_step=start)
    plain = pipe.generate(keyframe, motion, num_steps=4, seed=3, output_type="latent", **hook)
    if start:
        hook["latents"] = hook["latents"] + k
    anchored = residual.generate(keyframe, motion, num_steps=4, seed=3, output_type="latent", **hook)
    torch.testing.assert_close(anchored.latents, plain.latents + k, rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_seeded_noise_is_the_same_on_cpu_and_gpu():
    torch.manual_seed(0)
    model = VideoDetokenizerModel("demo")
    keyframe, motion = _inputs()
    cpu = VideoDetokenizerPipeline(model, PixelSpaceAutoencoder(), load_scheduler())
    with Recorder(cpu) as a:
        cpu.generate(keyframe, motion, num_steps=1, seed=4, output_type="latent")
    gpu = VideoDetokenizerPipeline(model, PixelSpaceAutoencoder(), load_scheduler()).to("cuda")
    with Recorder(gpu) as b:
        gpu.generate(keyframe, motion, num_steps=1, seed=4, output_type="latent")
    torch.testing.assert_close(b.steps[0]["sample"].cpu(), a.steps[0]["sample"])
