"""extract_clips on the real sample video and on broken files."""

import numpy as np
import pytest
import torch

from lavit.video import VideoDecodeError, extract_clips, preprocess_keyframes, read_motion
from tests.video.bad_inputs import write_bad_inputs


def test_real_clip_shapes_and_motion(real_clip):
    clips = extract_clips(real_clip)
    n = len(clips)
    assert n >= 2
    assert clips.keyframes.shape == (n, 240, 320, 3) and clips.keyframes.dtype == np.uint8
    assert tuple(clips.motion.shape) == (n, 2, 24, 20, 36) and clips.motion.dtype == torch.float32
    assert all(s % 24 == 0 for s in clips.starts)  # official: every second regular GOP start
    assert clips.num_frames == 84 and clips.fps == 6  # 420 frames at 30 fps = 14 s
    assert torch.isfinite(clips.motion).all()
    assert (clips.motion[:, :, 1:].abs() > 1e-3).float().mean() > 0.05
    assert clips.keyframes.std() > 10  # real pixels, not a blank frame


def test_official_normalisation_is_scaled_unit(real_clip):
    unit = extract_clips(real_clip, normalization="unit").motion
    official = extract_clips(real_clip, normalization="official").motion
    std = torch.tensor([0.0993703, 0.1130276]).view(1, 2, 1, 1, 1)
    torch.testing.assert_close(official, unit / std * 10, rtol=1e-5, atol=1e-6)


def test_temp_file_route_matches_memory_and_leaves_input_folder_clean(tmp_path, real_clip):
    local = tmp_path / "clip.mp4"
    local.write_bytes(real_clip.read_bytes())
    a = extract_clips(local, in_memory=False)
    b = extract_clips(local)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    torch.testing.assert_close(a.motion, b.motion)


def test_keyframes_preprocessed_for_clip(real_clip):
    clips = extract_clips(real_clip, max_clips=2)
    x = preprocess_keyframes(clips.keyframes)
    assert tuple(x.shape) == (2, 3, 224, 224)
    grey = preprocess_keyframes(np.full((1, 50, 70, 3), 128, np.uint8))
    expected = (128 / 255 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    torch.testing.assert_close(grey[0, :, 100, 100], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["truncated", "text", "audio_only", "empty"])
def test_bad_inputs_raise_video_decode_error(tmp_path, real_clip, kind):
    path = write_bad_inputs(real_clip, tmp_path)[kind]
    with pytest.raises(VideoDecodeError) as info:
        extract_clips(path)
    assert info.value.path == str(path)
    assert info.value.reason and str(path) in str(info.value)


def test_missing_and_too_short(tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found"):
        extract_clips(tmp_path / "nope.mp4")
    from lavit.video.synthetic import Scene, Texture, write_video

    write_video(Scene(64, 64, (6.0, 0.0), Texture(3)), tmp_path / "short.mp4", fps=6, duration=1)
    with pytest.raises(VideoDecodeError, match="too short: 6 frames"):
        extract_clips(tmp_path / "short.mp4")
    assert len(extract_clips(tmp_path / "short.mp4", min_frames=1)) == 1


def test_audio_only_reason(tmp_path, real_clip):
    path = write_bad_inputs(real_clip, tmp_path)["audio_only"]
    with pytest.raises(VideoDecodeError, match="audio-only"):
        read_motion(path)
