"""Display rotation (the display matrix phone videos carry): upright frames before the MPEG-4 encode.

The decision follows the ffmpeg command line's autorotation (fftools ``get_rotation`` and the
filters it inserts), so a frame comes out as FFmpeg-based players show it: 90 / 270 degrees
transpose the frame (width and height swap), 180 flips both axes, and mirrored matrices flip.
Motion vectors are then measured on the upright frames, so their axes agree with the keyframes.
"""

from __future__ import annotations

import math
import warnings

import av
import numpy as np

from lavit.video.pixels import reformat

_DISPLAYMATRIX = av.sidedata.sidedata.Type.DISPLAYMATRIX

# vf_transpose directions and flips as operations on one (H, W) image plane
_OPS = {
    "clock": lambda a: np.rot90(a, -1),
    "cclock": lambda a: np.rot90(a, 1),
    "cclock_flip": lambda a: a.T,
    "clock_flip": lambda a: np.rot90(a, -1)[::-1],
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
}


def display_turn(frame: av.VideoFrame, name: str = "") -> tuple[str, ...]:
    """Operations that make ``frame`` upright (empty: none), from its display-matrix side data."""
    data = frame.side_data.get(_DISPLAYMATRIX)
    if data is None:
        return ()
    m = np.frombuffer(bytes(data), dtype=np.int32).astype(np.float64)
    sx, sy = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if sx == 0 or sy == 0:
        return ()
    rotation = -math.degrees(math.atan2(m[1] / sy, m[0] / sx))  # av_display_rotation_get (counter-clockwise)
    theta = -round(rotation)  # fftools get_rotation: the clockwise turn that makes the frame upright
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return ("cclock_flip",) if m[3] > 0 else ("clock",)
    if abs(theta - 180) < 1:
        return tuple(op for op, flip in (("hflip", m[0] < 0), ("vflip", m[4] < 0)) if flip)
    if abs(theta - 270) < 1:
        return ("clock_flip",) if m[3] < 0 else ("cclock",)
    if abs(theta) < 1:
        return ("vflip",) if m[4] < 0 else ()
    warnings.warn(f"{name or 'video'}: display rotation of {theta:g} degrees is not a multiple of 90; frames are used as stored")
    return ()


def swaps_axes(turn: tuple[str, ...]) -> bool:
    return any(op in ("clock", "cclock", "cclock_flip", "clock_flip") for op in turn)


def turn_frame(frame: av.VideoFrame, turn: tuple[str, ...], width: int, height: int) -> av.VideoFrame:
    """``frame`` as yuv420p at (``width``, ``height``) (the stored size, even), with ``turn`` applied."""
    if frame.format.name != "yuv420p" or frame.width != width or frame.height != height:
        frame = reformat(frame, "yuv420p", width, height)
    packed = frame.to_ndarray()  # (H * 3 / 2, W): Y, then U and V (H/2 x W/2 each) row-packed
    h2, w2 = height // 2, width // 2
    chroma = packed[height:].reshape(2, h2, w2)
    planes = [packed[:height], chroma[0], chroma[1]]
    for op in turn:
        planes = [_OPS[op](p) for p in planes]
    out_h, out_w = planes[0].shape
    data = np.concatenate([planes[0].reshape(-1), planes[1].reshape(-1), planes[2].reshape(-1)]).reshape(out_h * 3 // 2, out_w)
    return av.VideoFrame.from_ndarray(data, format="yuv420p")
