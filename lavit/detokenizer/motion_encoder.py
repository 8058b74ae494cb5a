"""The motion condition encoder of the video detokenizer (docs/spec.md §4).

Motion at latent resolution ``(B, 2, T, h, w)`` -> bicubic per frame to the 16 x 16 grid
(:func:`prepare_motion`) -> ``Linear(2 -> dim)`` + spatial position embedding (256 positions, no temporal one)
-> ``depth`` divided space-time blocks (the motion tokenizer's, without down-sampling) -> LayerNorm ->
``Linear(dim -> out_channels)`` -> ``(B, T, 256, out_channels)``, the U-Net's ``encoder_hidden_states``.
Parameter names and registration order equal the official ``motion_encoder.*`` keys of ``video_3d_unet.bin``
(51,095,040 parameters at paper size), so they load strictly once the prefix is stripped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavit.config import PresetConfig
from lavit.modules.spatiotemporal import Float32LayerNorm, SpatioTemporalBlock
from lavit.tokenizers.motion_tokenizer import init_weights

__all__ = ["MOTION_CONDITION_ENCODER_CONFIGS", "MotionConditionEncoder", "MotionConditionEncoderConfig", "prepare_motion"]


@dataclass(frozen=True)
class MotionConditionEncoderConfig(PresetConfig):
    """Motion condition encoder sizes. Defaults are the official module (``build_condition_encoder``,
    51,095,040 parameters).

    Args:
        in_channels: motion channels (2).
        out_channels: output feature size, the U-Net's ``cross_attention_dim`` (1024).
        dim, num_heads, depth, mlp_ratio: transformer width (512), heads (8), blocks (12), MLP ratio (4).
        grid: (H, W) the motion is resized to; H * W tokens per frame ((16, 16) = 256).
        eps: LayerNorm epsilon (1e-5; the norms are computed in float32, as official).
        init_std: truncated-normal std of the initial weights and position embedding (0.02), or None
            for PyTorch's fan-in defaults (see ``lavit.tokenizers.motion_tokenizer.init_weights``).

    Raises:
        ValueError: at construction, naming each inconsistent or non-positive argument.
    """

    kind: ClassVar[str] = "motion condition encoder"

    in_channels: int = 2
    out_channels: int = 1024
    dim: int = 512
    num_heads: int = 8
    depth: int = 12
    mlp_ratio: float = 4.0
    grid: tuple[int, int] = (16, 16)
    eps: float = 1e-5
    init_std: float | None = 0.02

    def __post_init__(self) -> None:
        # YAML and JSON give lists: store a tuple, so configs compare and hash by value
        object.__setattr__(self, "grid", tuple(int(s) for s in self.grid))
        self.require_positive("in_channels", "out_channels", "dim", "num_heads", "depth", "mlp_ratio", "eps")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if int(self.dim * self.mlp_ratio) < 1:
            raise ValueError(f"dim * mlp_ratio must be at least 1, got {self.dim} * {self.mlp_ratio}")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be two positive sizes (H, W), got {self.grid}")
        if self.init_std is not None and not self.init_std > 0:
            raise ValueError(f"init_std must be positive or None, got {self.init_std}")

    @property
    def num_tokens(self) -> int:
        """Motion tokens per frame (256)."""
        return math.prod(self.grid)


MOTION_CONDITION_ENCODER_CONFIGS: dict[str, dict[str, Any]] = {
    # docs/spec.md §4: the official build_condition_encoder(dim=512, num_heads=8), out_channel 1024.
    "paper": dict(),
    # reference/motion_condition_encoder_tiny_parity.safetensors: the official module at dim 64, 4 heads.
    "tiny": dict(dim=64, num_heads=4),
}
MotionConditionEncoderConfig.presets = MOTION_CONDITION_ENCODER_CONFIGS


def _describe(x: object) -> str:
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_finite(motion: torch.Tensor) -> None:
    finite = torch.isfinite(motion)
    if not bool(finite.all()):
        nan, inf = int(torch.isnan(motion).sum()), int(torch.isinf(motion).sum())
        clips = sorted({int(i) for i in (~finite).flatten(1).any(1).nonzero().flatten()})
        raise ValueError(f"motion holds non-finite values ({nan} NaN, {inf} Inf) in clips {clips[:10]} of the batch")


def prepare_motion(motion: torch.Tensor, grid: Sequence[int] = (16, 16), in_channels: int = 2) -> torch.Tensor:
    """Resize motion to the encoder's grid as the official ``encode_motion``: each frame bicubic
    (``align_corners=False``, no antialias) in float32; non-square motion is squashed.

    Args:
        motion: (B, in_channels, T, h, w) floating-point motion at latent resolution.
        grid: (H, W) output size.

    Returns:
        (B, in_channels, T, H, W) float32.

    Raises:
        ValueError: naming the expected shape, for a wrong rank, channel count or dtype, or non-finite values.
    """
    if not isinstance(motion, torch.Tensor) or motion.ndim != 5 or motion.shape[1] != in_channels or not motion.is_floating_point():
        raise ValueError(f"motion must be a floating-point tensor of shape (B, {in_channels}, T, h, w), got {_describe(motion)}")
    _check_finite(motion)
    b, c, t, h, w = motion.shape
    frames = motion.float().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=tuple(grid), mode="bicubic", align_corners=False)
    return frames.reshape(b, t, c, *grid).permute(0, 2, 1, 3, 4)


class MotionConditionEncoder(nn.Module):
    """The official motion condition encoder built from a :class:`MotionConditionEncoderConfig`
    (default: the paper size, 51,095,040 parameters).

    No temporal position embedding: the output is permutation-equivariant over frames.

    Attributes:
        config: the config it was built from.
    """

    def __init__(self, config: MotionConditionEncoderConfig | None = None):
        super().__init__()
        c = MotionConditionEncoderConfig() if config is None else config
        if not isinstance(c, MotionConditionEncoderConfig):
            raise TypeError(f"MotionConditionEncoder takes a MotionConditionEncoderConfig, got {type(c).__name__}")
        self.config = c
        # registration order = the official state dict's: pos_embed, blocks, norm, in_proj, out_proj
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_tokens, c.dim))
        self.blocks = nn.ModuleList(SpatioTemporalBlock(c.dim, c.num_heads, c.mlp_ratio, c.eps, float32_norm=True)
                                    for _ in range(c.depth))
        self.norm = Float32LayerNorm(c.dim, eps=c.eps)
        self.in_proj = nn.Linear(c.in_channels, c.dim)
        self.out_proj = nn.Linear(c.dim, c.out_channels)
        init_weights(self, c.init_std)
        if c.init_std is not None:
            nn.init.trunc_normal_(self.pos_embed, std=c.init_std)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of each frame the forward takes: (2, 16, 16)."""
        return (self.config.in_channels, *self.config.grid)

    def check_motion(self, motion: torch.Tensor) -> None:
        """Raise a ValueError naming the expected (B, 2, T, 16, 16) finite floating-point input."""
        c, h, w = self.input_shape
        if (not isinstance(motion, torch.Tensor) or motion.ndim != 5 or motion.shape[1] != c or tuple(motion.shape[3:]) != (h, w)
                or motion.shape[2] < 1 or not motion.is_floating_point()):
            hint = " (resize it with prepare_motion, or call encode)" if isinstance(motion, torch.Tensor) and motion.ndim == 5 else ""
            raise ValueError(f"motion must be a floating-point tensor of shape (B, {c}, T, {h}, {w}), got {_describe(motion)}{hint}")
        _check_finite(motion)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, T, H, W) motion on the grid -> (B, T, H * W, out_channels) features."""
        self.check_motion(motion)
        b, c, t, h, w = motion.shape
        x = motion.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c).to(self.in_proj.weight.dtype)
        x = self.in_proj(x) + self.pos_embed.unsqueeze(0)
        for block in self.blocks:
            x = block(x)
        return self.out_proj(self.norm(x))

    def prepare_motion(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, T, h, w) -> (B, in_channels, T, H, W) float32: :func:`prepare_motion` to this grid."""
        return prepare_motion(motion, self.config.grid, self.config.in_channels)

    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        """Motion at latent resolution (B, in_channels, T, h, w) -> (B, T, H * W, out_channels): resize, then forward."""
        return self(self.prepare_motion(motion))
