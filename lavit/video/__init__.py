"""Compressed-video decomposition: MPEG-4 transcode, motion-vector fields, keyframes, clips."""

from lavit.video.clips import CLIP_LEN, VideoClips, clip_motion, clip_starts, extract_clips
from lavit.video.errors import VideoDecodeError
from lavit.video.fields import (
    FIELD_SIZE,
    OFFICIAL_MOTION_STD,
    OFFICIAL_TOKENIZER_SCALE,
    fill_intra_frames,
    normalize_motion,
    resize_motion,
)
from lavit.video.flow_image import motion_clip_picture, motion_comparison_picture, motion_to_rgb
from lavit.video.keyframes import CLIP_MEAN, CLIP_STD, preprocess_keyframes
from lavit.video.motion_vectors import CompressedVideo, dense_motion_field, read_motion
from lavit.video.transcode import transcode_to_mpeg4
from lavit.video.writer import comparison_picture, write_frames

__all__ = [
    "comparison_picture",
    "write_frames",
    "CLIP_LEN",
    "CLIP_MEAN",
    "CLIP_STD",
    "CompressedVideo",
    "FIELD_SIZE",
    "OFFICIAL_MOTION_STD",
    "OFFICIAL_TOKENIZER_SCALE",
    "VideoClips",
    "VideoDecodeError",
    "clip_motion",
    "clip_starts",
    "dense_motion_field",
    "extract_clips",
    "fill_intra_frames",
    "motion_clip_picture",
    "motion_comparison_picture",
    "motion_to_rgb",
    "normalize_motion",
    "preprocess_keyframes",
    "read_motion",
    "resize_motion",
    "transcode_to_mpeg4",
]
