"""``VideoDetokenizerPipeline``: keyframe + motion (or motion tokens) -> video, the official sampler.

Official ``VideoDetokenizer.reconstruct_from_token`` (LaVIT@8cde9b4f9d24 ``VideoLaVIT/models/video_detokenizer.py``
L158-279), step by step:

1. the keyframe ``(B, 3, H, W)`` in [-1, 1] gets ``noise_aug_strength * randn`` in pixel space and is VAE-encoded
   (``latent_dist.mode()``, no ``scaling_factor``), then repeated over the T frames;
2. motion at tokenizer scale (``extract_clips`` or the motion tokenizer's decoded tokens) is resized bicubic per
   frame to the latent size and divided by ``motion_scale_factor`` (10); it feeds the motion encoder and the 2 motion
   input channels;
3. ``added_time_ids = [fps, motion_bucket_id, noise_aug_strength]`` (6, 127, 0.02) for both CFG halves;
4. ``latents = randn(B, T, c, h, w) * init_noise_sigma``; every step runs the batch ``[uncond; cond]`` through the
   U-Net, where uncond = zero motion features, zero motion channels and zero keyframe latents;
5. per-frame guidance ``g = linspace(min_guidance, max_guidance, T)``: ``pred = uncond + g * (cond - uncond)``, so
   frame 0 takes the pure conditional prediction when ``min_guidance == 1``; then ``scheduler.step``;
6. the latents are decoded ``decode_chunk_size`` frames at a time (``latents / scaling_factor``).

All random draws come from one generator (``seed`` -> ``torch.Generator()`` on the CPU), keyframe noise first, and
are made on the generator's device and then moved: a seeded run gives the same noise on a CPU and a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from diffusers.utils import BaseOutput
from torch import nn
from tqdm.auto import tqdm

from lavit.detokenizer.autoencoder import decode_latents, encode_keyframes, vae_scale_factor
from lavit.detokenizer.model import VideoDetokenizerModel, noise_augment

__all__ = ["OUTPUT_TYPES", "VideoDetokenizerOutput", "VideoDetokenizerPipeline", "guidance_scales", "spatial_multiple"]

OUTPUT_TYPES = ("uint8", "pt", "latent")


@dataclass
class VideoDetokenizerOutput(BaseOutput):
    """Result of :meth:`VideoDetokenizerPipeline.generate`.

    Attributes:
        frames: ``(B, T, H, W, 3)`` uint8 (``output_type="uint8"``), ``(B, T, 3, H, W)`` float32 in [-1, 1]
            (``"pt"``) or None (``"latent"``).
        latents: ``(B, T, c, h, w)`` float32, the final denoised latents (VAE-scaled, before ``/ scaling_factor``).
    """

    frames: torch.Tensor | None
    latents: torch.Tensor


def guidance_scales(num_frames: int, min_guidance: float = 1.0, max_guidance: float = 4.0) -> torch.Tensor:
    """Per-frame classifier-free guidance (official linear schedule): ``linspace(min, max, T)`` as ``(1, T, 1, 1, 1)``."""
    return torch.linspace(min_guidance, max_guidance, num_frames, dtype=torch.float32).reshape(1, num_frames, 1, 1, 1)


def spatial_multiple(vae: nn.Module, unet_config) -> int:
    """Pixels that H and W must be a multiple of: ``vae_scale_factor(vae) * 2 ** (U-Net down-sampling levels)``
    (every down block but the last halves the size): 64 for the paper config with SVD's VAE."""
    blocks = unet_config["down_block_types"] if isinstance(unet_config, dict) else unet_config.down_block_types
    return vae_scale_factor(vae) * 2 ** (len(blocks) - 1)


def _shape(x) -> str:
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


