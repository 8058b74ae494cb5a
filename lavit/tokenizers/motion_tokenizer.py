"""The motion tokenizer: a spatiotemporal VQ-VAE over motion-vector clips (docs/spec.md §2).

``(B, 2, 24, 20, 36)`` motion -> encoder (divided space-time attention, strided 3D convs) ->
``(B, 3, 5, 9, 512)`` -> Linear-Tanh-Linear to 32-d -> l2-normalised codebook of 1024 -> 135 tokens in
(t, h, w) row-major order -> decoder (nearest upsampling + 3D convs + the same blocks) -> motion.
Module and parameter names equal the official release, so ``motion_tokenizer.bin`` loads strictly.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavit.modules.spatiotemporal import SpatioTemporalBlock
from lavit.tokenizers.motion_config import PAPER_STRIDES, MotionTokenizerConfig
from lavit.tokenizers.quantizer import NormEMAQuantizer, QuantizerOutput

__all__ = ["PAPER_STRIDES", "MotionTokenizer", "MotionTokenizerConfig"]


def _same_padding(stride: Sequence[int]) -> tuple[int, ...]:
    """F.pad tuple (w_l, w_r, h_t, h_b, t_f, t_b) making a kernel-3 conv output ``size / stride``."""
    pads = [(1, 1) if s == 1 else (0, 1) for s in stride]  # (t, h, w)
    return (*pads[2], *pads[1], *pads[0])


class Downsample(nn.Module):
    """Explicit zero padding, then Conv3d(kernel 3, stride) on channels-last input (B, T, H, W, C)."""

    def __init__(self, dim: int, stride: Sequence[int]):
        super().__init__()
        self.pad = _same_padding(stride)
        self.conv = nn.Conv3d(dim, dim, kernel_size=3, stride=tuple(stride), padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.permute(0, 4, 1, 2, 3), self.pad)
        return self.conv(x).permute(0, 2, 3, 4, 1)


class Upsample(nn.Module):
    """Nearest upsampling by ``scale`` (computed in float32), then Conv3d(kernel 3, padding 1);
    (B, C, T, H, W) -> (B, C, T*st, H*sh, W*sw)."""

    def __init__(self, dim: int, scale: Sequence[int]):
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.conv = nn.Conv3d(dim, dim, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.float(), scale_factor=self.scale, mode="nearest").to(x.dtype)
        return self.conv(x)


def init_weights(module: nn.Module, std: float | None = 0.02) -> None:
    """Official initialisation: truncated normal(std) weights, zero biases, unit LayerNorms.

    ``std=None`` keeps PyTorch's fan-in scaled defaults for linear and conv layers instead. The
    official 0.02 suits the paper width (512); at dim 32 it shrinks the signal ~10x per linear layer,
    and we measured the decoder's output becoming independent of the tokens within 5 AdamW steps at
    lr 3e-3 (a collapse to the mean motion), which the fan-in initialisation avoided.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            if std is None:
                m.reset_parameters()
                continue
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MotionEncoder(nn.Module):
    """(B, C_in, T, H, W) -> (B, T', H', W', dim) with T' = T / prod(stride_t) etc."""

    def __init__(self, in_channels: int, dim: int, num_heads: int, stage_depths: Sequence[int], strides: Sequence[Sequence[int]],
                 num_frames: int, field_size: Sequence[int], mlp_ratio: float = 4.0, eps: float = 1e-5,
                 init_std: float | None = 0.02):
        super().__init__()
        self.stage_depths = list(stage_depths)
        self.strides = [tuple(s) for s in strides]
        self.in_proj = nn.Linear(in_channels, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, field_size[0] * field_size[1], dim))
        self.temp_pos = nn.Parameter(torch.zeros(1, num_frames, dim))
        self.blocks = nn.ModuleList(SpatioTemporalBlock(dim, num_heads, mlp_ratio, eps) for _ in range(sum(stage_depths)))
        self.down_sample_layers = nn.ModuleList(Downsample(dim, s) for s in self.strides)
        self.norm = nn.LayerNorm(dim, eps=eps)
        init_weights(self, init_std)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.temp_pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        x = self.in_proj(x.permute(0, 2, 3, 4, 1)).reshape(b, t, h * w, -1)
        x = x + self.pos_embed.unsqueeze(0) + self.temp_pos.unsqueeze(2)
        blocks = iter(self.blocks)
        for depth, down, stride in zip(self.stage_depths, self.down_sample_layers, self.strides):
            for _ in range(depth):
                x = next(blocks)(x)
            x = down(x.reshape(b, t, h, w, -1))
            t, h, w = x.shape[1:4]
            x = x.reshape(b, t, h * w, -1)
        return self.norm(x).reshape(b, t, h, w, -1)


