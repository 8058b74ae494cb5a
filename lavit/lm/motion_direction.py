"""Horizontal pan direction: read from a demo caption and from a motion field, in one sign convention.

The demo captions (``lavit.video.synthetic.random_scene``) name the camera's pan: "... while the camera pans <dir>"
with ``<dir> = _direction(-pan)``, where ``pan`` is the background's apparent motion (content moving right = +x). The
motion fields of ``lavit.video`` are the content's forward displacement (``lavit.video.motion_vectors``: FFmpeg's
``src - dst`` turned around, a scene panning right gives +x). So a camera panning right moves the content left.

Both functions here return the sign of the CONTENT's horizontal motion: +1 = the background moves right (the camera
pans left), -1 = it moves left (the camera pans right), so ``caption_pan_direction(c) == motion_horizontal_sign(m)``
when the motion agrees with its caption. Calibrated on the demo data (tests/lm/test_motion_direction.py).
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

_PAN = re.compile(r"\bcamera pans ((?:up|down)(?: and (?:left|right))?|left|right)\b")


def caption_pan_direction(caption: str) -> int | None:
    """Sign of the background's horizontal motion a demo caption implies: "camera pans right" -> -1 (content moves
    left), "camera pans left" -> +1; None for a pan without a horizontal word ("pans up") or a still background."""
    match = _PAN.search(caption)
    if match is None:
        return None
    words = match.group(1).split()
    if "right" in words:
        return -1
    if "left" in words:
        return 1
    return None


def motion_horizontal_sign(motion: torch.Tensor) -> torch.Tensor:
    """Sign of the mean horizontal motion of each clip: ``motion (B, 2, T, H, W)`` (x first, any normalisation that
    keeps the sign) -> ``(B,)`` int64 in {-1, 0, +1} (+1 = the content moves right; 0 only for an all-zero x field)."""
    if not isinstance(motion, torch.Tensor) or motion.ndim != 5 or motion.shape[1] != 2:
        got = tuple(motion.shape) if isinstance(motion, torch.Tensor) else type(motion).__name__
        raise ValueError(f"motion must be a (B, 2, T, H, W) tensor, got {got}")
    return torch.sign(motion[:, 0].float().flatten(1).mean(1)).long()


def pan_direction_agreement(captions: Sequence[str], motion: torch.Tensor) -> tuple[int, int]:
    """``(agreeing, with_pan)``: among the captions with a horizontal pan, how many the motion's sign matches.

    Args:
        captions: B demo captions; motion: (B, 2, T, H, W) of the same clips.
    """
    if len(captions) != motion.shape[0]:
        raise ValueError(f"{len(captions)} captions for {motion.shape[0]} motion clips")
    signs = motion_horizontal_sign(motion).tolist()
    pairs = [(caption_pan_direction(c), s) for c, s in zip(captions, signs)]
    pairs = [(d, s) for d, s in pairs if d is not None]
    return sum(d == s for d, s in pairs), len(pairs)
