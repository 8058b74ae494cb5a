"""Building blocks shared by several models."""

from lavit.modules.spatiotemporal import Attention, Mlp, SpatioTemporalBlock

__all__ = ["Attention", "Mlp", "SpatioTemporalBlock"]
