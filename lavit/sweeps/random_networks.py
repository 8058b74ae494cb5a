"""Seeded random-weight feature networks: metrics that run with no weight file (the demo sweep, tests).

Their numbers rank sets by pixel statistics only and are not comparable to any paper. (The real I3D architecture with
random weights is no better stand-in: with untrained batch-norm statistics its 400 outputs barely vary between
videos, and FVD came out ~1e-11 for every grid point of the demo sweep.) Tables label the rows
of a metric built on one "random-weight networks" (``random_weights = True`` marks them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RandomVideoNetwork(nn.Module):
    """I3D stand-in for ``metrics.FVD(network=...)`` / ``KVD``: ``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, features)``.

    Pools each video to ``(4, pool, pool)`` cells and maps them through a fixed random projection and tanh.
    """

    random_weights = True

    def __init__(self, seed: int = 0, features: int = 400, pool: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.pool = pool
        inputs = 3 * 4 * pool * pool
        self.register_buffer("projection", torch.randn(inputs, features, generator=g) / inputs**0.5)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cells = F.adaptive_avg_pool3d(x.float(), (4, self.pool, self.pool)).flatten(1)
        return torch.tanh(3 * cells @ self.projection)


class RandomFrameNetwork(nn.Module):
    """Inception stand-in for ``metrics.FID(network=...)``: ``(N, 3, H, W)`` uint8 -> ``{"2048": (N, 2048)}``."""

    random_weights = True

    def __init__(self, seed: int = 0, pool: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.pool = pool
        inputs = 3 * pool * pool
        self.register_buffer("projection", torch.randn(inputs, 2048, generator=g) / inputs**0.5)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cells = F.adaptive_avg_pool2d(x.float() / 127.5 - 1, self.pool).flatten(1)
        return {"2048": torch.tanh(3 * cells @ self.projection)}


def uses_random_weights(module: nn.Module) -> bool:
    return any(getattr(m, "random_weights", False) for m in module.modules())
