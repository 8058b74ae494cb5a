"""Turn per-frame macroblock motion into tokenizer input: intra filling, normalisation, resizing."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from lavit.video.defaults import FIELD_SIZE
from lavit.video.validation import check_choice, check_size

# Dataset std of the (w, h)-normalised vectors used by the official release (docs/spec.md §1).
OFFICIAL_MOTION_STD = (0.0993703, 0.1130276)
# The official LM / tokenizer path feeds values 10x larger than the std-normalised ones; the
# tokenizer's decoded motion is divided by this again before it conditions the video detokenizer.
OFFICIAL_TOKENIZER_SCALE = 10.0

Normalization = Literal["official", "unit", "pixels"]
NORMALIZATIONS = ("official", "unit", "pixels")


def fill_intra_frames(motion: np.ndarray, intra: np.ndarray) -> np.ndarray:
    """Replace intra frames after the first by the mean of their nearest predicted neighbours.

    The first frame of a clip is its keyframe and stays zero. An intra frame with a predicted frame
    on only one side copies that one; with none, it stays zero.

    Args:
        motion: (T, h, w, 2) per-frame motion of one clip.
        intra: (T,) bool, True where the frame carries no motion because it was intra-coded.

    Returns:
        (T, h, w, 2) a filled copy.
    """
    out = motion.copy()
    predicted = np.flatnonzero(~intra)
    for t in np.flatnonzero(intra):
        if t == 0:
            continue
        before = predicted[predicted < t]
        after = predicted[predicted > t]
        neighbours = [motion[i] for i in (before[-1:].tolist() + after[:1].tolist())]
        if neighbours:
            out[t] = np.mean(neighbours, axis=0)
    return out


def normalize_motion(motion: np.ndarray, width: int, height: int, mode: Normalization = "official") -> np.ndarray:
    """Scale pixel displacements.

    Modes:
        ``"official"``: x / width and y / height, then / OFFICIAL_MOTION_STD, then x10: the
            tokenizer's input scale in the official release.
        ``"unit"``: x / width and y / height only (the paper's [-1, 1] range).
        ``"pixels"``: unchanged.

    Args:
        motion: (..., 2) displacement in pixels, (x, y) last.
    """
    check_choice("normalization", mode, NORMALIZATIONS)
    if mode == "pixels":
        return motion.astype(np.float32, copy=False)
    scale = np.array([1.0 / width, 1.0 / height], dtype=np.float64)
    if mode == "official":
        scale = scale / np.asarray(OFFICIAL_MOTION_STD) * OFFICIAL_TOKENIZER_SCALE
    return (motion * scale).astype(np.float32)


def resize_motion(motion: np.ndarray, size: tuple[int, int] = FIELD_SIZE) -> torch.Tensor:
    """Bicubic resize of a motion sequence to the tokenizer grid.

    Args:
        motion: (T, h, w, 2).
        size: (H, W) target, 20 x 36 in the paper.

    Returns:
        (2, T, H, W) float32 tensor, the tokenizer's per-clip layout.
    """
    check_size("size", size)
    x = torch.from_numpy(np.ascontiguousarray(motion)).permute(0, 3, 1, 2)  # (T, 2, h, w)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False)
    return x.permute(1, 0, 2, 3).contiguous()
