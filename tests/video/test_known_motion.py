"""Motion vectors read from the compressed stream against synthetic videos whose motion is known."""

import numpy as np
import pytest

from lavit.video.synthetic import MovingObject, Scene, Texture, write_video
from lavit.video import clip_motion, extract_clips, read_motion, transcode_to_mpeg4

FPS = 6


def _scene(pan_px_per_frame, height=192, width=320, fps=FPS, cuts=()):
    obj = MovingObject((64, 80), (120.0, 64.0), (-2.0 * fps, 1.5 * fps), Texture(7, min_wavelength=4, max_wavelength=16))
    pan = (pan_px_per_frame[0] * fps, pan_px_per_frame[1] * fps)
    return Scene(height, width, pan, Texture(1), [obj], cuts=list(cuts))


def _object_cells(obj, t, rows, cols):
    """(rows, cols) bool: macroblocks entirely inside the object at time t and at the previous frame."""
    mask = np.zeros((rows, cols), bool)
    for tt in (t, t - 1.0 / FPS):
        x0, y0 = obj.position[0] + obj.velocity[0] * tt, obj.position[1] + obj.velocity[1] * tt
        r0, r1 = int(np.ceil(y0 / 16)), int(np.floor((y0 + obj.size[0]) / 16))
        c0, c1 = int(np.ceil(x0 / 16)), int(np.floor((x0 + obj.size[1]) / 16))
        cur = np.zeros_like(mask)
        cur[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
        mask = cur if tt == t else mask & cur
    return mask


def _background_cells(obj, t, rows, cols):
    """Interior macroblocks (one-cell border dropped) at least one cell away from the object."""
    mask = np.zeros((rows, cols), bool)
    mask[1:-1, 1:-1] = True
    for tt in (t, t - 1.0 / FPS):
        x0, y0 = obj.position[0] + obj.velocity[0] * tt, obj.position[1] + obj.velocity[1] * tt
        r0, r1 = int(np.floor(y0 / 16)) - 1, int(np.ceil((y0 + obj.size[0]) / 16)) + 1
        c0, c1 = int(np.floor(x0 / 16)) - 1, int(np.ceil((x0 + obj.size[1]) / 16)) + 1
        mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = False
    return mask


@pytest.mark.parametrize("pan", [(3.0, -2.0), (-1.5, 0.5), (0.5, -4.5), (-6.0, 3.0), (2.5, 0.0)])
def test_global_translation_and_object_recovered(tmp_path, pan):
    scene = _scene(pan)
    write_video(scene, tmp_path / "pan.mp4", fps=FPS, duration=4)
    video = read_motion(transcode_to_mpeg4(tmp_path / "pan.mp4"))
    obj = scene.objects[0]
    rows, cols = video.motion.shape[1:3]
    bg_err, obj_err, bg_vectors = [], [], []
    for t in np.flatnonzero(~video.intra):
        field = video.motion[t]
        bg = _background_cells(obj, t / FPS, rows, cols)
        inside = _object_cells(obj, t / FPS, rows, cols)
        bg_vectors.append(field[bg])
        bg_err.append(np.abs(field[bg] - np.array(pan)).max(-1))
        obj_err.append(np.abs(field[inside] - np.array(obj.velocity) / FPS).max(-1))
    bg_err, obj_err = np.concatenate(bg_err), np.concatenate(obj_err)
    assert len(bg_err) > 500 and len(obj_err) > 20
    assert np.median(bg_err) <= 0.25
    assert np.median(obj_err) <= 0.25
    # Sign convention: content moving right/down gives positive x/y (forward displacement).
    median = np.median(np.concatenate(bg_vectors), axis=0)
    for axis in (0, 1):
        if pan[axis] != 0:
            assert np.sign(median[axis]) == np.sign(pan[axis])


def test_iframes_have_zero_motion(tmp_path):
    write_video(_scene((2.0, 1.0)), tmp_path / "v.mp4", fps=FPS, duration=6)
    video = read_motion(transcode_to_mpeg4(tmp_path / "v.mp4"))
    assert np.flatnonzero(video.intra).tolist() == [0, 12, 24]
    assert np.all(video.motion[video.intra] == 0)
    assert np.abs(video.motion[~video.intra]).mean() > 0.5
    clips = extract_clips(tmp_path / "v.mp4", sampling="dense")
    assert clips.starts == [0, 12]
    assert np.all(clips.motion[:, :, 0].numpy() == 0)  # the keyframe slot of every clip
    # Frame 12 is an I-frame inside clip 0 (GOP 12): filled, hence non-zero.
    assert np.abs(clips.motion[0, :, 12].numpy()).mean() > 0.1


def test_scene_cut_intra_frame_inside_clip_is_filled(tmp_path):
    pan = (2.0, -1.0)
    scene = _scene(pan, cuts=[8 / FPS])
    scene.objects = []  # a whole-frame cut: the mpeg4 encoder's own scene-change detection fires
    write_video(scene, tmp_path / "cut.mp4", fps=FPS, duration=4)
    video = read_motion(transcode_to_mpeg4(tmp_path / "cut.mp4"))
    assert np.flatnonzero(video.intra).tolist() == [0, 8, 20], "scene-change I-frame at 8, the GOP restarts there"
    assert np.all(video.motion[8] == 0)
    filled = clip_motion(video, 0)
    assert filled.shape == (24, *video.motion.shape[1:])
    np.testing.assert_allclose(filled[8], (video.motion[7] + video.motion[9]) / 2)
    interior = filled[8][1:-1, 1:-1].reshape(-1, 2)
    assert np.median(np.abs(interior - np.array(pan)).max(-1)) <= 0.5
    assert np.all(filled[0] == 0)


def test_odd_size(tmp_path):
    pan = (1.5, -1.0)
    write_video(_scene(pan, height=190, width=330), tmp_path / "odd.mp4", fps=FPS, duration=3)
    video = read_motion(transcode_to_mpeg4(tmp_path / "odd.mp4"))
    assert (video.height, video.width) == (190, 330)
    assert video.motion.shape[1:] == (12, 21, 2)
    interior = video.motion[~video.intra][:, 1:-1, 1:-1].reshape(-1, 2)
    assert np.median(np.abs(interior - np.array(pan)).max(-1)) <= 0.25
    clips = extract_clips(tmp_path / "odd.mp4")
    assert tuple(clips.motion.shape) == (1, 2, 24, 20, 36)
    assert clips.keyframes.shape == (1, 190, 330, 3)


def test_odd_dimension_is_made_even(tmp_path):
    write_video(_scene((1.0, 1.0), height=97, width=131), tmp_path / "odd.mkv", fps=FPS, duration=2, codec="ffv1")
    video = read_motion(transcode_to_mpeg4(tmp_path / "odd.mkv"))
    assert (video.height, video.width) == (96, 130)


def test_60fps_input_is_resampled_by_time(tmp_path):
    pan_per_output_frame = (3.0, -1.5)
    scene = _scene(pan_per_output_frame)  # velocities are per second, so any frame rate works
    write_video(scene, tmp_path / "fast.mp4", fps=60, duration=4)
    video = read_motion(transcode_to_mpeg4(tmp_path / "fast.mp4"))
    assert video.num_frames == 24
    interior = video.motion[~video.intra][:, 1:-1, 1:-1].reshape(-1, 2)
    assert np.median(np.abs(interior - np.array(pan_per_output_frame)).max(-1)) <= 0.25


def test_variable_frame_rate_input(tmp_path):
    """Irregular extra frames between the 6 fps instants: only timestamps pick the right ones."""
    rng = np.random.default_rng(0)
    times = []
    for k in range(24):
        times.append(k / FPS)
        extra = rng.integers(0, 4) if k < 23 else 0
        # second half of the interval: these round to slot k + 1, where the exact frame supersedes them
        times.extend(sorted(rng.uniform(k / FPS + 0.6 / FPS, (k + 1) / FPS - 0.05 / FPS, extra)))
    pan = (2.0, 1.0)
    write_video(_scene(pan), tmp_path / "vfr.mkv", times=times)
    video = read_motion(transcode_to_mpeg4(tmp_path / "vfr.mkv"))
    assert video.num_frames == 24
    interior = video.motion[~video.intra][:, 1:-1, 1:-1].reshape(-1, 2)
    assert np.median(np.abs(interior - np.array(pan)).max(-1)) <= 0.25
