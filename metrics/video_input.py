"""Validation and conversion of the videos / images the metrics receive.

Convention: videos are ``(B, T, 3, H, W)`` and images ``(B, 3, H, W)``, either ``uint8`` in [0, 255]
or floating point in a declared ``value_range`` (e.g. ``(-1, 1)`` or ``(0, 1)``). A float tensor whose
values leave the declared range (a [0, 255] video declared as [-1, 1], say) raises instead of giving
a silently wrong number.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

# float round-off from decoders / resizers; anything beyond this is a wrong declaration
RANGE_TOLERANCE = 1e-3


def check_value_range(x: torch.Tensor, value_range: Sequence[float], name: str) -> None:
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise ValueError(f"{name} must be uint8 or floating point, got {x.dtype}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if x.numel() == 0:
        return
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values")
    xmin, xmax = float(x.min()), float(x.max())
    slack = RANGE_TOLERANCE * (hi - lo)
    if xmin < lo - slack or xmax > hi + slack:
        raise ValueError(
            f"{name} values lie in [{xmin:.4g}, {xmax:.4g}] but value_range ({lo:g}, {hi:g}) was declared; "
            "pass uint8 frames or set value_range to the data's range"
        )


def to_uint8(x: torch.Tensor, value_range: Sequence[float], name: str = "input") -> torch.Tensor:
    """uint8 or float in ``value_range`` -> uint8 [0, 255] (rounded), same shape."""
    check_value_range(x, value_range, name)
    if x.dtype == torch.uint8:
        return x
    lo, hi = float(value_range[0]), float(value_range[1])
    return ((x.float() - lo) / (hi - lo) * 255).round().clamp(0, 255).to(torch.uint8)


def to_signed_unit(x: torch.Tensor, value_range: Sequence[float], name: str = "input") -> torch.Tensor:
    """uint8 or float in ``value_range`` -> float32 in [-1, 1] (uint8 ``v`` -> ``v / 127.5 - 1``)."""
    check_value_range(x, value_range, name)
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1
    lo, hi = float(value_range[0]), float(value_range[1])
    return ((x.float() - lo) / (hi - lo) * 2 - 1).clamp(-1, 1)


def check_video(video: torch.Tensor, min_frames: int, name: str = "video") -> None:
    """Raise a ValueError unless ``video`` is (B, T >= min_frames, 3, H, W)."""
    if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[2] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"{name} must be a (B, T, 3, H, W) tensor, got {shape}")
    if video.shape[1] < min_frames:
        raise ValueError(f"{name} has {video.shape[1]} frames; this protocol needs at least {min_frames}")


def check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor, got {shape}")


def select_frames(video: torch.Tensor, num_frames: int, where: str = "first") -> torch.Tensor:
    """(B, T, ...) -> (B, num_frames, ...): the first or the central ``num_frames`` frames."""
    t = video.shape[1]
    if where == "first":
        start = 0
    elif where == "center":
        start = (t - num_frames) // 2
    else:
        raise ValueError(f"frame selection must be 'first' or 'center', got {where!r}")
    return video[:, start : start + num_frames]


def resize_frames(frames: torch.Tensor, size: int | Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, size, size) by ``F.interpolate`` (align_corners=False, no antialias)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(frames.shape[-2:]) == size:
        return frames
    return F.interpolate(frames, size=size, mode=mode, align_corners=False)
