"""Re-encode any video FFmpeg reads as MPEG-4 Part 2, in process (PyAV, no ffmpeg binary).

The encoder settings are the official ones (SPEC section 1): libavcodec ``mpeg4`` at 6 fps,
8000 kb/s, an I-frame every 12 frames, no B-frames. Frame-rate conversion follows FFmpeg's ``fps``
filter (round to nearest): output slot ``k`` at time ``k / fps`` shows the newest source frame whose
timestamp rounds to a slot ``<= k``, so variable-frame-rate input is resampled by time, not by index.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Union

import av

from lavit.video.defaults import DEFAULT_BIT_RATE, DEFAULT_FPS, DEFAULT_GOP_SIZE
from lavit.video.errors import VideoDecodeError

VideoSource = Union[str, os.PathLike, bytes, BinaryIO]



def source_name(source: VideoSource) -> str:
    """A printable name for a path, bytes or file object (used in error messages)."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", "<bytes>") if not isinstance(source, bytes) else "<bytes>"


def open_video(source: VideoSource) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``source`` and return the container and its first video stream.

    Raises:
        VideoDecodeError: missing, empty, unreadable, non-video or audio-only input.
    """
    name = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise VideoDecodeError(name, "file not found")
        if path.stat().st_size == 0:
            raise VideoDecodeError(name, "empty file (0 bytes)")
    elif isinstance(source, bytes):
        if not source:
            raise VideoDecodeError(name, "empty input (0 bytes)")
        source = io.BytesIO(source)
    try:
        container = av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoDecodeError(name, f"not a readable media file ({err.__class__.__name__}: {err})") from err
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = "audio-only file" if "audio" in kinds else f"streams: {', '.join(kinds) or 'none'}"
        raise VideoDecodeError(name, f"no video stream ({what})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def transcode_to_mpeg4(
    source: VideoSource,
    output: str | os.PathLike | None = None,
    *,
    fps: float = DEFAULT_FPS,
    gop_size: int = DEFAULT_GOP_SIZE,
    bit_rate: int = DEFAULT_BIT_RATE,
) -> bytes | Path:
    """Re-encode ``source`` as MPEG-4 Part 2 in an MP4 container.

    Args:
        source: path, bytes or binary file object of any video FFmpeg can read.
        output: where to write the result. ``None`` keeps it in memory and returns ``bytes``;
            a path writes there and returns it (never next to the input unless asked).
        fps: output frame rate (6 in the paper, 12 in the official reconstruction demo).
        gop_size: frames between I-frames.
        bit_rate: target bit rate in bit/s.

    Raises:
        VideoDecodeError: the input cannot be read, has no video, no frames, or is truncated.
    """
    name = source_name(source)
    container, stream = open_video(source)
    rate = Fraction(fps).limit_denominator(1001)
    sink = io.BytesIO() if output is None else str(output)
    out = av.open(sink, mode="w", format="mp4")
    try:
        ostream = None
        declared = stream.frames
        decoded = 0
        next_slot = 0
        pending = None
        t0 = None
        try:
            for frame in container.decode(stream):
                t = _timestamp(frame, decoded, stream)
                decoded += 1
                if t0 is None:
                    t0 = t
                    ostream = _add_mpeg4_stream(out, frame, rate, gop_size, bit_rate)
                slot = math.floor((t - t0) * rate + Fraction(1, 2))  # exact: no float drift, no banker's rounding
                if pending is not None:
                    while next_slot < slot:
                        _encode(out, ostream, pending, next_slot, rate)
                        next_slot += 1
                pending = frame
        except av.error.FFmpegError as err:
            raise VideoDecodeError(name, f"decoding failed after {decoded} frames ({err})") from err
        if pending is None:
            raise VideoDecodeError(name, "no decodable video frames")
        if declared and decoded < 0.95 * declared - 2:
            raise VideoDecodeError(name, f"truncated: decoded {decoded} of {declared} frames the container declares")
        # The last frame lasts one nominal frame interval; it fills the slots that start before then.
        end = _timestamp(pending, decoded - 1, stream) - t0 + _nominal_interval(stream)
        while next_slot == 0 or next_slot < end * rate:
            _encode(out, ostream, pending, next_slot, rate)
            next_slot += 1
        for packet in ostream.encode(None):
            out.mux(packet)
    finally:
        out.close()
        container.close()
    return sink.getvalue() if output is None else Path(output)


def _timestamp(frame, index: int, stream) -> Fraction:
    """Exact presentation time in seconds; frame index / nominal rate when the stream has no pts."""
    if frame.pts is not None and frame.time_base is not None:
        return frame.pts * Fraction(frame.time_base)
    return index * _nominal_interval(stream)


def _nominal_interval(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or 25
    return 1 / Fraction(rate)


def _add_mpeg4_stream(out, first_frame, rate: Fraction, gop_size: int, bit_rate: int):
    stream = out.add_stream("mpeg4", rate=rate)
    # yuv420p needs even sizes; an odd dimension loses its last row/column (scaled by swscale).
    stream.width = first_frame.width - first_frame.width % 2
    stream.height = first_frame.height - first_frame.height % 2
    stream.pix_fmt = "yuv420p"
    stream.bit_rate = bit_rate
    stream.codec_context.gop_size = gop_size
    stream.codec_context.max_b_frames = 0
    stream.codec_context.time_base = 1 / rate
    return stream


def _encode(out, stream, frame, slot: int, rate: Fraction) -> None:
    # libavcodec turns a frame's pict_type I into a forced key frame: a decoded intra-only (MJPEG,
    # ProRes, FFV1) or short-GOP source would pass its own picture types on. The GOP alone decides,
    # as in the ffmpeg CLI (which resets pict_type unless -force_key_frames is given).
    frame.pict_type = av.video.frame.PictureType.NONE
    frame.pts = slot
    frame.time_base = 1 / rate
    for packet in stream.encode(frame):
        out.mux(packet)


def transcoded_tempfile(source: VideoSource, **options) -> Path:
    """Transcode into a new file in the system temp directory; the caller deletes it."""
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix="lavit-mpeg4-")
    os.close(fd)
    try:
        return transcode_to_mpeg4(source, tmp, **options)
    except BaseException:
        os.unlink(tmp)
        raise
