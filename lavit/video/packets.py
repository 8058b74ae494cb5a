"""The transcoded MPEG-4 stream kept as compressed packets; clips are decoded from it on demand.

``extract_clips`` needs the I-frame positions of the whole stream, but motion and pixels only of
the frames inside its clips. So the transcode keeps each output frame's packet (in memory up to
``SPOOL_BYTES``, beyond that in an anonymous temporary file) and whether it is an I-frame, and the
chosen clips are decoded afterwards, each from its first frame: an I-frame of an MPEG-4 Part 2 stream
without B-frames, which decodes to the same pixels and vectors as in a decode of the whole stream.
Memory is then the spool's and the clips', whatever the number of frames.
"""

from __future__ import annotations

import io
import tempfile
from array import array

import av
import numpy as np

from lavit.video.frame_resize import FrameResizer
from lavit.video.defaults import DEFAULT_BIT_RATE, DEFAULT_FPS, DEFAULT_GOP_SIZE, DEFAULT_MAX_FRAMES
from lavit.video.errors import VideoDecodeError
from lavit.video.motion_vectors import MotionFieldBuilder
from lavit.video.pixels import to_rgb
from lavit.video.transcode import VideoSource, check_options, mpeg4_packets, source_name

SPOOL_BYTES = 32 << 20  # compressed stream held in memory before it moves to a temporary file


class Mpeg4Packets:
    """One MPEG-4 packet per output frame, with the decoder settings to decode any run of them.

    Attributes:
        intra: (T,) bool, True for I-frames (key packets).
        width, height: frame size in pixels.
        source: the input's name (for errors).
    """

    def __init__(self, encoder: av.CodecContext, source: str, spool_bytes: int | None = SPOOL_BYTES):
        self.extradata = bytes(encoder.extradata or b"")
        self.width, self.height = encoder.width, encoder.height
        self.source = source
        # None: straight to disk (the temp-file route); else in memory up to spool_bytes
        self._file = tempfile.TemporaryFile(prefix="lavit-mpeg4-") if spool_bytes is None else tempfile.SpooledTemporaryFile(max_size=spool_bytes)
        self._offsets = array("q", [0])
        self._key = bytearray()

    def __len__(self) -> int:
        return len(self._key)

    @property
    def intra(self) -> np.ndarray:
        return np.frombuffer(bytes(self._key), dtype=np.uint8).astype(bool)

    def append(self, packet: av.Packet) -> None:
        data = bytes(packet)
        self._file.write(data)
        self._offsets.append(self._offsets[-1] + len(data))
        self._key.append(bool(packet.is_keyframe))

    def close(self) -> None:
        self._file.close()

    def _packet(self, index: int) -> av.Packet:
        # av.Packet(size) allocates FFmpeg's zeroed input padding, which the bitstream reader may
        # read past the end; av.Packet(bytes) would wrap the bytes without it (undefined reads).
        size = self._offsets[index + 1] - self._offsets[index]
        packet = av.Packet(size)
        if size:
            self._file.readinto(memoryview(packet))
        return packet

    def decode(
        self, start: int, stop: int, frame_size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Decode frames ``start`` (an I-frame) to ``stop`` (exclusive) with motion-vector export.

        ``frame_size`` (H', W'): also convert every decoded frame to RGB, the whole picture resized to
        H' x W' (``lavit.video.frame_resize.FrameResizer``), in the same pass; None converts only the
        keyframe.

        Returns:
            motion (n, H/16, W/16, 2) float32 pixels, intra (n,) bool, keyframe (H, W, 3) uint8 RGB
            of frame ``start``, and frames (n, 3, H', W') uint8 RGB (None without ``frame_size``);
            frame i is the one whose motion is ``motion[i]``.
        """
        if not self._key[start]:
            raise ValueError(f"frame {start} is not an I-frame; decoding must start at one")
        decoder = av.CodecContext.create("mpeg4", "r")
        decoder.extradata = self.extradata
        decoder.width, decoder.height = self.width, self.height
        decoder.thread_type = "AUTO"
        decoder.options = {"flags2": "+export_mvs"}
        fields = MotionFieldBuilder(self.height, self.width)
        resize = FrameResizer(frame_size) if frame_size is not None else None
        frames: list[np.ndarray] = []
        keyframe = None
        self._file.seek(self._offsets[start])
        try:
            for i in range(start, stop + 1):
                packet = self._packet(i) if i < stop else None
                for frame in decoder.decode(packet):
                    if keyframe is None:
                        keyframe = to_rgb(frame)
                    fields.add(frame)
                    if resize is not None:
                        frames.append(resize(frame))
        except av.error.FFmpegError as err:
            raise VideoDecodeError(self.source, f"decoding the transcoded stream failed at frame {start + len(fields)} ({err})") from err
        if len(fields) != stop - start:
            raise VideoDecodeError(self.source, f"the transcoded frames {start}-{stop - 1} decoded to {len(fields)} frames")
        motion, intra = fields.result()
        return motion, intra, keyframe, (np.stack(frames) if resize is not None else None)


def transcode_to_packets(
    source: VideoSource,
    *,
    fps: float = DEFAULT_FPS,
    gop_size: int = DEFAULT_GOP_SIZE,
    bit_rate: int = DEFAULT_BIT_RATE,
    max_frames: int = DEFAULT_MAX_FRAMES,
    spool_bytes: int | None = SPOOL_BYTES,
) -> Mpeg4Packets:
    """``transcode_to_mpeg4`` without the container: the packets, kept for ``Mpeg4Packets.decode``.

    ``spool_bytes``: compressed bytes kept in memory before spilling to an anonymous temporary file
    in the system temp directory; None writes there from the start. The caller closes the result.

    Raises:
        VideoDecodeError: as ``transcode_to_mpeg4``.
    """
    check_options(fps=fps, gop_size=gop_size, bit_rate=bit_rate, max_frames=max_frames)
    # The stream belongs to an MP4 container (never written) so that the encoder is configured
    # exactly as for transcode_to_mpeg4: same flags (global header), same bitstream.
    out = av.open(io.BytesIO(), mode="w", format="mp4")
    packets = None
    try:
        for packet in mpeg4_packets(source, out, fps=fps, gop_size=gop_size, bit_rate=bit_rate, max_frames=max_frames):
            if packets is None:
                packets = Mpeg4Packets(packet.stream.codec_context, source_name(source), spool_bytes)
            packets.append(packet)
    except BaseException:
        if packets is not None:
            packets.close()
        raise
    finally:
        out.close()
    return packets
