"""Long videos from clips: stitching (each further clip's first frame dropped), resizing, and the boundary jump."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def stitched_length(num_clips: int, clip_len: int = 24) -> int:
    """Frames of ``num_clips`` stitched clips: ``clip_len + (clip_len - 1) (num_clips - 1)`` (24 + 23 (N - 1))."""
    return clip_len + (clip_len - 1) * (num_clips - 1)


def stitch_clips(clips: Sequence[torch.Tensor]) -> torch.Tensor:
    """Clips ``(T, H, W, 3)`` in time order -> one ``(T + (T - 1) (N - 1), H, W, 3)`` video.

    Clip k + 1 starts from (a re-generation of) clip k's last frame, so its first frame repeats that moment and is
    dropped."""
    if not clips:
        raise ValueError("no clips to stitch")
    return torch.cat([clips[0], *(c[1:] for c in clips[1:])], dim=0)


def clip_boundary_jumps(video: torch.Tensor, num_clips: int, clip_len: int = 24) -> list[float]:
    """Mean absolute difference (0-255 scale) between consecutive frames at each clip boundary of a stitched video.

    Args:
        video: ``(T, H, W, 3)`` uint8 (or float) with ``T = stitched_length(num_clips, clip_len)``.

    Returns:
        ``num_clips - 1`` values: the jump from the last frame of clip k to the first kept frame of clip k + 1.
    """
    expected = stitched_length(num_clips, clip_len)
    if video.ndim != 4 or video.shape[0] != expected:
        raise ValueError(f"video must be ({expected}, H, W, 3) for {num_clips} clips of {clip_len}, got {tuple(video.shape)}")
    x = video.float()
    ends = [clip_len - 1 + (clip_len - 1) * k for k in range(num_clips - 1)]
    return [float((x[e + 1] - x[e]).abs().mean()) for e in ends]


def mean_abs_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two images of one shape, 0-255 scale."""
    return float((a.float() - b.float()).abs().mean())


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, h, w, 3)`` uint8 -> ``(B, H, W, 3)`` uint8: centre-cropped to the aspect ratio of ``size`` (H, W), then
    resized (bicubic, antialiased). The identity when the size already matches."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    h, w = images.shape[1:3]
    th, tw = size
    if h * tw > w * th:  # too tall: crop rows
        ch, cw = max(1, round(w * th / tw)), w
    else:
        ch, cw = h, max(1, round(h * tw / th))
    top, left = (h - ch) // 2, (w - cw) // 2
    x = images[:, top : top + ch, left : left + cw].permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
