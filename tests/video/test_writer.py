"""write_frames and comparison_picture: files re-decode with PyAV to the frames written."""

import av
import numpy as np
import pytest

from lavit.video.pixels import to_rgb
from lavit.video.writer import comparison_picture, write_frames


def _frames(t=7, h=32, w=48):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, h // 8, w // 8, 3)).repeat(8, 1).repeat(8, 2)  # flat 8x8 blocks: compress well
    return np.concatenate([np.roll(base, i, axis=2) for i in range(t)]).astype(np.uint8)


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([to_rgb(f) for f in container.decode(stream)])
        return frames, float(stream.average_rate)


@pytest.mark.parametrize("suffix, tolerance", [(".mp4", 12.0), (".gif", 40.0)])
def test_written_video_decodes_to_the_frames(tmp_path, suffix, tolerance):
    frames = _frames()
    decoded, fps = _decode(write_frames(frames, tmp_path / f"v{suffix}", fps=6))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(float) - frames).mean() < tolerance
    if suffix == ".mp4":
        assert fps == pytest.approx(6.0)


def test_odd_sizes_and_bad_input(tmp_path):
    decoded, _ = _decode(write_frames(_frames(3, 24, 40)[:, :17, :33], tmp_path / "odd.mp4"))
    assert decoded.shape == (3, 17, 33, 3)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8"):
        write_frames(np.zeros((3, 8, 8, 3), np.float32), tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="unknown video suffix"):
        write_frames(_frames(), tmp_path / "x.avi")


def test_comparison_picture_places_frames():
    a, b = _frames(7), 255 - _frames(7)
    picture = comparison_picture([a, b], num_frames=3, gap=2)
    assert picture.shape == (2 * 32 + 2, 3 * 48 + 4, 3)
    np.testing.assert_array_equal(picture[:32, :48], a[0])
    np.testing.assert_array_equal(picture[34:, 100:], b[6])
    np.testing.assert_array_equal(picture[34:, 50:98], b[3])
