"""``read_frames``: decoded RGB frames for the evaluation metrics (native frame rate, no transcoding)."""

import av
import numpy as np
import pytest
import torch

from lavit.video.pixels import to_rgb
from lavit.video.errors import VideoDecodeError
from lavit.video.frames import read_frames
from lavit.video.synthetic import random_scene, write_video


@pytest.fixture(scope="module")
def clip20(tmp_path_factory):
    scene, _ = random_scene(np.random.default_rng(0), height=96, width=128)
    return write_video(scene, tmp_path_factory.mktemp("frames") / "clip.mp4", fps=8, duration=2.5)  # 20 frames


def test_first_and_center_frames_match_a_plain_decode(clip20):
    with av.open(str(clip20)) as container:
        decoded = torch.stack([torch.from_numpy(to_rgb(f)) for f in container.decode(video=0)]).permute(0, 3, 1, 2)
    first = read_frames(clip20, 16, "first", None)
    center = read_frames(clip20, 16, "center", None)
    assert first.shape == (16, 3, 96, 128) and first.dtype == torch.uint8
    assert torch.equal(first, decoded[:16]) and torch.equal(center, decoded[2:18])  # 20 frames: the centre starts at 2
    assert read_frames(clip20, 16, "first", 32).shape == (16, 3, 32, 32)


def test_too_few_frames_and_bad_arguments_raise(clip20):
    with pytest.raises(VideoDecodeError, match="21 are needed"):
        read_frames(clip20, 21)
    with pytest.raises(ValueError, match="where"):
        read_frames(clip20, 4, "middle")
