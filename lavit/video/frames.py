"""Decoded RGB frames at the native frame rate (no transcoding): the input of the evaluation metrics."""

from __future__ import annotations

import os

import av
import torch
import torch.nn.functional as F

from lavit.video.errors import VideoDecodeError
from lavit.video.pixels import to_rgb
from lavit.video.transcode import open_video
from lavit.video.validation import check_choice, check_positive


def read_frames(path: str | os.PathLike, num_frames: int, where: str = "first", size: int | None = 224,
                allow_fewer: bool = False) -> torch.Tensor:
    """Decode ``num_frames`` consecutive frames at the native frame rate: (T, 3, S, S) uint8.

    Args:
        where: ``"first"`` frames or the ``"center"`` of the video.
        size: square side after resizing (bilinear, antialiased); None keeps the decoded size.
        allow_fewer: a shorter video gives all its frames (at least one) instead of an error.

    Raises:
        VideoDecodeError: unreadable input, no frame, or fewer than ``num_frames`` frames (unless ``allow_fewer``).
    """
    check_positive("num_frames", num_frames, integer=True)
    check_choice("where", where, ("first", "center"))
    check_positive("size", size, integer=True, allow_none=True)
    container, stream = open_video(path)
    frames = []
    try:
        total = stream.frames or 0
        skip = max(total - num_frames, 0) // 2 if where == "center" else 0
        for i, frame in enumerate(container.decode(stream)):
            if i < skip:
                continue
            frames.append(torch.from_numpy(to_rgb(frame)))
            if len(frames) == num_frames:
                break
    except av.error.FFmpegError as err:
        raise VideoDecodeError(str(path), f"decoding failed after {len(frames)} frames ({err})") from err
    finally:
        container.close()
    if not frames or (len(frames) < num_frames and not allow_fewer):
        raise VideoDecodeError(str(path), f"has {len(frames) + skip} frames; {num_frames} are needed")
    video = torch.stack(frames).permute(0, 3, 1, 2)
    if size is not None and tuple(video.shape[-2:]) != (size, size):
        video = F.interpolate(video.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        video = video.round().clamp(0, 255).to(torch.uint8)
    return video
