"""Divided space-time transformer block of the motion tokenizer and the motion-conditioning encoder.

Parameter names follow the official release (``norm0``, ``spatial_attention.{qkv,q_bias,v_bias,proj}``,
``norm1``, ``temporal_attention``, ``norm2``, ``mlp.fc1/fc2``) so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with one bias-free qkv Linear plus learned q and v biases (k has none).

    Computed through ``F.scaled_dot_product_attention`` (scale 1 / sqrt(head_dim)).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_parameter("q_bias", None)
            self.register_parameter("v_bias", None)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        b, n, c = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Float32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back to the input dtype (the official motion-conditioning
    encoder's ``LayerNorm``); the same parameters as ``nn.LayerNorm``, identical for float32 input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SpatioTemporalBlock(nn.Module):
    """Pre-norm block: attention over the positions of each frame, then over the frames of each
    position, then an MLP, each with a residual connection.

    Args:
        dim: channels. num_heads: attention heads. mlp_ratio: MLP hidden size / dim.
        eps: LayerNorm epsilon (1e-5 in the official config).
        float32_norm: compute the LayerNorms in float32 whatever the input dtype (:class:`Float32LayerNorm`,
            as the official motion-conditioning encoder); the tokenizer keeps plain ``nn.LayerNorm``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5, float32_norm: bool = False):
        super().__init__()
        norm = Float32LayerNorm if float32_norm else nn.LayerNorm
        self.norm0 = norm(dim, eps=eps)
        self.spatial_attention = Attention(dim, num_heads)
        self.norm1 = norm(dim, eps=eps)
        self.temporal_attention = Attention(dim, num_heads)
        self.norm2 = norm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, S, C) -> (B, T, S, C), S = H * W positions per frame."""
        b, t, s, c = x.shape
        x = x.reshape(b * t, s, c)
        x = x + self.spatial_attention(self.norm0(x))
        x = x.view(b, t, s, c).transpose(1, 2).reshape(b * s, t, c)
        x = x + self.temporal_attention(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x.view(b, s, t, c).transpose(1, 2).contiguous()
