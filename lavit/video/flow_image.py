"""Colour-code motion fields the way optical-flow pictures are (Middlebury colour wheel)."""

from __future__ import annotations

import numpy as np
import torch


def _colour_wheel() -> np.ndarray:
    """(55, 3) RGB wheel of Baker et al., "A Database and Evaluation Methodology for Optical Flow"."""
    segments = [(15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)), (4, (0, 255, 0), (0, 255, 255)),
                (11, (0, 255, 255), (0, 0, 255)), (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0))]
    rows = []
    for n, start, end in segments:
        t = np.arange(n)[:, None] / n
        rows.append(np.asarray(start) * (1 - t) + np.asarray(end) * t)
    return np.concatenate(rows).astype(np.float64)


_WHEEL = _colour_wheel()


def motion_to_rgb(motion: np.ndarray | torch.Tensor, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a motion field: hue = direction, saturation = magnitude (white = still).

    Args:
        motion: (..., H, W, 2) displacement (x, y), any units.
        max_magnitude: magnitude shown fully saturated; default the field's own maximum.

    Returns:
        (..., H, W, 3) uint8 RGB.
    """
    m = np.asarray(motion, dtype=np.float64)
    u, v = m[..., 0], m[..., 1]
    mag = np.hypot(u, v)
    top = float(mag.max()) if max_magnitude is None else float(max_magnitude)
    radius = np.clip(mag / top, 0.0, 1.0) if top > 0 else np.zeros_like(mag)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    pos = (angle + 1) / 2 * (len(_WHEEL) - 1)
    lo = np.floor(pos).astype(int)
    hi = (lo + 1) % len(_WHEEL)
    frac = (pos - lo)[..., None]
    colour = (1 - frac) * _WHEEL[lo] / 255 + frac * _WHEEL[hi] / 255
    colour = 1 - radius[..., None] * (1 - colour)
    return np.round(colour * 255).astype(np.uint8)


def motion_clip_picture(motion: np.ndarray | torch.Tensor, columns: int = 6, scale: int = 8, gap: int = 2) -> np.ndarray:
    """Tile a clip's colour-coded frames into one picture, sharing one magnitude scale.

    Args:
        motion: (2, T, H, W) one clip in the tokenizer layout.
        columns: frames per row.
        scale: nearest-neighbour upscaling of each macroblock cell.

    Returns:
        (rows * (H * scale + gap) - gap, columns * (W * scale + gap) - gap, 3) uint8.
    """
    m = np.asarray(motion, dtype=np.float64)
    if m.ndim != 4 or m.shape[0] != 2:
        raise ValueError(f"expected one clip of motion shaped (2, T, H, W), got {m.shape}")
    frames = motion_to_rgb(np.moveaxis(m, 0, -1))  # (T, H, W, 3)
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    t, h, w, _ = frames.shape
    rows = -(-t // columns)
    canvas = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        canvas[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = frame
    return canvas


def motion_comparison_picture(inputs, reconstructions, frames: int = 8, scale: int = 6, gap: int = 4) -> np.ndarray:
    """Input vs reconstructed motion, colour-coded: per clip one row of input frames above one row of
    reconstructed frames, both on the input's magnitude scale.

    Args:
        inputs, reconstructions: (N, 2, T, H, W).
        frames: evenly spaced frames shown per clip.

    Returns:
        (2 * N * (H * scale + gap) - gap, frames * (W * scale + gap) - gap, 3) uint8.
    """
    x = np.asarray(inputs, dtype=np.float64)
    y = np.asarray(reconstructions, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 5 or x.shape[1] != 2:
        raise ValueError(f"expected two (N, 2, T, H, W) arrays of one shape, got {x.shape} and {y.shape}")
    n, _, t, h, w = x.shape
    pick = np.linspace(0, t - 1, min(frames, t)).round().astype(int)
    hs, ws = h * scale, w * scale
    canvas = np.full((2 * n * (hs + gap) - gap, len(pick) * (ws + gap) - gap, 3), 255, dtype=np.uint8)
    for i in range(n):
        top = float(np.hypot(x[i, 0], x[i, 1]).max())
        for r, clip in enumerate((x[i], y[i])):
            rgb = motion_to_rgb(np.moveaxis(clip[:, pick], 0, -1), max_magnitude=top or None)
            rgb = rgb.repeat(scale, axis=1).repeat(scale, axis=2)
            row = (2 * i + r) * (hs + gap)
            for j in range(len(pick)):
                canvas[row : row + hs, j * (ws + gap) : j * (ws + gap) + ws] = rgb[j]
    return canvas
