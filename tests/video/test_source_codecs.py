"""Intra-only and short-GOP sources: the MPEG-4 GOP alone places the I-frames, motion stays true."""

import numpy as np
import pytest

from lavit.video import extract_clips, read_motion, transcode_to_mpeg4
from lavit.video.synthetic import Scene, Texture, write_video

FPS = 6
PAN = (2.5, -1.5)  # px per output frame

SOURCES = {
    "mjpeg.avi": dict(codec="mjpeg", quality=2),
    "prores.mov": dict(codec="prores_ks"),
    "ffv1.mkv": dict(codec="ffv1"),
    "x264_all_intra.mp4": dict(codec="libx264", options={"x264-params": "keyint=1"}),
    "x264_gop5.mp4": dict(codec="libx264", options={"g": "5"}),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    scene = Scene(144, 256, (PAN[0] * FPS, PAN[1] * FPS), Texture(1))
    return {name: write_video(scene, folder / name, fps=FPS, duration=8, **kw) for name, kw in SOURCES.items()}


@pytest.mark.parametrize("name", list(SOURCES))
def test_iframes_every_gop_whatever_the_source(sources, name):
    video = read_motion(transcode_to_mpeg4(sources[name]))
    assert video.num_frames == 48
    assert np.flatnonzero(video.intra).tolist() == [0, 12, 24, 36]
    assert np.abs(video.motion[~video.intra]).mean() > 1.0  # predicted frames carry motion
    assert extract_clips(sources[name], sampling="dense", max_clips=None).starts == [0, 12, 24]


@pytest.mark.parametrize("name", ["mjpeg.avi", "prores.mov"])
def test_intra_only_source_motion_matches_pan(sources, name):
    video = read_motion(transcode_to_mpeg4(sources[name]))
    interior = video.motion[~video.intra][:, 1:-1, 1:-1].reshape(-1, 2)
    err = np.abs(interior - np.array(PAN)).max(-1)
    assert len(err) > 1000
    assert np.median(err) <= 0.25 and np.quantile(err, 0.9) <= 0.25
