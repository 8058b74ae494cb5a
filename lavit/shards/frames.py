"""A clip's frames as compact bytes (the ``"frames"`` key of ``detokenizer`` shards), and back.

``frames_format``:

- ``"mp4"``: H.264 through ``libx264rgb`` at qp 0 (lossless RGB, exact round trip), one stream per clip;
- ``"jpeg"``: one JPEG (quality ``keyframe_quality``, 4:4:4) per frame, length-prefixed.

Measured on demo clips and the real sample: see README "Preprocessing at scale" (size, decode time, error).
"""

from __future__ import annotations

import io
import struct
from typing import Any

import av
import numpy as np

from lavit.shards.format import decode_image, encode_image
from lavit.video.pixels import to_rgb

FRAMES_FORMATS = ("mp4", "jpeg")


def _format(options: Any) -> tuple[str, int]:
    fmt = getattr(options, "frames_format", None) or "mp4"
    if fmt not in FRAMES_FORMATS:
        raise ValueError(f"frames_format must be one of {FRAMES_FORMATS}, got {fmt!r}")
    return fmt, int(getattr(options, "keyframe_quality", 95))


def encode_frames(frames: np.ndarray, options: Any) -> bytes:
    """(T, 3, H, W) uint8 RGB -> bytes in ``options.frames_format`` (H and W even for ``"mp4"``)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected (T, 3, H, W) uint8 frames, got {frames.shape} {frames.dtype}")
    fmt, quality = _format(options)
    hwc = np.ascontiguousarray(frames.transpose(0, 2, 3, 1))
    if fmt == "jpeg":
        parts = [encode_image(f, "jpeg", quality) for f in hwc]
        return struct.pack("<I", len(parts)) + b"".join(struct.pack("<I", len(p)) + p for p in parts)
    _, height, width, _ = hwc.shape
    if height % 2 or width % 2:
        raise ValueError(f"frames_format 'mp4' needs even frame sizes, got {height}x{width}")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264rgb", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        stream.options = {"qp": "0", "preset": "veryfast"}
        for f in hwc:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def decode_frames(data: bytes, options: Any) -> np.ndarray:
    """Bytes from :func:`encode_frames` -> (T, 3, H, W) uint8 RGB."""
    fmt, _ = _format(options)
    if fmt == "jpeg":
        (count,), offset, out = struct.unpack_from("<I", data), 4, []
        for _ in range(count):
            (size,) = struct.unpack_from("<I", data, offset)
            out.append(decode_image(data[offset + 4 : offset + 4 + size]))
            offset += 4 + size
        hwc = np.stack(out)
    else:
        with av.open(io.BytesIO(data), "r") as container:
            hwc = np.stack([to_rgb(f) for f in container.decode(video=0)])
    return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))