class VideoDetokenizerPipeline:
    """Sampler of the video detokenizer: ``VideoDetokenizerModel`` + VAE + EDM (Euler) scheduler.

    Args:
        model: the motion encoder and motion-conditioned U-Net (``lavit.load_video_detokenizer``).
        vae: ``AutoencoderKLTemporalDecoder`` (SVD) or ``PixelSpaceAutoencoder``; its latent channels must equal
            ``model.config.latent_channels``.
        scheduler: a diffusers scheduler with ``set_timesteps``, ``scale_model_input`` and ``step``; the official one is
            ``EulerDiscreteScheduler`` with SVD's config (``lavit.detokenizer.components.load_scheduler``).
        motion_tokenizer: a ``lavit.tokenizers.MotionTokenizer``, needed only for ``generate(motion_tokens=...)``.
    """

    def __init__(self, model: VideoDetokenizerModel, vae: nn.Module, scheduler, motion_tokenizer: nn.Module | None = None):
        latent_channels = vae.config.latent_channels
        if latent_channels != model.config.latent_channels:
            raise ValueError(
                f"the VAE has {latent_channels} latent channels but the model denoises "
                f"latent_channels={model.config.latent_channels}"
            )
        self.model = model.eval()
        self.vae = vae.eval()
        self.scheduler = scheduler
        self.motion_tokenizer = motion_tokenizer.eval() if motion_tokenizer is not None else None

    # ---- placement -----------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "VideoDetokenizerPipeline":
        """Move the model and the VAE to ``device`` / ``dtype``; the motion tokenizer only to ``device`` (it stays
        float32: its quantiser compares distances). Returns ``self``."""
        moves = {k: v for k, v in dict(device=device, dtype=dtype).items() if v is not None}  # diffusers warns on dtype=None
        self.model.to(**moves)
        self.vae.to(**moves)
        if self.motion_tokenizer is not None and device is not None:
            self.motion_tokenizer.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def spatial_multiple(self) -> int:
        """H and W of a keyframe must be multiples of this (64 for the paper config)."""
        return spatial_multiple(self.vae, self.model.unet.config)

    # ---- inputs --------------------------------------------------------------------------------
    def check_inputs(
        self,
        keyframe: torch.Tensor,
        motion: torch.Tensor | None,
        motion_tokens: torch.Tensor | None,
        num_frames: int | None,
        num_steps: int,
        start_step: int,
        latents: torch.Tensor | None,
        output_type: str,
        decode_chunk_size: int,
    ) -> None:
        """Raise a ValueError (TypeError for a wrong kind of argument) naming what was expected."""
        if not isinstance(keyframe, torch.Tensor) or keyframe.ndim != 4:
            raise ValueError(f"keyframe must be uint8 (B, H, W, 3) or float (B, 3, H, W) in [-1, 1], got {_shape(keyframe)}")
        if keyframe.dtype == torch.uint8:
            if keyframe.shape[-1] != 3:
                raise ValueError(f"a uint8 keyframe must be (B, H, W, 3), got {_shape(keyframe)}")
            height, width = keyframe.shape[1:3]
        elif keyframe.is_floating_point():
            if keyframe.shape[1] != 3:
                raise ValueError(f"a float keyframe must be (B, 3, H, W) in [-1, 1], got {_shape(keyframe)}")
            lo, hi = float(keyframe.min()), float(keyframe.max())
            if lo < -1.001 or hi > 1.001:
                raise ValueError(f"a float keyframe must hold pixels in [-1, 1] (clamp it), got values in [{lo:.3g}, {hi:.3g}]")
            height, width = keyframe.shape[2:]
        else:
            raise ValueError(f"keyframe must be uint8 (B, H, W, 3) or float (B, 3, H, W) in [-1, 1], got {_shape(keyframe)}")
        multiple = self.spatial_multiple
        if height % multiple or width % multiple or min(height, width) < 1:
            raise ValueError(
                f"keyframe height and width must be multiples of {multiple} (VAE factor {vae_scale_factor(self.vae)} x "
                f"U-Net down-sampling), got {width}x{height} (W x H); e.g. 576x320, 1024x576 or 384x384"
            )
        batch = keyframe.shape[0]
        if (motion is None) == (motion_tokens is None):
            raise ValueError("give exactly one of motion (B, 2, T, H', W') and motion_tokens (B, 135)")
        if motion is not None:
            c = self.model.config.motion_channels
            if not isinstance(motion, torch.Tensor) or motion.ndim != 5 or not motion.is_floating_point() or motion.shape[1] != c:
                raise ValueError(f"motion must be a float tensor (B, {c}, T, H', W') at tokenizer scale, got {_shape(motion)}")
            if motion.shape[0] != batch:
                raise ValueError(
                    f"motion must be (B, {c}, T, H', W') with B = {batch} (the keyframe batch), got {tuple(motion.shape)}"
                )
            frames = motion.shape[2]
        else:
            tokenizer = self.motion_tokenizer
            if tokenizer is None:
                raise ValueError("motion_tokens need a motion tokenizer: VideoDetokenizerPipeline(..., motion_tokenizer=...)")
            n = tokenizer.num_tokens
            if not isinstance(motion_tokens, torch.Tensor) or motion_tokens.dtype not in (torch.int64, torch.int32) or motion_tokens.ndim != 2:
                raise ValueError(f"motion_tokens must be an integer tensor (B, {n}), got {_shape(motion_tokens)}")
            if tuple(motion_tokens.shape) != (batch, n):
                raise ValueError(f"motion_tokens must be (B, {n}) = {(batch, n)} for a batch of {batch} keyframes, got {tuple(motion_tokens.shape)}")
            codes = tokenizer.config.codebook_size
            if motion_tokens.numel() and (int(motion_tokens.min()) < 0 or int(motion_tokens.max()) >= codes):
                raise ValueError(
                    f"motion_tokens ids must lie in 0..{codes - 1} (codebook size {codes}), "
                    f"got ids in {int(motion_tokens.min())}..{int(motion_tokens.max())}"
                )
            frames = tokenizer.config.num_frames
        if num_frames is not None and num_frames != frames:
            raise ValueError(f"num_frames={num_frames} but the motion has {frames} frames (T of (B, 2, T, H', W'))")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if not 0 <= start_step < num_steps:
            raise ValueError(f"start_step must be an index into the {num_steps} timesteps (0..{num_steps - 1}), got {start_step}")
        if start_step and latents is None:
            raise ValueError(f"start_step={start_step} needs latents at that step's noise level (latents=...)")
        if latents is not None:
            factor = vae_scale_factor(self.vae)
            expected = (batch, frames, self.model.config.latent_channels, height // factor, width // factor)
            if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected:
                raise ValueError(f"latents must be (B, T, c, h, w) = {expected}, got {_shape(latents)}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be >= 1, got {decode_chunk_size}")

    @staticmethod
    def _pixels(keyframe: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) or float (B, 3, H, W) -> float32 (B, 3, H, W) in [-1, 1]."""
        if keyframe.dtype == torch.uint8:
            return keyframe.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return keyframe.float()

    @staticmethod
    def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        return torch.Generator().manual_seed(int(seed)) if seed is not None else generator

    # ---- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        keyframe: torch.Tensor,
        motion: torch.Tensor | None = None,
        motion_tokens: torch.Tensor | None = None,
        *,
        num_frames: int | None = None,
        num_steps: int = 25,
        min_guidance: float = 1.0,
        max_guidance: float = 4.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        decode_chunk_size: int = 8,
        latents: torch.Tensor | None = None,
        start_step: int = 0,
        output_type: str = "uint8",
        progress: bool = False,
    ) -> VideoDetokenizerOutput:
        """Sample a video per keyframe.

        Args:
            keyframe: uint8 ``(B, H, W, 3)`` or float ``(B, 3, H, W)`` in [-1, 1]; H and W multiples of
                :attr:`spatial_multiple` (64 for the paper config: 576x320, 1024x576, 384x384).
            motion: tokenizer-scale motion ``(B, 2, T, H', W')`` (e.g. ``extract_clips``' ``(N, 2, 24, 20, 36)``).
            motion_tokens: ``(B, 135)`` motion token ids in ``0..codebook_size-1``, decoded by the motion tokenizer
                (T = 24). Exactly one of ``motion`` and ``motion_tokens``.
            num_frames: T, optional: checked against the motion's frame count.
            num_steps: scheduler steps (official 25). min_guidance, max_guidance: per-frame linear CFG (1 -> 4).
            seed: an int -> ``torch.Generator()`` on the CPU seeded with it; or pass ``generator``. Neither: the
                global RNG.
            decode_chunk_size: frames the VAE decodes at once (official 8).
            latents: ``(B, T, c, h, w)`` start latents used instead of ``randn * init_noise_sigma``. They must already
                be at the noise level of ``scheduler.timesteps[start_step]`` (i.e. ``x0 + sigma * n`` for that step's
                sigma, **not** multiplied by ``init_noise_sigma`` again): the caller's responsibility.
            start_step: index into ``scheduler.timesteps`` to start from; only ``num_steps - start_step`` steps run
                (needs ``latents``; SDEdit-style long-video seeding).
            output_type: ``"uint8"`` -> frames ``(B, T, H, W, 3)`` uint8; ``"pt"`` -> ``(B, T, 3, H, W)`` float in
                [-1, 1]; ``"latent"`` -> no decoding (frames None).
            progress: show a tqdm bar over the steps.

        Raises:
            ValueError: naming the expected shape, size multiple or id range.
        """
        # 1. check inputs
        self.check_inputs(keyframe, motion, motion_tokens, num_frames, num_steps, start_step, latents, output_type,
                          decode_chunk_size)
        model, config = self.model, self.model.config
        device, dtype = self.device, self.dtype
        generator = self._generator(seed, generator)
        batch = keyframe.shape[0]

        # 2. keyframe condition: pixel-space noise augmentation, VAE mode (unscaled)
        clean = self._pixels(keyframe).to(device)
        pixels = noise_augment(clean, config.noise_aug_strength, generator)
        keyframe_latent = encode_keyframes(self.vae, pixels.to(dtype))  # (B, c, h, w)
        h, w = keyframe_latent.shape[-2:]
        # keyframe_residual: the scheduler runs on x - anchor (its steps are linear in x), anchor = the scaled keyframe latent
        anchor = 0.0
        if config.keyframe_residual:
            anchor = encode_keyframes(self.vae, clean.to(dtype)).float().unsqueeze(1)
            anchor = anchor * self.vae.config.scaling_factor

        # 3. motion condition at latent size, motion features
        if motion_tokens is not None:
            tokenizer_device = next(self.motion_tokenizer.parameters()).device
            motion = self.motion_tokenizer.detokenize(motion_tokens.to(tokenizer_device).long())
        motion = model.motion_condition(motion.to(device), (h, w)).to(dtype)  # (B, 2, T, h, w)
        frames = motion.shape[2]
        features = model.motion_encoder.encode(motion)  # (B, T, 256, C)

        # 4. classifier-free guidance batch [uncond; cond]: zero features, motion channels and keyframe latents
        features = torch.cat([torch.zeros_like(features), features])
        motion = torch.cat([torch.zeros_like(motion), motion])
        keyframe_latent = torch.cat([torch.zeros_like(keyframe_latent), keyframe_latent])
        added_time_ids = model.added_time_ids(2 * batch, device, dtype)
        guidance = guidance_scales(frames, min_guidance, max_guidance).to(device)

        # 5. timesteps and initial latents (float32; the U-Net sees them in its dtype)
        self.scheduler.set_timesteps(num_steps, device=device)
        self.scheduler.set_begin_index(start_step)
        timesteps = self.scheduler.timesteps[start_step:]
        shape = (batch, frames, config.latent_channels, h, w)
        if latents is None:
            noise_device = generator.device if generator is not None else "cpu"
            latents = torch.randn(shape, generator=generator, device=noise_device, dtype=torch.float32)
            latents = latents.to(device) * self.scheduler.init_noise_sigma
        else:
            latents = latents.to(device, torch.float32) - anchor

        # 6. denoising loop
        for t in tqdm(timesteps, desc="denoising", unit="step", disable=not progress):
            scaled = self.scheduler.scale_model_input(latents, t)
            sample = model.unet_input(torch.cat([scaled, scaled]).to(dtype), keyframe_latent, motion)
            pred = model.unet(sample, t.to(dtype), features, added_time_ids).sample.float()
            uncond, cond = pred.chunk(2)
            pred = uncond + guidance * (cond - uncond)
            latents = self.scheduler.step(pred, t, latents).prev_sample
        latents = latents + anchor

        # 7. decode
        if output_type == "latent":
            return VideoDetokenizerOutput(frames=None, latents=latents)
        video = decode_latents(self.vae, latents.to(dtype), decode_chunk_size)  # (B, T, 3, H, W) float32
        if output_type == "pt":
            return VideoDetokenizerOutput(frames=video, latents=latents)
        frames_uint8 = (((video + 1) / 2).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
        return VideoDetokenizerOutput(frames=frames_uint8.contiguous(), latents=latents)

    __call__ = generate
