"""Decoded frames as RGB at a fixed size, covering the whole picture (no crop), like the motion field."""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from lavit.video.pixels import EXACT_BICUBIC

from lavit.video.validation import check_size

# swscale's bicubic widens its kernel by the downscaling factor, so it is antialiased (within ~1.3 grey
# levels mean of torch's bicubic antialias=True on real frames), and converts YUV to RGB in the same pass.
# Exact: the same pixels on every CPU (lavit.video.pixels).
INTERPOLATION = EXACT_BICUBIC


class FrameResizer:
    """Call with a decoded ``av.VideoFrame`` (any pixel format) -> (3, H, W) uint8 RGB, ``size = (H, W)``.

    The whole frame is scaled to exactly H x W (the aspect changes when H / W differs from the frame's)
    with swscale bicubic (``INTERPOLATION``) straight from its decoded format to rgb24. The motion field
    covers the whole frame too (squashed to the field size, as official), so frame pixel (y, x) and motion
    cell (y * field_h / H, x * field_w / W) always describe the same place; a centre crop would shift
    the picture against its motion. One reformatter is kept per instance, so its scaler is set up once.
    """

    def __init__(self, size: tuple[int, int]):
        check_size("frame_size", size)
        self.size = (int(size[0]), int(size[1]))
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        h, w = self.size
        rgb = self._reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation=INTERPOLATION, threads=1)
        return np.ascontiguousarray(rgb.to_ndarray().transpose(2, 0, 1))
