"""Keyframe preprocessing for the LaVIT image tokenizer (EVA-CLIP input)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess_keyframes(frames: np.ndarray | torch.Tensor, size: int = 224) -> torch.Tensor:
    """Resize RGB frames to ``size x size`` (bicubic, antialiased) and normalise with CLIP mean/std.

    Args:
        frames: (N, H, W, 3) uint8 RGB.

    Returns:
        (N, 3, size, size) float32.
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 RGB frames, got {tuple(x.shape)} {x.dtype}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std
