"""Memory stays bounded by what the clips need, whatever the number of frames the transcode makes."""

import subprocess
import sys

import numpy as np
import pytest

from lavit.video import VideoDecodeError, clip_motion, extract_clips, normalize_motion, read_motion, resize_motion, transcode_to_mpeg4
from lavit.video.motion_vectors import MotionFieldBuilder
from lavit.video.synthetic import Scene, Texture, write_video

GAP_S = 1200  # a 4 s file whose timestamps jump by 20 minutes: 7,224 frames at 6 fps

# Peak RSS growth of one extract_clips call over the interpreter with lavit.video imported.
MEASURE = """
import resource, sys
from lavit.video import extract_clips
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
clips = extract_clips(sys.argv[1])
print(clips.num_frames, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


@pytest.fixture(scope="module")
def gap_video(tmp_path_factory):
    times = [i / 6 for i in range(12)] + [GAP_S + 2 + i / 6 for i in range(12)]
    path = tmp_path_factory.mktemp("gap") / "gap.mkv"
    return write_video(Scene(192, 320, (12.0, -6.0), Texture(1)), path, times=times)


def test_timestamp_gap_memory_is_bounded(gap_video):
    # before: the whole MPEG-4 stream, every frame's raw vectors and every I-frame: +330 MB here
    out = subprocess.run([sys.executable, "-c", MEASURE, str(gap_video)], capture_output=True, text=True, check=True)
    frames, growth_mb = map(int, out.stdout.split())
    assert frames == 7224
    assert growth_mb < 150, f"peak RSS grew by {growth_mb} MB for {frames} frames"


def test_max_frames_caps_the_output(gap_video):
    with pytest.raises(VideoDecodeError, match=r"too long: at least 7212 frames at 6 fps exceed max_frames=7000") as info:
        extract_clips(gap_video, max_frames=7000)
    assert info.value.path == str(gap_video)
    with pytest.raises(VideoDecodeError, match="max_frames=100"):
        transcode_to_mpeg4(gap_video, max_frames=100)
    assert len(extract_clips(gap_video, max_frames=7224)) == 8


def test_clips_decoded_alone_equal_the_whole_stream_decode(real_clip):
    """extract_clips decodes only its clips: same motion and keyframes as the whole-stream decode."""
    video = read_motion(transcode_to_mpeg4(real_clip))
    for kw in (dict(), dict(sampling="dense", max_clips=None)):
        clips = extract_clips(real_clip, normalization="pixels", **kw)
        assert clips.num_frames == video.num_frames
        for i, s in enumerate(clips.starts):
            expected = resize_motion(normalize_motion(clip_motion(video, s), video.width, video.height, "pixels"))
            assert np.array_equal(clips.motion[i].numpy(), expected.numpy())
            assert np.array_equal(clips.keyframes[i], video.keyframe_rgb(s))


def test_batched_fields_equal_one_batch(real_clip, monkeypatch):
    whole = read_motion(transcode_to_mpeg4(real_clip)).motion
    monkeypatch.setattr("lavit.video.motion_vectors._BATCH_BYTES", 20_000)  # a few frames per batch
    assert np.array_equal(read_motion(transcode_to_mpeg4(real_clip)).motion, whole)
    assert MotionFieldBuilder(240, 320).result()[0].shape == (0, 15, 20, 2)
