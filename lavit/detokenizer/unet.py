"""The motion-conditioned 3D U-Net of the video detokenizer (docs/spec.md §4).

Stock diffusers ``UNetSpatioTemporalConditionModel`` (the SVD U-Net) with ``in_channels=10`` and the official
Video-LaVIT motion routing (LaVIT@8cde9b4f9d24 ``VideoLaVIT/models/modeling_3d_unet.py``,
``modeling_transformer_temporal.py``). The official weights have exactly stock diffusers' layout; only the way
``encoder_hidden_states`` reaches the cross-attention layers differs:

- stock repeats one ``[B, L, C]`` context for every frame; spatial attention reads it, temporal attention reads
  frame 0's tokens broadcast to every feature-map location;
- here ``encoder_hidden_states`` is the motion encoder output ``[B, T, 256, C]`` (16 x 16 grid, row-major):
  spatial ``attn2`` of frame t attends to frame t's 256 tokens (``[B*T, 256, C]``), temporal ``attn2`` of the
  location (i, j) of an h x w feature map attends to the T features of the nearest grid cell
  (``F.interpolate(mode="nearest")`` to (h, w), ``[B*h*w, T, C]``).
"""

from __future__ import annotations

import contextvars
import json

import torch
import torch.nn.functional as F
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.transformers.transformer_temporal import (
    TransformerSpatioTemporalModel,
    TransformerTemporalModelOutput,
)

MOTION_GRID = (16, 16)
"""Rows and columns of the motion token grid (official: hard-coded 16 x 16 = 256 tokens per frame)."""
MOTION_TOKENS = MOTION_GRID[0] * MOTION_GRID[1]

PAPER_UNET_CONFIG: dict = {
    "sample_size": None,
    "in_channels": 10,
    "out_channels": 4,
    "down_block_types": (
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
    ),
    "up_block_types": (
        "UpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
    ),
    "block_out_channels": (320, 640, 1280, 1280),
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1,
    # Official constructor defaults (modeling_3d_unet.py L75-100); SVD-xt's hub config says (5, 10, 20, 20).
    # Heads change no parameter shape, only the attention computation.
    "num_attention_heads": (5, 10, 10, 20),
    "num_frames": 25,
}
"""Official video detokenizer U-Net (SVD img2vid-xt layout, 10 input channels): 1,524,628,842 parameters."""

TINY_UNET_CONFIG: dict = {
    "sample_size": None,
    "in_channels": 10,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    "block_out_channels": (32, 64),
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 24,
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "transformer_layers_per_block": 1,
    "num_attention_heads": (2, 2),
    "num_frames": 4,
}
"""The config of ``reference/video_unet_tiny_parity.safetensors`` (tests, CPU smoke runs)."""

_UNET_CONFIGS = {"paper": PAPER_UNET_CONFIG, "tiny": TINY_UNET_CONFIG}

# The [B, T, 256, C] motion context of the U-Net call in progress. Stock forward repeats encoder_hidden_states
# per frame before handing it to the blocks; MotionConditionedUNet.forward passes it a (B, 1, C) placeholder
# and the routing transformers read the real context from here (not copied T times).
_MOTION_CONTEXT: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("motion_context", default=None)


def unet_config(name: str) -> dict:
    """A copy of a named U-Net config (``"paper"`` or ``"tiny"``), constructor keyword arguments."""
    if name not in _UNET_CONFIGS:
        raise ValueError(f"unknown U-Net config {name!r}; expected one of {sorted(_UNET_CONFIGS)}")
    return json.loads(json.dumps(_UNET_CONFIGS[name]))


def route_motion_context(motion: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split motion features into the spatial and temporal cross-attention contexts (official routing).

    Args:
        motion: ``(B, T, 256, C)`` motion features, 16 x 16 grid row-major (token index = y * 16 + x).
        height, width: the feature map size h, w of the transformer.

    Returns:
        ``space_context (B*T, 256, C)``: frame t's own tokens, and ``time_context (B*h*w, T, C)``: for location
        (i, j) the T features of the nearest grid cell, nearest-resized as the official ``interplate_time_context``
        (in float32, ``F.interpolate(mode="nearest")``; ``size=(h, w)`` equals its ``scale_factor=(h/16, w/16)``).
    """
    batch, frames, tokens, channels = motion.shape
    space_context = motion.reshape(batch * frames, tokens, channels)
    grid = motion.reshape(batch * frames, *MOTION_GRID, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(height, width), mode="nearest").to(motion.dtype)
    time_context = grid.reshape(batch, frames, channels, height * width).permute(0, 3, 1, 2)
    return space_context, time_context.reshape(batch * height * width, frames, channels)


class MotionRoutedTransformer(TransformerSpatioTemporalModel):
    """``TransformerSpatioTemporalModel`` with the official motion routing; same parameters as stock.

    ``encoder_hidden_states`` is the motion context of the enclosing ``MotionConditionedUNet`` call or, when the
    transformer is called on its own, ``(B*T, 256, C)`` per-frame motion tokens.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        image_only_indicator: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> TransformerTemporalModelOutput | tuple[torch.Tensor]:
        """``hidden_states (B*T, C, h, w)``, ``image_only_indicator (B, T)`` -> ``(B*T, C, h, w)``."""
        batch_frames, _, height, width = hidden_states.shape
        num_frames = image_only_indicator.shape[-1]
        batch_size = batch_frames // num_frames

        motion = _MOTION_CONTEXT.get()
        if motion is None:
            motion = encoder_hidden_states.reshape(batch_size, num_frames, -1, encoder_hidden_states.shape[-1])
        space_context, time_context = route_motion_context(motion, height, width)

        # From here on: stock diffusers, with space_context / time_context as the two cross-attention inputs.
        residual = hidden_states
        hidden_states = self.norm(hidden_states)
        inner_dim = hidden_states.shape[1]
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch_frames, height * width, inner_dim)
        hidden_states = self.proj_in(hidden_states)

        frame_index = torch.arange(num_frames, device=hidden_states.device).repeat(batch_size, 1).reshape(-1)
        emb = self.time_pos_embed(self.time_proj(frame_index).to(dtype=hidden_states.dtype))[:, None, :]

        for block, temporal_block in zip(self.transformer_blocks, self.temporal_transformer_blocks):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(block, hidden_states, None, space_context, None)
            else:
                hidden_states = block(hidden_states, encoder_hidden_states=space_context)
            hidden_states_mix = temporal_block(
                hidden_states + emb, num_frames=num_frames, encoder_hidden_states=time_context
            )
            hidden_states = self.time_mixer(
                x_spatial=hidden_states, x_temporal=hidden_states_mix, image_only_indicator=image_only_indicator
            )

        hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_frames, height, width, inner_dim).permute(0, 3, 1, 2).contiguous()
        output = hidden_states + residual
        if not return_dict:
            return (output,)
        return TransformerTemporalModelOutput(sample=output)


