"""Pixels <-> latents for the video detokenizer: SVD's ``AutoencoderKLTemporalDecoder`` or a pixel-space identity.

The official code encodes the keyframe with ``latent_dist.mode()`` and **no** ``scaling_factor`` (as SVD conditions),
and decodes generated latents with ``latents / scaling_factor`` in chunks of frames. Training targets are therefore
``mode() * scaling_factor``. :class:`PixelSpaceAutoencoder` has the same interface with latent = pixels (3 channels,
``scaling_factor`` 1, no down-sampling): what the CPU demo trains in, since no pretrained VAE is available offline.
"""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from torch import nn


class PixelSpaceAutoencoder(ModelMixin, ConfigMixin):
    """Identity "VAE": ``encode(x).latent_dist.mode() == x``, ``decode(z).sample == z``; no parameters.

    Config (``save_pretrained`` / ``from_pretrained`` like any diffusers model): ``latent_channels`` (3),
    ``scaling_factor`` (1.0), ``block_out_channels`` ((3,): one level, so the down-sampling factor is 1).
    """

    @register_to_config
    def __init__(self, latent_channels: int = 3, scaling_factor: float = 1.0, block_out_channels: tuple[int, ...] = (3,)):
        super().__init__()
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)  # .device / .dtype of a model

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """(N, 3, H, W) -> a distribution whose mode is ``x`` (std ~3e-7)."""
        dist = DiagonalGaussianDistribution(torch.cat([x, torch.full_like(x, -30.0)], dim=1))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, num_frames: int | None = None, return_dict: bool = True) -> DecoderOutput | tuple:
        """(N, 3, H, W) -> the same tensor."""
        return DecoderOutput(sample=z) if return_dict else (z,)


def vae_scale_factor(vae: nn.Module) -> int:
    """Pixels per latent cell: ``2 ** (len(block_out_channels) - 1)`` (8 for SVD's VAE, 1 in pixel space)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _vae_dtype(vae: nn.Module) -> torch.dtype:
    return next((p.dtype for p in vae.parameters()), torch.float32)


def encode_keyframes(vae: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Keyframe condition: ``(B, 3, H, W)`` in [-1, 1] -> ``(B, c, h, w)`` ``latent_dist.mode()``, unscaled (official)."""
    latent = vae.encode(pixels.to(_vae_dtype(vae))).latent_dist.mode()
    return latent.to(pixels.dtype)


def encode_video(vae: nn.Module, frames: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
    """Training targets: ``(B, T, 3, H, W)`` in [-1, 1] -> ``(B, T, c, h, w)`` = ``mode() * scaling_factor``."""
    b, t = frames.shape[:2]
    flat = frames.reshape(b * t, *frames.shape[2:])
    latents = torch.cat([encode_keyframes(vae, flat[i : i + chunk_size]) for i in range(0, b * t, chunk_size)])
    return (latents * vae.config.scaling_factor).reshape(b, t, *latents.shape[1:])


def decode_latents(vae: nn.Module, latents: torch.Tensor, decode_chunk_size: int = 8) -> torch.Tensor:
    """``(B, T, c, h, w)`` -> ``(B, T, 3, H, W)`` float32 pixels in about [-1, 1]: ``latents / scaling_factor``,
    each video decoded ``decode_chunk_size`` frames at a time (official ``decode_latents``; the temporal decoder
    mixes the frames of a chunk, never of two videos)."""
    scaled = (latents / vae.config.scaling_factor).to(_vae_dtype(vae))
    videos = []
    for video in scaled:
        chunks = [video[i : i + decode_chunk_size] for i in range(0, video.shape[0], decode_chunk_size)]
        videos.append(torch.cat([vae.decode(c, num_frames=c.shape[0]).sample.float() for c in chunks]))
    return torch.stack(videos)