class MotionDecoder(nn.Module):
    """(B, T', H', W', code_dim) -> (B, T, H, W, dim), undoing the encoder's strides in reverse."""

    def __init__(self, code_dim: int, dim: int, num_heads: int, stage_depths: Sequence[int], strides: Sequence[Sequence[int]],
                 mlp_ratio: float = 4.0, eps: float = 1e-5, init_std: float | None = 0.02):
        super().__init__()
        self.stage_depths = list(stage_depths)
        self.in_proj = nn.Linear(code_dim, dim)
        self.blocks = nn.ModuleList(SpatioTemporalBlock(dim, num_heads, mlp_ratio, eps) for _ in range(sum(stage_depths)))
        self.up_sample_layers = nn.ModuleList(Upsample(dim, s) for s in reversed([tuple(s) for s in strides]))
        self.norm = nn.LayerNorm(dim, eps=eps)
        init_weights(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x)
        blocks = iter(self.blocks)
        for depth, up in zip(self.stage_depths, self.up_sample_layers):
            x = up(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
            b, t, h, w, c = x.shape
            x = x.reshape(b, t, h * w, c)
            for _ in range(depth):
                x = next(blocks)(x)
            x = x.reshape(b, t, h, w, c)
        return self.norm(x)


class MotionTokenizer(nn.Module):
    """Motion VQ-VAE built from a :class:`MotionTokenizerConfig` (default: the paper size, 158,476,322
    parameters; ``MotionTokenizerConfig.from_name("demo")`` etc. for the presets).

    Attributes:
        config: the config it was built from (saved with its weights by ``save_motion_tokenizer``).
        input_shape: (C, T, H, W) of one clip. token_grid: (t, h, w) of its tokens.
    """

    def __init__(self, config: MotionTokenizerConfig | None = None):
        super().__init__()
        c = MotionTokenizerConfig() if config is None else config
        if not isinstance(c, MotionTokenizerConfig):
            raise TypeError(f"MotionTokenizer takes a MotionTokenizerConfig, got {type(c).__name__}")
        self.config = c
        self.input_scale = float(c.input_scale)
        self.input_shape = c.input_shape
        self.token_grid = c.token_grid
        self.encoder = MotionEncoder(c.in_channels, c.dim, c.num_heads, c.stage_depths, c.strides, c.num_frames, c.field_size,
                                     c.mlp_ratio, c.eps, c.init_std)
        self.decoder = MotionDecoder(c.codebook_dim, c.dim, c.num_heads, c.stage_depths, c.strides, c.mlp_ratio, c.eps, c.init_std)
        self.encode_task_layer = nn.Sequential(nn.Linear(c.dim, c.dim), nn.Tanh(), nn.Linear(c.dim, c.codebook_dim))
        self.decode_task_layer = nn.Sequential(nn.Linear(c.dim, c.dim), nn.Tanh(), nn.Linear(c.dim, c.in_channels))
        init_weights(self.encode_task_layer, c.init_std)
        init_weights(self.decode_task_layer, c.init_std)
        self.quantize = NormEMAQuantizer(c.codebook_size, c.codebook_dim, c.decay, c.commitment_weight, c.kmeans_init,
                                         dead_code_steps=c.dead_code_steps, restart_buffer=c.restart_buffer,
                                         warmup_steps=c.quantizer_warmup_steps)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.token_grid)

    def check_motion(self, motion: torch.Tensor) -> None:
        """Raise a ValueError naming the expected (B, 2, 24, 20, 36) finite float input."""
        if not isinstance(motion, torch.Tensor) or motion.ndim != 5 or tuple(motion.shape[1:]) != self.input_shape or not motion.is_floating_point():
            got = f"{tuple(motion.shape)} {motion.dtype}" if isinstance(motion, torch.Tensor) else type(motion).__name__
            raise ValueError(f"motion must be a floating-point tensor of shape (B, {', '.join(map(str, self.input_shape))}), got {got}")
        finite = torch.isfinite(motion)
        if not bool(finite.all()):  # NaN would otherwise quantise silently to token 0 everywhere
            nan, inf = int(torch.isnan(motion).sum()), int(torch.isinf(motion).sum())
            clips = sorted({int(i) for i in (~finite).flatten(1).any(1).nonzero().flatten()})
            raise ValueError(f"motion holds non-finite values ({nan} NaN, {inf} Inf) in clips {clips[:10]} of the batch")

    def encode(self, motion: torch.Tensor) -> QuantizerOutput:
        """(B, 2, T, H, W) -> quantiser output with quantized (B, t, h, w, code_dim), indices (B, t, h, w)."""
        self.check_motion(motion)
        features = self.encoder(motion * self.input_scale)
        with torch.autocast(device_type=motion.device.type, enabled=False):
            z = self.encode_task_layer(features.float())
        return self.quantize(z)

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """(B, t, h, w, code_dim) -> (B, 2, T, H, W) motion, before any resize or scaling."""
        return self.decode_task_layer(self.decoder(quantized)).permute(0, 4, 1, 2, 3) / self.input_scale

    def forward(self, motion: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training forward: (reconstruction (B, 2, T, H, W), quantiser output)."""
        q = self.encode(motion)
        return self.decode(q.quantized), q

    @torch.no_grad()
    def tokenize(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, 2, 24, 20, 36) float motion -> (B, 135) int64 token ids in (t, h, w) row-major order."""
        return self.encode(motion).indices.reshape(motion.shape[0], -1)

    @torch.no_grad()
    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 135) int64 token ids -> (B, 2, 24, 20, 36) motion (same scale as the tokenizer input)."""
        n = self.num_tokens
        if tokens.ndim != 2 or tokens.shape[1] != n or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor of shape (B, {n}), got {tuple(tokens.shape)} {tokens.dtype}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.quantize.num_codes):
            raise ValueError(f"token ids must lie in [0, {self.quantize.num_codes}), got [{int(tokens.min())}, {int(tokens.max())}]")
        codes = self.quantize.lookup(tokens.long()).view(tokens.shape[0], *self.token_grid, -1)
        return self.decode(codes)

    @torch.no_grad()
    def reconstruct(self, motion: torch.Tensor) -> torch.Tensor:
        """Tokenize then detokenize: (B, 2, 24, 20, 36) -> (B, 2, 24, 20, 36)."""
        return self.decode(self.encode(motion).quantized)
