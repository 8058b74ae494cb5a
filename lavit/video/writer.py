"""Write decoded frames to a video file (mp4 / mkv: H.264; gif: palette GIF) with PyAV."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from lavit.video.pixels import from_rgb


def write_frames(frames: np.ndarray | torch.Tensor, path: str | os.PathLike, fps: float = 6.0, quality: int = 18) -> Path:
    """Encode ``frames (T, H, W, 3)`` uint8 RGB to ``path``; the suffix picks the format.

    ``.mp4`` / ``.mkv`` / ``.mov``: H.264 (yuv444p when H or W is odd, which 4:2:0 cannot hold; else yuv420p, the
    format every player reads), CRF ``quality``, no B-frames. ``.gif``: an 8-bit palette GIF. The file holds exactly
    T frames at ``fps``.

    Raises:
        ValueError: frames that are not a non-empty (T, H, W, 3) uint8 array, or an unknown suffix.
    """
    array = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or min(array.shape) < 1:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 array, got {array.shape} {array.dtype}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".mkv", ".mov", ".gif"):
        raise ValueError(f"{path}: unknown video suffix {suffix!r}; use .mp4, .mkv, .mov or .gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    _, height, width, _ = array.shape
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        if suffix == ".gif":
            stream = container.add_stream("gif", rate=rate)
            stream.pix_fmt = "rgb8"
        else:
            stream = container.add_stream("libx264", rate=rate)
            stream.pix_fmt = "yuv444p" if height % 2 or width % 2 else "yuv420p"
            stream.options = {"crf": str(quality), "preset": "veryfast", "bf": "0"}
        stream.width, stream.height = width, height
        for image in array:
            for packet in stream.encode(from_rgb(image, stream.pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def comparison_picture(rows: list[np.ndarray | torch.Tensor], num_frames: int = 6, gap: int = 2) -> np.ndarray:
    """One picture of several videos, one per row (e.g. ground truth | reconstruction), ``num_frames`` evenly spaced
    frames per row: ``rows`` of (T, H, W, 3) uint8 with equal H, W -> (rows * (H + gap) - gap, k * (W + gap) - gap, 3)."""
    videos = [r.cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r) for r in rows]
    if not videos or any(v.ndim != 4 or v.shape[-1] != 3 or v.shape[1:] != videos[0].shape[1:] for v in videos):
        raise ValueError(f"rows must be (T, H, W, 3) videos of one frame size, got {[v.shape for v in videos]}")
    _, h, w, _ = videos[0].shape
    k = min(num_frames, min(len(v) for v in videos))
    canvas = np.full((len(videos) * (h + gap) - gap, k * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, video in enumerate(videos):
        for c, t in enumerate(np.linspace(0, len(video) - 1, k).round().astype(int)):
            canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = video[t]
    return canvas
