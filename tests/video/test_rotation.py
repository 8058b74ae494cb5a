"""Display rotation: frames are turned upright before the encode, so keyframes and motion axes agree."""

import av
import numpy as np
import pytest

from lavit.video.pixels import from_rgb
from lavit.video import extract_clips, read_motion, transcode_to_mpeg4
from lavit.video.synthetic import Scene, Texture, write_video

FPS = 6
PAN = (2.0, -1.0)  # px per frame in the stored (unrotated) frames
SCENE = Scene(96, 176, (PAN[0] * FPS, PAN[1] * FPS), Texture(1))

# counter-clockwise degrees (av.VideoFrame.rotation) -> quarter turns of np.rot90 and the pan as displayed
UPRIGHT = {90: (1, (PAN[1], -PAN[0])), 180: (2, (-PAN[0], -PAN[1])), 270: (-1, (-PAN[1], PAN[0]))}


def _interior_error(video, pan):
    interior = video.motion[~video.intra][:, 1:-1, 1:-1].reshape(-1, 2)
    return np.median(np.abs(interior - np.array(pan)).max(-1))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_source_comes_out_upright(tmp_path, degrees, suffix):
    path = write_video(SCENE, tmp_path / f"rot{degrees}{suffix}", fps=FPS, duration=4, rotation=degrees)
    with av.open(str(path)) as container:  # FFmpeg reads the display matrix back
        assert next(container.decode(video=0)).rotation % 360 == degrees
    k, pan = UPRIGHT[degrees]
    upright = np.rot90(SCENE.render(0.0), k)

    video = read_motion(transcode_to_mpeg4(path))
    assert (video.height, video.width) == upright.shape[:2]
    assert _interior_error(video, pan) <= 0.25

    clips = extract_clips(path, min_frames=1)
    assert clips.keyframes.shape[1:] == upright.shape
    error = np.abs(clips.keyframes[0].astype(float) - upright).mean()
    stored_error = np.abs(clips.keyframes[0].astype(float) - np.rot90(upright, 2)).mean() if degrees == 180 else np.inf
    assert error < 4 and error < stored_error / 4
    with av.open(transcode_to_mpeg4(path, output=tmp_path / "out.mp4")) as container:  # no second rotation
        assert next(container.decode(video=0)).rotation == 0


def test_unrotated_source_unchanged(tmp_path):
    path = write_video(SCENE, tmp_path / "plain.mp4", fps=FPS, duration=4)
    video = read_motion(transcode_to_mpeg4(path))
    assert (video.height, video.width) == (96, 176)
    assert _interior_error(video, PAN) <= 0.25


def test_mirrored_matrix_flips(tmp_path):
    """A display matrix with a horizontal flip (selfie cameras): the frame is mirrored, x motion negated."""
    path = tmp_path / "mirror.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SCENE.width, SCENE.height, "yuv420p"
        stream.set_display_rotation(0, hflip=True)
        for i in range(24):
            frame = from_rgb(SCENE.render(i / FPS), stream.pix_fmt)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    video = read_motion(transcode_to_mpeg4(path))
    assert _interior_error(video, (-PAN[0], PAN[1])) <= 0.25
    keyframe = extract_clips(path, min_frames=1).keyframes[0].astype(float)
    assert np.abs(keyframe - SCENE.render(0.0)[:, ::-1]).mean() < 4
