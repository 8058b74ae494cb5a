"""Re-encode any video FFmpeg reads as MPEG-4 Part 2, in process (PyAV, no ffmpeg binary).

The encoder settings are the official ones (docs/spec.md §1): libavcodec ``mpeg4`` at 6 fps,
8000 kb/s, an I-frame every 12 frames, no B-frames. Frame-rate conversion follows FFmpeg's ``fps``
filter (round to nearest): output slot ``k`` at time ``k / fps`` shows the newest source frame whose
timestamp rounds to a slot ``<= k``, so variable-frame-rate input is resampled by time, not by index.
I-frames come from the GOP (and the encoder's scene-change detection, as on the official ffmpeg
command line), never from the source's picture types; display rotation is applied before encoding.
"""

from __future__ import annotations

import io
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import av

from lavit.video.defaults import DEFAULT_BIT_RATE, DEFAULT_FPS, DEFAULT_GOP_SIZE, DEFAULT_MAX_FRAMES
from lavit.video.errors import VideoDecodeError
from lavit.video.rotation import display_turn, swaps_axes, turn_frame
from lavit.video.validation import check_positive

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
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> bytes | Path:
    """Re-encode ``source`` as MPEG-4 Part 2 in an MP4 container.

    Args:
        source: path, bytes or binary file object of any video FFmpeg can read.
        output: where to write the result. ``None`` keeps it in memory and returns ``bytes``;
            a path writes there and returns it (never next to the input unless asked).
        fps: output frame rate (6 in the paper, 12 in the official reconstruction demo).
        gop_size: frames between I-frames.
        bit_rate: target bit rate in bit/s.
        max_frames: more output frames than this is an error (see ``mpeg4_packets``).

    Raises:
        VideoDecodeError: the input cannot be read, has no video, no frames, is truncated or
            would give more than ``max_frames`` frames.
    """
    check_options(fps=fps, gop_size=gop_size, bit_rate=bit_rate, max_frames=max_frames)
    sink = io.BytesIO() if output is None else str(output)
    out = av.open(sink, mode="w", format="mp4")
    try:
        try:
            for packet in mpeg4_packets(source, out, fps=fps, gop_size=gop_size, bit_rate=bit_rate, max_frames=max_frames):
                out.mux(packet)
        finally:
            out.close()
    except BaseException:
        if output is not None:  # no partial file left behind
            Path(output).unlink(missing_ok=True)
        raise
    return sink.getvalue() if output is None else Path(output)


