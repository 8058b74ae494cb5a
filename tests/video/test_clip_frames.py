"""extract_clips(frame_size=...): each clip's RGB frames, against independent decodes and known motion."""

from fractions import Fraction
import io

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lavit.video import extract_clips, read_motion, transcode_to_mpeg4
from lavit.video.pixels import from_rgb, to_rgb
from lavit.video.synthetic import MovingObject, Scene, Texture, write_video

FPS = 6


def _resize_swscale(frame: av.VideoFrame, size):
    """The documented resize written out: the whole frame, swscale bicubic to exactly (H, W), (3, H, W)."""
    H, W = size
    return frame.reformat(width=W, height=H, format="rgb24", interpolation="BICUBIC").to_ndarray().transpose(2, 0, 1)


def _resize_torch(rgb: np.ndarray, size) -> np.ndarray:
    """An independent resize: torch bicubic antialiased of a whole (H, W, 3) RGB frame to ``size``."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=tuple(size), mode="bicubic", antialias=True, align_corners=False)[0].round().clamp(0, 255).numpy()


def _full_decode(path):
    with av.open(str(path)) as container:
        return list(container.decode(container.streams.video[0]))


@pytest.fixture(scope="module")
def mpeg4_file(tmp_path_factory, real_clip):
    """The real clip transcoded by lavit to a file, for plain PyAV to decode."""
    return transcode_to_mpeg4(real_clip, tmp_path_factory.mktemp("mpeg4") / "clip.mp4")


@pytest.mark.parametrize("size", [(64, 64), (32, 48), (120, 96)])
def test_frames_equal_an_independent_full_decode(real_clip, mpeg4_file, size):
    clips = extract_clips(real_clip, frame_size=size)
    decoded = _full_decode(mpeg4_file)
    assert len(decoded) == clips.num_frames == 84
    n = len(clips)
    assert tuple(clips.frames.shape) == (n, 24, 3, *size) and clips.frames.dtype == torch.uint8
    for k, s in enumerate(clips.starts):
        expected = np.stack([_resize_swscale(decoded[s + t], size) for t in range(24)])
        # same stream, same scaler: bit-identical
        np.testing.assert_array_equal(clips.frames[k].numpy(), expected)
        # and close to an unrelated resize (torch bicubic, antialiased) of the full-size RGB frames
        torch_ref = np.stack([_resize_torch(to_rgb(decoded[s + t]), size) for t in range(24)])
        err = np.abs(clips.frames[k].numpy().astype(float) - torch_ref)
        assert err.mean() < 2.0 and np.percentile(err, 99) <= 12, (err.mean(), np.percentile(err, 99))


@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_first_frame_is_the_resized_keyframe(real_clip, size):
    clips = extract_clips(real_clip, frame_size=size)
    for k in range(len(clips)):
        keyframe = av.VideoFrame.from_ndarray(clips.keyframes[k], format="rgb24")
        expected = _resize_swscale(keyframe, size).astype(int)
        err = np.abs(clips.frames[k, 0].numpy().astype(int) - expected)
        # RGB-space resize of the keyframe vs YUV-space resize: only chroma subsampling differs
        assert err.mean() <= 1.5 and np.percentile(err, 99) <= 4, (err.mean(), np.percentile(err, 99))
        others = np.abs(clips.frames[k, 12].numpy().astype(int) - expected).mean()
        assert others > 3 * err.mean()  # the check tells frames apart


def _varying_pan_video(path, steps, pan=(1.0, -0.6), height=192, width=320):
    """6 fps H.264 whose frame k shows the scene at time sum(steps[:k]): per-frame displacement pan * steps[k-1]."""
    scene = Scene(height, width, pan, Texture(3))
    times = np.concatenate([[0.0], np.cumsum(steps)])
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast", "bf": "0"}
        for k, t in enumerate(times):
            frame = from_rgb(scene.render(float(t)), stream.pix_fmt)
            frame.pts = k
            frame.time_base = Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _phase_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dx, dy) with b(x) ~ a(x - d), sub-pixel by a parabola through the correlation peak."""
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa, fb = np.fft.fft2((a - a.mean()) * window), np.fft.fft2((b - b.mean()) * window)
    r = fb * np.conj(fa)
    corr = np.real(np.fft.ifft2(r / np.maximum(np.abs(r), 1e-9)))
    y, x = np.unravel_index(np.argmax(corr), corr.shape)
    d = []
    for axis, p in ((1, x), (0, y)):
        n = corr.shape[axis]
        at = lambda i: corr[(y, (p + i) % n)] if axis == 1 else corr[((p + i) % n, x)]  # noqa: E731
        c0, cm, cp = at(0), at(-1), at(1)
        sub = 0.5 * (cm - cp) / (cm - 2 * c0 + cp)
        d.append((p + n // 2) % n - n // 2 + sub)
    return np.array(d)


def _rendered_grey(scene: Scene, t: float, size) -> np.ndarray:
    """The scene at time ``t`` as the clip frames show it: grey, area-resized to ``size`` (H, W)."""
    rgb = torch.from_numpy(scene.render(t)).permute(2, 0, 1)[None].float()
    return F.interpolate(rgb, size=tuple(size), mode="area")[0].mean(0).numpy()


def test_frame_displacement_matches_motion_of_the_same_frame(tmp_path):
    rng = np.random.default_rng(0)
    # px of x-pan per frame, changing every frame; beyond ~6 px reversals the encoder codes some blocks
    # intra (zero), which would bias the mean of the field
    steps = np.round(rng.uniform(-5, 5, 35) * 2) / 2
    pan = (1.0, -0.6)
    path = _varying_pan_video(tmp_path / "pan.mp4", steps, pan=pan)
    size = (96, 160)  # 192x320 -> scale 1/2
    clips = extract_clips(path, frame_size=size, normalization="pixels", field_size=(12, 20), sampling="dense")
    assert clips.starts == [0, 12]
    truth = np.stack([steps * pan[0], steps * pan[1]], 1) / 2  # frame-scale displacement of frame k (k >= 1): truth[k - 1]
    times = np.concatenate([[0.0], np.cumsum(steps)])  # the scene time frame k shows
    scene = Scene(192, 320, pan, Texture(3))
    grey = clips.frames.float().mean(2).numpy()  # (N, 24, 96, 160)
    predicted = np.array([t % 12 != 0 for t in range(1, 24)])  # t = 12 is an I-frame (motion filled in)
    for k, s in enumerate(clips.starts):
        measured = np.stack([_phase_shift(grey[k, t - 1], grey[k, t]) for t in range(1, 24)])
        # the frames move as rendered (a dropped or repeated frame is off by a whole step, 0.25-2.5 px): within
        # 0.5 px between P-frames (measured <= 0.25)
        np.testing.assert_allclose(measured[predicted], truth[s : s + 23][predicted], atol=0.5)
        # a phase shift into an I-frame crosses the quantiser step the rate control sets there (measured off by
        # up to 1.2 px), so the I-frame is matched to the scene itself: the time it shows, found on a 0.05 grid,
        # is its own, not a neighbour's (a repeated or dropped frame is off by a whole step, >= 0.5)
        i = s + 12
        grid = times[i] + np.linspace(-2.5, 2.5, 101)
        errors = [np.abs(grey[k, 12] - _rendered_grey(scene, t, size)).mean() for t in grid]
        assert abs(grid[int(np.argmin(errors))] - times[i]) <= 0.1  # measured: 0.0 in both clips
        vectors = clips.motion[k, :, 1:, 1:-1, 1:-1].mean((-1, -2)).T.numpy() / 2  # (23, 2) at frame scale
        err = np.abs(measured - vectors)[predicted]
        assert err.max() <= 1.0 and err.mean() <= 0.2, (err.max(), err.mean())  # measured: 0.31, 0.10
        moving = (np.abs(truth[s : s + 23]) >= 0.5) & predicted[:, None]
        assert np.all(np.sign(measured[moving]) == np.sign(vectors[moving]))
        # frames one step off would disagree: the check has power (measured: mean 1.3, max 4.2)
        off = np.abs(measured[1:] - vectors[:-1])[predicted[1:] & predicted[:-1]]
        assert off.mean() > 5 * err.mean() and off.max() > 2.0


def test_shapes_non_square_source_and_none_unchanged(tmp_path):
    scene = Scene(192, 320, (12.0, -6.0), Texture(1), [MovingObject((40, 60), (100.0, 50.0), (-12.0, 6.0), Texture(5))])
    path = write_video(scene, tmp_path / "v.mp4", fps=FPS, duration=8)
    plain = extract_clips(path)
    assert plain.frames is None
    for size in [(64, 64), (32, 48)]:
        clips = extract_clips(path, frame_size=size)
        assert tuple(clips.frames.shape) == (len(clips), 24, 3, *size) and clips.frames.dtype == torch.uint8
        assert clips.frames.float().std() > 10
        # frames add an output, they change none of the others
        assert clips.starts == plain.starts and clips.num_frames == plain.num_frames
        assert torch.equal(clips.motion, plain.motion)
        np.testing.assert_array_equal(clips.keyframes, plain.keyframes)


def test_short_video_frames_repeat_the_last_where_motion_is_padded(tmp_path):
    scene = Scene(96, 160, (12.0, 6.0), Texture(2))
    path = write_video(scene, tmp_path / "short.mp4", fps=FPS, duration=3)  # 18 frames < 24
    clips = extract_clips(path, frame_size=(48, 48))
    assert clips.num_frames == 18 and clips.starts == [0]
    frames = clips.frames[0]
    assert tuple(frames.shape) == (24, 3, 48, 48)
    assert not torch.equal(frames[17], frames[16])  # real frames move
    for t in range(18, 24):
        assert torch.equal(frames[t], frames[17])
    assert torch.all(clips.motion[0, :, 18:] == 0) and clips.motion[0, :, 1:18].abs().mean() > 0.1


def test_untranscoded_route_gives_the_same_frames(real_clip, mpeg4_file):
    size = (64, 80)
    reference = extract_clips(real_clip, frame_size=size)
    data = mpeg4_file.read_bytes()
    for source in (mpeg4_file, data, io.BytesIO(data)):
        clips = extract_clips(source, transcode=False, frame_size=size)
        assert clips.starts == reference.starts
        assert torch.equal(clips.frames, reference.frames)
        torch.testing.assert_close(clips.motion, reference.motion)
    assert extract_clips(mpeg4_file, transcode=False).frames is None


@pytest.mark.parametrize("bad", [(0, 64), (64,), "64", (64.0, 64), (True, 64)])
def test_invalid_frame_size_is_named(real_clip, bad):
    with pytest.raises(ValueError, match="frame_size"):
        extract_clips(real_clip, frame_size=bad)


def test_read_motion_intra_flags_of_the_synthetic_pan(tmp_path):
    """The alignment test's premise: the transcoded pan has I-frames exactly every 12 frames."""
    path = _varying_pan_video(tmp_path / "pan.mp4", np.full(35, 4.0))
    video = read_motion(transcode_to_mpeg4(path))
    assert np.flatnonzero(video.intra).tolist() == [0, 12, 24]


def test_frames_stay_aligned_with_the_motion_field_when_the_aspect_changes(tmp_path):
    """Square frames of a 160x96 video: the object moving near the right edge must be where its motion is.

    A centre crop (the old resize) cut the right fifth of the picture, and with it the object, from the frames
    while the motion field still covers the whole picture: motion and frames described different places."""
    obj = MovingObject((32, 24), (126.0, 20.0), (0.0, 24.0), Texture(7, min_wavelength=4, max_wavelength=12))
    path = write_video(Scene(96, 160, (0.0, 0.0), Texture(3), [obj]), tmp_path / "edge.mp4", fps=FPS, duration=4)
    size = (32, 32)
    clips = extract_clips(path, frame_size=size, max_clips=1)
    frames = clips.frames[0].float().mean(1)  # (24, 32, 32) grey
    change = (frames[1:12] - frames[:1]).abs().mean((0, 1))  # (32,) per column: where the picture changes
    speed = clips.motion[0, :, 1:12].norm(dim=0).mean(0)  # (20, 36) field cells over the whole picture
    motion = F.interpolate(speed[None, None], size=size, mode="bilinear", align_corners=False)[0, 0].mean(0)  # (32,)
    # the object spans x = 126..150 of 160, columns 25..30 of 32
    assert change[25:31].mean() > 5 * change[:20].mean(), change
    assert motion[25:31].mean() > 5 * motion[:20].mean(), motion
    assert abs(int(change.argmax()) - int(motion.argmax())) <= 2, (change.argmax(), motion.argmax())
