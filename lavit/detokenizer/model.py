"""``VideoDetokenizerModel``: the trainable part of the video detokenizer (motion encoder + 3D U-Net) and its EDM loss.

State dict = the official ``video_3d_unet.bin`` layout: ``unet.*`` (stock diffusers names) and ``motion_encoder.*``.
The VAE and the scheduler are not part of it (``lavit.detokenizer.components``).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavit.detokenizer.config import VideoDetokenizerConfig
from lavit.detokenizer.edm import edm_loss_weight, edm_scalings, sample_sigmas
from lavit.detokenizer.motion_encoder import MotionConditionEncoder
from lavit.detokenizer.unet import MotionConditionedUNet


class EDMLoss(NamedTuple):
    """Per-sample results of :meth:`VideoDetokenizerModel.loss`.

    Attributes:
        loss: (B,) ``lambda(sigma) * mean ||D - x0||^2`` over (T, c, h, w).
        sigma: (B,) the noise levels used.
        denoised: (B, T, c, h, w) ``D(x0 + sigma * n; sigma)``.
    """

    loss: torch.Tensor
    sigma: torch.Tensor
    denoised: torch.Tensor


class VideoDetokenizerModel(nn.Module):
    """Motion condition encoder + ``MotionConditionedUNet``, with EDM preconditioning and condition dropout.

    Args:
        config: a ``VideoDetokenizerConfig``, a preset name ("paper", "tiny", "demo") or its fields.
    """

    def __init__(self, config: VideoDetokenizerConfig | str = "paper"):
        super().__init__()
        self.config = VideoDetokenizerConfig.coerce(config)
        self.unet = MotionConditionedUNet(**self.config.unet)
        self.motion_encoder = MotionConditionEncoder(self.config.motion_encoder)

    # ---- conditions ----------------------------------------------------------------------------
    def motion_condition(self, motion: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Tokenizer-scale motion ``(B, 2, T, H', W')`` (``extract_clips`` / the motion tokenizer's decoder) ->
        ``(B, 2, T, h, w)`` at latent size: bicubic per frame, divided by ``motion_scale_factor`` (official)."""
        c = self.config.motion_channels
        if not isinstance(motion, torch.Tensor) or motion.ndim != 5 or motion.shape[1] != c or not motion.is_floating_point():
            got = f"{tuple(motion.shape)} {motion.dtype}" if isinstance(motion, torch.Tensor) else type(motion).__name__
            raise ValueError(f"motion must be a floating-point tensor of shape (B, {c}, T, H, W), got {got}")
        b, _, t, h, w = motion.shape
        frames = motion.float().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        if (h, w) != tuple(size):
            frames = F.interpolate(frames, size=tuple(size), mode="bicubic", align_corners=False)
        frames = frames / self.config.motion_scale_factor
        return frames.reshape(b, t, c, *size).permute(0, 2, 1, 3, 4)

    def added_time_ids(self, batch: int, device: torch.device | str | None = None, dtype=torch.float32) -> torch.Tensor:
        """``(batch, 3)`` = ``[fps, motion_bucket_id, noise_aug_strength]`` of the config."""
        c = self.config
        ids = torch.tensor([c.fps, c.motion_bucket_id, c.noise_aug_strength], device=device, dtype=dtype)
        return ids.expand(batch, 3)

    def unet_input(self, scaled: torch.Tensor, keyframe_latent: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """``cat([scaled noisy latent (B, T, c, h, w), keyframe latent repeated over T, motion (B, T, 2, h, w)], dim=2)``.

        Args:
            scaled: the noisy latent already multiplied by ``c_in`` (the scheduler's ``scale_model_input``).
            keyframe_latent: (B, c, h, w).
            motion: (B, 2, T, h, w) at latent size (:meth:`motion_condition`).
        """
        b, t, c, h, w = scaled.shape
        if tuple(keyframe_latent.shape) != (b, c, h, w):
            raise ValueError(f"keyframe_latent must be (B, c, h, w) = {(b, c, h, w)}, got {tuple(keyframe_latent.shape)}")
        expected = (b, self.config.motion_channels, t, h, w)
        if tuple(motion.shape) != expected:
            raise ValueError(f"motion must be (B, 2, T, h, w) = {expected} at latent size, got {tuple(motion.shape)}")
        keyframe = keyframe_latent.unsqueeze(1).expand(b, t, c, h, w)
        return torch.cat([scaled, keyframe.to(scaled.dtype), motion.transpose(1, 2).to(scaled.dtype)], dim=2)

    # ---- denoiser ------------------------------------------------------------------------------
    def denoise(
        self,
        noisy: torch.Tensor,
        sigma: torch.Tensor,
        keyframe_latent: torch.Tensor,
        motion: torch.Tensor,
        motion_features: torch.Tensor | None = None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """EDM denoiser ``D(x; sigma)``: ``noisy (B, T, c, h, w)``, ``sigma (B,)`` -> ``(B, T, c, h, w)``.

        ``motion`` (B, 2, T, h, w) at latent size feeds the 2 input channels and, unless ``motion_features``
        ``(B, T, 256, C)`` are given, the motion encoder. ``anchor`` ``(B, c, h, w)``: the keyframe in the space of
        ``noisy`` (VAE-scaled); with ``config.keyframe_residual`` (required then) ``D(x) = anchor + D_edm(x - anchor)``,
        otherwise unused.
        """
        if self.config.keyframe_residual:
            if anchor is None or tuple(anchor.shape) != (noisy.shape[0], *noisy.shape[2:]):
                got = "None" if anchor is None else str(tuple(anchor.shape))
                raise ValueError(f"keyframe_residual needs anchor, the (B, c, h, w) = {(noisy.shape[0], *noisy.shape[2:])} "
                                 f"VAE-scaled keyframe latent, got {got}")
            base = anchor.unsqueeze(1).to(noisy.dtype)
            return base + self._denoise(noisy - base, sigma, keyframe_latent, motion, motion_features)
        return self._denoise(noisy, sigma, keyframe_latent, motion, motion_features)

    def _denoise(self, noisy, sigma, keyframe_latent, motion, motion_features):
        if motion_features is None:
            motion_features = self.motion_encoder.encode(motion)
        s = edm_scalings(sigma.float().reshape(-1, 1, 1, 1, 1))
        sample = self.unet_input((noisy.float() * s.c_in).to(noisy.dtype), keyframe_latent, motion)
        out = self.unet(
            sample, s.c_noise.flatten().to(noisy.dtype), motion_features, self.added_time_ids(noisy.shape[0], noisy.device, noisy.dtype)
        ).sample
        return (s.c_skip * noisy.float() + s.c_out * out.float()).to(noisy.dtype)

    def drop_conditions(
        self, keyframe_latent: torch.Tensor, motion: torch.Tensor, motion_features: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Zero each condition per sample with its dropout rate, all three with ``unconditional_dropout``."""
        c = self.config
        b = keyframe_latent.shape[0]
        device = generator.device if generator is not None else None
        u = torch.rand(4, b, generator=generator, device=device).to(keyframe_latent.device)
        uncond = u[3] < c.unconditional_dropout
        keep = [~((u[i] < rate) | uncond) for i, rate in
                enumerate((c.keyframe_latent_dropout, c.motion_channel_dropout, c.motion_feature_dropout))]

        def masked(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return x * k.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))

        return masked(keyframe_latent, keep[0]), masked(motion, keep[1]), masked(motion_features, keep[2])

    def loss(
        self,
        latents: torch.Tensor,
        keyframe_latent: torch.Tensor,
        motion: torch.Tensor,
        *,
        sigma: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        drop_conditions: bool = True,
    ) -> EDMLoss:
        """EDM training loss of clean ``latents (B, T, c, h, w)`` given the keyframe latent ``(B, c, h, w)`` and motion
        ``(B, 2, T, h, w)`` at latent size. ``sigma (B,)`` and ``noise`` default to draws from ``generator``. With
        ``keyframe_residual`` the anchor is ``latents[:, 0]`` (frame 0 of a clip is its keyframe)."""
        b = latents.shape[0]
        device = generator.device if generator is not None else None
        if sigma is None:
            sigma = sample_sigmas(b, self.config.p_mean, self.config.p_std, generator)
        sigma = sigma.to(latents.device, torch.float32)
        if noise is None:
            noise = torch.randn(latents.shape, generator=generator, device=device)
        noise = noise.to(latents.device, latents.dtype)
        features = self.motion_encoder.encode(motion)
        if drop_conditions:
            keyframe_latent, motion, features = self.drop_conditions(keyframe_latent, motion, features, generator)
        noisy = latents + sigma.reshape(-1, 1, 1, 1, 1).to(latents.dtype) * noise
        denoised = self.denoise(noisy, sigma, keyframe_latent, motion, features, anchor=latents[:, 0])
        error = (denoised.float() - latents.float()).pow(2).flatten(1).mean(1)
        return EDMLoss(loss=edm_loss_weight(sigma) * error, sigma=sigma, denoised=denoised)


def noise_augment(keyframe: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``keyframe + strength * n`` (pixels in [-1, 1], before VAE encoding; official ``noise_aug_strength``)."""
    device = generator.device if generator is not None else None
    noise = torch.randn(keyframe.shape, generator=generator, device=device).to(keyframe.device, keyframe.dtype)
    return keyframe + strength * noise