class MotionConditionedUNet(UNetSpatioTemporalConditionModel):
    """SVD U-Net with 10 input channels and the official per-frame / per-location motion cross-attention.

    Constructor: ``UNetSpatioTemporalConditionModel``'s config arguments (``in_channels`` defaults to 10), e.g.
    ``MotionConditionedUNet(**unet_config("paper"))``; ``save_pretrained`` / ``from_pretrained`` / ``from_config``
    work as for any diffusers model.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 10,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = PAPER_UNET_CONFIG["down_block_types"],
        up_block_types: tuple[str, ...] = PAPER_UNET_CONFIG["up_block_types"],
        block_out_channels: tuple[int, ...] = PAPER_UNET_CONFIG["block_out_channels"],
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int] = 2,
        cross_attention_dim: int | tuple[int] = 1024,
        transformer_layers_per_block: int | tuple[int, tuple[tuple]] = 1,
        num_attention_heads: int | tuple[int, ...] = PAPER_UNET_CONFIG["num_attention_heads"],
        num_frames: int = 25,
    ):
        super().__init__(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block,
            num_attention_heads=num_attention_heads,
            num_frames=num_frames,
        )
        # Swap in the routing forward; the subclass adds no state, so parameters and their init stay stock.
        for module in self.modules():
            if type(module) is TransformerSpatioTemporalModel:
                module.__class__ = MotionRoutedTransformer

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        return_dict: bool = True,
    ):
        """Denoise ``sample (B, T, in_channels, h, w)`` -> ``(B, T, out_channels, h, w)``.

        Args:
            sample: ``cat([noisy latent (4), keyframe latent (4), motion (2)], dim=2)`` for the paper config.
            timestep: a number, a 0-d tensor or ``(B,)`` (EDM: ``0.25 * log(sigma)``).
            encoder_hidden_states: ``(B, T, 256, cross_attention_dim)`` motion features (16 x 16 grid, row-major).
            added_time_ids: ``(B, 3)`` = ``[fps, motion_bucket_id, noise_aug_strength]`` (paper config).

        Raises:
            ValueError: a shape that does not match the above, naming the expected shape.
        """
        self._check_inputs(sample, timestep, encoder_hidden_states, added_time_ids)
        token = _MOTION_CONTEXT.set(encoder_hidden_states)
        try:
            placeholder = encoder_hidden_states[:, 0, :1]  # (B, 1, C): stock repeats it, the transformers ignore it
            return super().forward(sample, timestep, placeholder, added_time_ids, return_dict=return_dict)
        finally:
            _MOTION_CONTEXT.reset(token)

    def _check_inputs(self, sample, timestep, encoder_hidden_states, added_time_ids) -> None:
        config = self.config
        if sample.ndim != 5 or sample.shape[2] != config.in_channels or min(sample.shape) < 1:
            raise ValueError(
                f"sample must be (B, T, {config.in_channels}, h, w) with B, T, h, w >= 1, got {tuple(sample.shape)}"
            )
        batch, frames = sample.shape[:2]
        dim = config.cross_attention_dim
        if isinstance(dim, (list, tuple)):
            if len(set(dim)) != 1:
                raise ValueError(f"per-block cross_attention_dim {dim} is not supported by the motion routing")
            dim = dim[0]
        expected = (batch, frames, MOTION_TOKENS, dim)
        if tuple(encoder_hidden_states.shape) != expected:
            raise ValueError(
                f"encoder_hidden_states must be (B, T, {MOTION_TOKENS}, cross_attention_dim) = {expected} for sample "
                f"{tuple(sample.shape)} (one {MOTION_GRID[0]}x{MOTION_GRID[1]} motion grid per frame), "
                f"got {tuple(encoder_hidden_states.shape)}"
            )
        ids = config.projection_class_embeddings_input_dim // config.addition_time_embed_dim
        if tuple(added_time_ids.shape) != (batch, ids):
            raise ValueError(f"added_time_ids must be (B, {ids}) = {(batch, ids)}, got {tuple(added_time_ids.shape)}")
        if torch.is_tensor(timestep) and timestep.ndim > 0 and tuple(timestep.shape) not in ((1,), (batch,)):
            raise ValueError(f"timestep must be a number, a 0-d tensor or ({batch},), got {tuple(timestep.shape)}")
