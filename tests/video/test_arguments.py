"""Invalid parameters raise a ValueError naming the parameter and the value where they enter the API."""

import numpy as np
import pytest

from lavit.video import VideoDecodeError, clip_starts, extract_clips, normalize_motion, resize_motion, transcode_to_mpeg4
from lavit.video.frames import read_frames

BAD_EXTRACT = [
    ("fps", 0, "fps"),
    ("fps", -6.0, "fps"),
    ("fps", float("nan"), "fps"),
    ("gop_size", 0, "gop_size"),
    ("bit_rate", 0, "bit_rate"),
    ("max_clips", 0, "max_clips"),
    ("max_clips", -1, "max_clips"),
    ("clip_len", 0, "clip_len"),
    ("min_frames", 0, "min_frames"),
    ("field_size", (0, 36), "field_size"),
    ("field_size", (20, -1), "field_size"),
    ("field_size", (20,), "field_size"),
    ("sampling", "random", "sampling"),
    ("normalization", "std", "normalization"),
    ("max_frames", 0, "max_frames"),
]


def _raises_value_error(fn, name, value):
    with pytest.raises(ValueError) as info:
        fn()
    assert not isinstance(info.value, VideoDecodeError), "a usage error, not a bad file"
    message = str(info.value)
    assert message.startswith(f"{name} must be") and repr(value) in message, message


@pytest.mark.parametrize("key, value, name", BAD_EXTRACT)
def test_extract_clips_rejects(real_clip, key, value, name):
    _raises_value_error(lambda: extract_clips(real_clip, **{key: value}), name, value)


@pytest.mark.parametrize("key, value", [("fps", 0), ("gop_size", 0), ("gop_size", 2.5), ("bit_rate", -1), ("max_frames", -5)])
def test_transcode_rejects(real_clip, key, value):
    _raises_value_error(lambda: transcode_to_mpeg4(real_clip, **{key: value}), key, value)


def test_lower_level_functions_reject():
    intra = np.zeros(48, bool)
    intra[::12] = True
    _raises_value_error(lambda: clip_starts(intra, max_clips=0), "max_clips", 0)
    _raises_value_error(lambda: clip_starts(intra, clip_len=-24), "clip_len", -24)
    _raises_value_error(lambda: clip_starts(intra, gop_size=0), "gop_size", 0)
    _raises_value_error(lambda: clip_starts(intra, sampling="every"), "sampling", "every")
    _raises_value_error(lambda: resize_motion(np.zeros((2, 4, 4, 2), np.float32), (0, 0)), "size", (0, 0))
    _raises_value_error(lambda: normalize_motion(np.zeros((1, 2)), 4, 4, "bogus"), "normalization", "bogus")


def test_read_frames_rejects(real_clip):
    _raises_value_error(lambda: read_frames(real_clip, 0), "num_frames", 0)
    _raises_value_error(lambda: read_frames(real_clip, 4, where="middle"), "where", "middle")
    _raises_value_error(lambda: read_frames(real_clip, 4, size=0), "size", 0)


def test_none_means_all_clips(real_clip):
    assert len(extract_clips(real_clip, max_clips=None, sampling="dense")) == 6
