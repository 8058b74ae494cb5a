"""From a video file to tokenizer-ready clips: ``extract_clips`` is the pipeline's public entry point."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from lavit.video.defaults import (
    CLIP_LEN,
    DEFAULT_BIT_RATE,
    DEFAULT_FPS,
    DEFAULT_GOP_SIZE,
    DEFAULT_MAX_CLIPS,
    DEFAULT_MIN_FRAMES,
    FIELD_SIZE,
)
from lavit.video.errors import VideoDecodeError
from lavit.video.fields import Normalization, fill_intra_frames, normalize_motion, resize_motion
from lavit.video.motion_vectors import CompressedVideo, read_motion
from lavit.video.transcode import VideoSource, source_name, transcode_to_mpeg4, transcoded_tempfile

Sampling = Literal["official", "dense"]


@dataclass
class VideoClips:
    """Keyframes and motion of the clips sampled from one video.

    Attributes:
        keyframes: (N, H, W, 3) uint8 RGB, the I-frame that starts each clip, at source resolution
            (``lavit.video.preprocess_keyframes`` makes the tokenizer's (N, 3, 224, 224) input).
        motion: (N, 2, T, H', W') float32, T = clip_len (24), H' x W' = field_size (20 x 36).
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
    keys = np.flatnonzero(intra)
    if sampling == "official":
        regular = [int(k) for k, nxt in zip(keys[:-1], keys[1:]) if nxt - k == gop_size]
        starts = regular[::2]
    elif sampling == "dense":
        starts = [int(k) for k in keys if k + clip_len <= len(intra)]
    else:
        raise ValueError(f"sampling must be 'official' or 'dense', got {sampling!r}")
    if not starts:
        starts = [int(keys[0])] if len(keys) else [0]
    if max_clips is not None and len(starts) > max_clips:
        pick = np.linspace(0, len(starts) - 1, max_clips).round().astype(int)
        starts = [starts[i] for i in pick]
    return starts


def clip_motion(video: CompressedVideo, start: int, clip_len: int = CLIP_LEN) -> np.ndarray:
    """(clip_len, h, w, 2) pixel motion from ``start``; intra frames filled, tail zero-padded."""
    stop = min(start + clip_len, video.num_frames)
    motion = fill_intra_frames(video.motion[start:stop], video.intra[start:stop])
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
    in_memory: bool = True,
    transcode: bool = True,
) -> VideoClips:
    """Decompose a video into keyframes and motion-vector clips (SPEC section 1).

    Re-encodes ``source`` as MPEG-4 Part 2 (in memory, or in a temp file with ``in_memory=False``;
    never next to the input), decodes it with motion-vector export, and samples clips that start at
    I-frames.

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
        transcode: False reads ``source`` as it is (it must already be MPEG-4 Part 2 or similar).

    Returns:
        VideoClips with keyframes (N, H, W, 3) uint8 and motion (N, 2, clip_len, *field_size).

    Raises:
        VideoDecodeError: unreadable, non-video, audio-only, zero-frame, truncated or too short.
    """
    name = source_name(source)
    options = dict(fps=fps, gop_size=gop_size, bit_rate=bit_rate)
    if not transcode:
        video = read_motion(source)
    elif in_memory:
        video = read_motion(transcode_to_mpeg4(source, **options))
    else:
        tmp = transcoded_tempfile(source, **options)
        try:
            video = read_motion(tmp)
        finally:
            os.unlink(tmp)
    if video.num_frames < min_frames:
        raise VideoDecodeError(name, f"too short: {video.num_frames} frames at {fps:g} fps, need at least {min_frames}")
    starts = clip_starts(video.intra, clip_len=clip_len, gop_size=gop_size, sampling=sampling, max_clips=max_clips)
    motion = torch.stack(
        [
            resize_motion(normalize_motion(clip_motion(video, s, clip_len), video.width, video.height, normalization), field_size)
            for s in starts
        ]
    )
    keyframes = np.stack([video.keyframe_rgb(s) for s in starts])
    return VideoClips(
        keyframes=keyframes,
        motion=motion,
        starts=starts,
        num_frames=video.num_frames,
        width=video.width,
        height=video.height,
        fps=fps,
        source=name,
    )
