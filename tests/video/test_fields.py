"""Dense fields, intra filling, normalisation, sampling and colour coding against hand-made truth."""

import numpy as np
import pytest

from lavit.video import clip_starts, dense_motion_field, fill_intra_frames, motion_to_rgb, normalize_motion, resize_motion

MV_DTYPE = np.dtype(
    [("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"), ("dst_x", "<i2"), ("dst_y", "<i2"),
     ("flags", "<u8"), ("motion_x", "<i4"), ("motion_y", "<i4"), ("motion_scale", "<u2")]
)


def _mv(source, w, h, dst_x, dst_y, mx, my, scale=2):
    return (source, w, h, dst_x + mx // scale, dst_y + my // scale, dst_x, dst_y, 0, mx, my, scale)


def test_dense_field_sign_subblock_average_and_intra():
    vectors = np.array(
        [
            _mv(-1, 16, 16, 8, 8, -6, 4),  # mb (0,0): src left of dst -> content moved right by 3, up by -2
            # mb (0,1): four 8x8 sub-blocks averaged
            _mv(-1, 8, 8, 20, 4, -2, 0), _mv(-1, 8, 8, 28, 4, -4, 0), _mv(-1, 8, 8, 20, 12, -6, 0), _mv(-1, 8, 8, 28, 12, -8, 0),
            _mv(1, 16, 16, 8, 24, -4, 2, scale=4),  # mb (1,0): future reference flips the sign
        ],
        dtype=MV_DTYPE,
    )
    field = dense_motion_field(vectors, height=40, width=40)  # 3 x 3 grid, padded
    assert field.shape == (3, 3, 2)
    np.testing.assert_allclose(field[0, 0], [3.0, -2.0])
    np.testing.assert_allclose(field[0, 1], [2.5, 0.0])
    np.testing.assert_allclose(field[1, 0], [-1.0, 0.5])
    assert np.all(field[1, 1] == 0) and np.all(field[2] == 0)  # no record = intra / padding


def test_fill_intra_frames_any_position():
    motion = np.arange(6, dtype=np.float32)[:, None, None, None] * np.ones((6, 2, 3, 2), np.float32)
    intra = np.array([True, False, True, True, False, True])
    motion[intra] = 0
    out = fill_intra_frames(motion, intra)
    assert np.all(out[0] == 0)  # the keyframe stays zero
    np.testing.assert_allclose(out[2], (1 + 4) / 2)  # nearest predicted neighbours on each side
    np.testing.assert_allclose(out[3], (1 + 4) / 2)
    np.testing.assert_allclose(out[5], 4)  # only a left neighbour
    np.testing.assert_array_equal(out[[1, 4]], motion[[1, 4]])


def test_normalize_modes():
    m = np.array([[32.0, -24.0]])
    np.testing.assert_allclose(normalize_motion(m, 320, 240, "unit"), [[0.1, -0.1]], rtol=1e-6)
    np.testing.assert_allclose(normalize_motion(m, 320, 240, "official"), [[0.1 / 0.0993703 * 10, -0.1 / 0.1130276 * 10]], rtol=1e-6)
    np.testing.assert_array_equal(normalize_motion(m, 320, 240, "pixels"), m)
    with pytest.raises(ValueError, match="normalization"):
        normalize_motion(m, 320, 240, "bogus")


def test_resize_layout_and_constant_field():
    m = np.zeros((24, 15, 20, 2), np.float32)
    m[..., 0], m[..., 1] = 1.5, -0.5
    out = resize_motion(m, (20, 36))
    assert tuple(out.shape) == (2, 24, 20, 36)
    np.testing.assert_allclose(out[0].numpy(), 1.5, rtol=1e-5)
    np.testing.assert_allclose(out[1].numpy(), -0.5, rtol=1e-5)


def test_clip_starts_policies():
    intra = np.zeros(130, bool)
    intra[[0, 12, 24, 30, 42, 54, 66, 78, 90, 102, 114, 126]] = True  # a scene cut at 30
    assert clip_starts(intra, sampling="official", max_clips=None) == [0, 30, 54, 78, 102]
    assert clip_starts(intra, sampling="official", max_clips=3) == [0, 54, 102]
    assert clip_starts(intra, sampling="dense", max_clips=None) == [0, 12, 24, 30, 42, 54, 66, 78, 90, 102]
    short = np.zeros(10, bool)
    short[0] = True
    assert clip_starts(short) == [0]


def test_colour_coding():
    field = np.zeros((1, 3, 2))
    field[0, 1] = [1.0, 0.0]
    field[0, 2] = [-1.0, 0.0]
    rgb = motion_to_rgb(field)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, 0].tolist() == [255, 255, 255]  # still = white
    assert rgb[0, 1, 0] > 200 and rgb[0, 1, 2] < 60  # +x is red in the Middlebury wheel
    assert rgb[0, 2, 2] > 200 and rgb[0, 2, 0] < 60  # -x is cyan/blue