def mpeg4_packets(
    source: VideoSource,
    out: av.container.OutputContainer,
    *,
    fps: float = DEFAULT_FPS,
    gop_size: int = DEFAULT_GOP_SIZE,
    bit_rate: int = DEFAULT_BIT_RATE,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> Iterator[av.Packet]:
    """Decode ``source``, resample it to ``fps``, turn it upright and yield its MPEG-4 packets in order.

    The encoder is a stream added to ``out`` (an MP4 output container, so the stream headers go to
    the encoder's extradata); the caller muxes the packets there or keeps them elsewhere. One packet
    per output frame; ``packet.stream.codec_context`` is the encoder.

    Frames with a display matrix (phone videos) are rotated / flipped as FFmpeg's autorotation
    shows them (``lavit.video.rotation``), so the output is upright and its motion axes are the
    displayed ones. I-frames come from the GOP (and the encoder's scene-change detection), never from
    the source's picture types.

    Raises:
        VideoDecodeError: unreadable input, no video, no frames, a truncated stream (fewer frames than
            the container declares, or a stream ending well before its declared duration), or more
            than ``max_frames`` output frames (e.g. timestamps that jump by hours).
    """
    check_options(fps=fps, gop_size=gop_size, bit_rate=bit_rate, max_frames=max_frames)
    name = source_name(source)
    container, stream = open_video(source)
    rate = Fraction(fps).limit_denominator(1001)
    try:
        encoder = None
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
                    encoder = _Mpeg4Encoder(out, frame, rate, gop_size, bit_rate, name)
                slot = math.floor((t - t0) * rate + Fraction(1, 2))  # exact: no float drift, no banker's rounding
                if pending is not None:
                    _check_frame_count(name, slot, max_frames, fps)
                    while next_slot < slot:
                        yield from encoder.encode(pending, next_slot)
                        next_slot += 1
                pending = frame
        except av.error.FFmpegError as err:
            raise VideoDecodeError(name, f"decoding failed after {decoded} frames ({err})") from err
        if pending is None:
            raise VideoDecodeError(name, "no decodable video frames")
        if declared and decoded < 0.95 * declared - 2:
            raise VideoDecodeError(name, f"truncated: decoded {decoded} of {declared} frames the container declares")
        last = _timestamp(pending, decoded - 1, stream)
        _check_declared_duration(name, container, stream, last - t0 + _frame_duration(pending, stream))
        # The last frame lasts one nominal frame interval; it fills the slots that start before then.
        end = last - t0 + _nominal_interval(stream)
        _check_frame_count(name, max(math.ceil(end * rate), 1), max_frames, fps)
        while next_slot == 0 or next_slot < end * rate:
            yield from encoder.encode(pending, next_slot)
            next_slot += 1
        yield from encoder.flush()
    finally:
        container.close()


def check_options(*, fps: float, gop_size: int, bit_rate: int, max_frames: int) -> None:
    """ValueError naming the first invalid encoder option."""
    check_positive("fps", fps)
    check_positive("gop_size", gop_size, integer=True)
    check_positive("bit_rate", bit_rate, integer=True)
    check_positive("max_frames", max_frames, integer=True)


def _check_frame_count(name: str, frames: int, max_frames: int, fps: float) -> None:
    if frames > max_frames:
        raise VideoDecodeError(
            name, f"too long: at least {frames} frames at {fps:g} fps exceed max_frames={max_frames} (raise max_frames to accept it)"
        )


def _check_declared_duration(name: str, container, stream, decoded: Fraction) -> None:
    """Raise when the decoded frames end well before the duration the container declares.

    The declared duration of the video stream is its own (MP4, MPEG-TS), else Matroska's per-track
    ``DURATION`` tag, else the container's when the video is its only stream (the container's
    duration is that of the longest stream, which may be audio). MPEG-TS has no header: FFmpeg
    estimates the duration from the file itself, so a cut TS file looks complete.
    """
    declared = _declared_duration(container, stream)
    if declared is None:
        return
    interval = _nominal_interval(stream)
    if decoded < 0.95 * declared - 2 * interval:
        raise VideoDecodeError(name, f"truncated: the frames end at {float(decoded):.2f} s of the {float(declared):.2f} s the container declares")


def _declared_duration(container, stream) -> Fraction | None:
    if stream.duration and stream.time_base:
        return stream.duration * Fraction(stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        try:
            h, m, sec = tag.split(":")
            return Fraction(int(h) * 3600 + int(m) * 60) + Fraction(sec)
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:
        return Fraction(container.duration, av.time_base)
    return None


def _frame_duration(frame, stream) -> Fraction:
    """How long the frame is shown: its own duration when the file stores one, else the nominal interval."""
    nominal = _nominal_interval(stream)
    if frame.duration and frame.time_base is not None:
        return max(nominal, frame.duration * Fraction(frame.time_base))
    return nominal


def _timestamp(frame, index: int, stream) -> Fraction:
    """Exact presentation time in seconds; frame index / nominal rate when the stream has no pts."""
    if frame.pts is not None and frame.time_base is not None:
        return frame.pts * Fraction(frame.time_base)
    return index * _nominal_interval(stream)


def _nominal_interval(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or 25
    return 1 / Fraction(rate)


# libavcodec's MPEG-4 encoder takes SIMD code by CPU (the forward DCT, the half-pel motion compensation), whose
# rounding differs from its C code: the same source gave other motion vectors on an AVX2 AMD EPYC than with SIMD
# off. "bitexact" keeps the exact functions and "dct=int" the integer forward DCT, so every CPU gives the vectors
# of the C code (checked by forcing libavutil's CPU flags to 0: identical streams).
BITEXACT_OPTIONS = {"flags": "+bitexact", "dct": "int"}


class _Mpeg4Encoder:
    """The official encoder settings on a stream of ``out``, sized (and turned upright) from the first frame."""

    def __init__(self, out, first_frame, rate: Fraction, gop_size: int, bit_rate: int, name: str):
        self.rate = rate
        self.turn = display_turn(first_frame, name)
        # yuv420p needs even sizes; an odd dimension loses its last row/column (scaled by swscale).
        self.width = first_frame.width - first_frame.width % 2
        self.height = first_frame.height - first_frame.height % 2
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height = (self.height, self.width) if swaps_axes(self.turn) else (self.width, self.height)
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        stream.codec_context.gop_size = gop_size
        stream.codec_context.max_b_frames = 0
        stream.codec_context.time_base = 1 / rate
        stream.options = dict(BITEXACT_OPTIONS)
        self.stream = stream
        self._source = self._upright = None

    def encode(self, frame, slot: int) -> list[av.Packet]:
        if self.turn:
            if frame is not self._source:  # a source frame repeated over several slots is turned once
                self._source, self._upright = frame, turn_frame(frame, self.turn, self.width, self.height)
            frame = self._upright
        # libavcodec turns a frame's pict_type I into a forced key frame: a decoded intra-only (MJPEG,
        # ProRes, FFV1) or short-GOP source would pass its own picture types on. The GOP alone decides,
        # as in the ffmpeg CLI (which resets pict_type unless -force_key_frames is given).
        frame.pict_type = av.video.frame.PictureType.NONE
        frame.pts = slot
        frame.time_base = 1 / self.rate
        return self.stream.encode(frame)

    def flush(self) -> list[av.Packet]:
        return self.stream.encode(None)
