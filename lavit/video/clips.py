"""From a video file to tokenizer-ready clips: ``extract_clips`` is the pipeline's public entry point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
import torch

from lavit.video.frame_resize import FrameResizer
from lavit.video.defaults import (
    CLIP_LEN,
    DEFAULT_BIT_RATE,
    DEFAULT_FPS,
    DEFAULT_GOP_SIZE,
    DEFAULT_MAX_CLIPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MIN_FRAMES,
    FIELD_SIZE,
)
from lavit.video.errors import VideoDecodeError
from lavit.video.fields import NORMALIZATIONS, Normalization, fill_intra_frames, normalize_motion, resize_motion
from lavit.video.motion_vectors import CompressedVideo, read_motion
from lavit.video.packets import SPOOL_BYTES, transcode_to_packets
from lavit.video.transcode import VideoSource, open_video, source_name
from lavit.video.validation import check_choice, check_positive, check_size

Sampling = Literal["official", "dense"]
SAMPLINGS = ("official", "dense")


@dataclass
class VideoClips:
    """Keyframes and motion of the clips sampled from one video.

    Attributes:
        keyframes: (N, H, W, 3) uint8 RGB, the I-frame that starts each clip, at source resolution
            (``lavit.video.preprocess_keyframes`` makes the tokenizer's (N, 3, 224, 224) input).
        motion: (N, 2, T, H', W') float32, T = clip_len (24), H' x W' = field_size (20 x 36).
        frames: (N, T, 3, H'', W'') uint8 RGB torch tensor of every clip frame, H'' x W'' =
            ``frame_size``; frame t is the picture whose motion is ``motion[:, :, t]`` (frame 0 = the
            keyframe). None unless ``extract_clips`` was given ``frame_size``.
        starts: (N,) frame index (at ``fps``) of each clip's keyframe.
        num_frames: frames of the transcoded stream.
        width, height, fps: of the transcoded stream.
        source: the input's name.
    """

    keyframes: np.ndarray
    motion: torch.Tensor
    starts: list[int]
    num_frames: int
    width: int
    height: int
    fps: float
    source: str
    frames: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.starts)


def clip_starts(
    intra: np.ndarray,
    *,
    clip_len: int = CLIP_LEN,
    gop_size: int = DEFAULT_GOP_SIZE,
    sampling: Sampling = "official",
    max_clips: int | None = DEFAULT_MAX_CLIPS,
) -> list[int]:
    """Frame indices where clips start; every start is an I-frame.

    ``"official"``: I-frames whose next I-frame is exactly ``gop_size`` frames later, every second
    one (so 24-frame clips do not overlap), at most ``max_clips`` chosen by linspace. ``"dense"``:
    every I-frame that leaves a full clip, at most ``max_clips`` by linspace. Either way a video
    with no qualifying start yields one clip at frame 0 (its tail is padded with zero motion).

    Args:
        intra: (T,) bool, True for I-frames.
    """
    check_positive("clip_len", clip_len, integer=True)
    check_positive("gop_size", gop_size, integer=True)
    check_positive("max_clips", max_clips, integer=True, allow_none=True)
    check_choice("sampling", sampling, SAMPLINGS)
    keys = np.flatnonzero(intra)
    if sampling == "official":
        regular = [int(k) for k, nxt in zip(keys[:-1], keys[1:]) if nxt - k == gop_size]
        starts = regular[::2]
    else:
        starts = [int(k) for k in keys if k + clip_len <= len(intra)]
    if not starts:
        starts = [int(keys[0])] if len(keys) else [0]
    if max_clips is not None and len(starts) > max_clips:
        pick = np.linspace(0, len(starts) - 1, max_clips).round().astype(int)
        starts = [starts[i] for i in pick]
    return starts


def clip_motion(video: CompressedVideo, start: int, clip_len: int = CLIP_LEN) -> np.ndarray:
    """(clip_len, h, w, 2) pixel motion from ``start``; intra frames filled, tail zero-padded."""
    check_positive("clip_len", clip_len, integer=True)
    stop = min(start + clip_len, video.num_frames)
    return pad_clip(fill_intra_frames(video.motion[start:stop], video.intra[start:stop]), clip_len)


def pad_frames(frames: np.ndarray, clip_len: int) -> np.ndarray:
    """(clip_len, 3, H, W): ``frames`` (1 <= n <= clip_len) followed by copies of its last frame.

    A repeated frame is a static picture, which is what the zero motion ``pad_clip`` puts there says.
    """
    if len(frames) < clip_len:
        frames = np.concatenate([frames, np.repeat(frames[-1:], clip_len - len(frames), axis=0)])
    return frames


def read_clip_frames(source: VideoSource, starts: list[int], clip_len: int, frame_size: tuple[int, int]) -> list[np.ndarray]:
    """Frames ``start .. start + clip_len - 1`` of each clip of ``source`` decoded as it is (no transcode).

    Returns one (n, 3, H, W) uint8 array per start (n < clip_len at the end of the video), resized
    by ``FrameResizer``. Frames are counted in decoding output order, as ``read_motion`` counts them.
    """
    wanted = {i for s in starts for i in range(s, s + clip_len)}
    last = max(wanted)
    resize = FrameResizer(frame_size)
    found: dict[int, np.ndarray] = {}
    container, stream = open_video(source)
    try:
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                found[i] = resize(frame)
            if i >= last:
                break
    except av.error.FFmpegError as err:
        raise VideoDecodeError(source_name(source), f"decoding frames failed after {len(found)} clip frames ({err})") from err
    finally:
        container.close()
    return [np.stack([found[i] for i in range(s, s + clip_len) if i in found]) for s in starts]


def pad_clip(motion: np.ndarray, clip_len: int) -> np.ndarray:
    """(clip_len, h, w, 2): ``motion`` (n <= clip_len frames) followed by zero motion."""
    if len(motion) < clip_len:
        pad = np.zeros((clip_len - len(motion), *motion.shape[1:]), dtype=motion.dtype)
        motion = np.concatenate([motion, pad])
    return motion


def extract_clips(
    source: VideoSource,
    *,
    fps: float = DEFAULT_FPS,
    gop_size: int = DEFAULT_GOP_SIZE,
    bit_rate: int = DEFAULT_BIT_RATE,
    clip_len: int = CLIP_LEN,
    field_size: tuple[int, int] = FIELD_SIZE,
    normalization: Normalization = "official",
    sampling: Sampling = "official",
    max_clips: int | None = DEFAULT_MAX_CLIPS,
    min_frames: int = DEFAULT_MIN_FRAMES,
    max_frames: int = DEFAULT_MAX_FRAMES,
    in_memory: bool = True,
    transcode: bool = True,
    frame_size: tuple[int, int] | None = None,
) -> VideoClips:
    """Decompose a video into keyframes and motion-vector clips (docs/spec.md §1).

    Re-encodes ``source`` as MPEG-4 Part 2, samples clips that start at I-frames and decodes just
    those clips' frames with motion-vector export. The compressed stream is kept in memory up to
    ``lavit.video.packets.SPOOL_BYTES``, then in an anonymous temp file (from the start with
    ``in_memory=False``), never next to the input; memory does not grow with the frame count.

    Args:
        source: path, bytes or binary file object of any video FFmpeg reads.
        fps, gop_size, bit_rate: encoder settings (6, 12, 8000 kb/s in the paper).
        clip_len: frames per clip (24 = 4 s at 6 fps).
        field_size: (H, W) of the motion grid after bicubic resizing (20 x 36).
        normalization: ``"official"`` (tokenizer input), ``"unit"`` or ``"pixels"``; see
            ``lavit.video.normalize_motion``.
        sampling: ``"official"`` or ``"dense"``; see ``lavit.video.clip_starts``.
        max_clips: at most this many clips (8 for generation, 16 for understanding; None = all).
        min_frames: fewer frames than this after transcoding is "too short".
        max_frames: more output frames than this is an error (default 86,400 = 4 h at 6 fps).
        transcode: False reads ``source`` as it is (it must already be MPEG-4 Part 2 or similar);
            that route decodes the whole file (``read_motion``) and is not memory-bounded.
        frame_size: (H, W): also return every clip frame as RGB (``VideoClips.frames``), decoded
            from the same MPEG-4 stream in the same pass as the motion, the whole picture scaled to
            H x W with swscale bicubic (antialiased when downscaling; no crop, so the frames stay aligned
            with the motion field, which covers the whole picture too). Frames past
            the end of a short video repeat its last frame (their motion is zero: static). With
            ``transcode=False`` the frames come from a second decode of ``source`` (a file object is
            read again from where it was). None (default): no RGB conversion beyond the keyframes.

    Returns:
        VideoClips with keyframes (N, H, W, 3) uint8, motion (N, 2, clip_len, *field_size) and, with
        ``frame_size``, frames (N, clip_len, 3, *frame_size) uint8.

    Raises:
        VideoDecodeError: unreadable, non-video, audio-only, zero-frame, truncated, too short or
            too long.
        ValueError: an invalid parameter (named in the message).
    """
    check_positive("fps", fps)
    check_positive("gop_size", gop_size, integer=True)
    check_positive("bit_rate", bit_rate, integer=True)
    check_positive("clip_len", clip_len, integer=True)
    check_size("field_size", field_size)
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_choice("sampling", sampling, SAMPLINGS)
    check_positive("max_clips", max_clips, integer=True, allow_none=True)
    check_positive("min_frames", min_frames, integer=True)
    check_positive("max_frames", max_frames, integer=True)
    if frame_size is not None:
        check_size("frame_size", frame_size)
    name = source_name(source)
    if not transcode:
        position = source.tell() if hasattr(source, "seek") else None
        video = read_motion(source)
        num_frames, intra, width, height = video.num_frames, video.intra, video.width, video.height
    else:
        options = dict(fps=fps, gop_size=gop_size, bit_rate=bit_rate, max_frames=max_frames)
        packets = transcode_to_packets(source, spool_bytes=SPOOL_BYTES if in_memory else None, **options)
        num_frames, intra, width, height = len(packets), packets.intra, packets.width, packets.height
    try:
        if num_frames < min_frames:
            raise VideoDecodeError(name, f"too short: {num_frames} frames at {fps:g} fps, need at least {min_frames}")
        starts = clip_starts(intra, clip_len=clip_len, gop_size=gop_size, sampling=sampling, max_clips=max_clips)
        fields, keyframes, frames = [], [], []
        for s in starts:
            if transcode:  # decode just this clip's frames
                motion, clip_intra, keyframe, clip_frames = packets.decode(s, min(s + clip_len, num_frames), frame_size)
                motion = pad_clip(fill_intra_frames(motion, clip_intra), clip_len)
                frames.append(clip_frames)
            else:
                motion, keyframe = clip_motion(video, s, clip_len), video.keyframe_rgb(s)
            fields.append(resize_motion(normalize_motion(motion, width, height, normalization), field_size))
            keyframes.append(keyframe)
    finally:
        if transcode:
            packets.close()
    if frame_size is not None and not transcode:
        if position is not None:
            source.seek(position)
        frames = read_clip_frames(source, starts, clip_len, frame_size)
    return VideoClips(
        keyframes=np.stack(keyframes),
        motion=torch.stack(fields),
        starts=starts,
        num_frames=num_frames,
        width=width,
        height=height,
        fps=fps,
        source=name,
        frames=torch.from_numpy(np.stack([pad_frames(f, clip_len) for f in frames])) if frame_size is not None else None,
    )
