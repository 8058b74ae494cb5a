"""Truncated Matroska / WebM files (the header declares the full duration) are rejected; intact ones pass."""

import av
import numpy as np
import pytest

from lavit.video.pixels import from_rgb
from lavit.video import VideoDecodeError, extract_clips, transcode_to_mpeg4
from lavit.video.synthetic import Scene, Texture, write_video

SCENE = Scene(96, 160, (12.0, -6.0), Texture(1))
CONTAINERS = {"h264.mkv": "libx264", "vp9.webm": "libvpx-vp9", "ffv1.mkv": "ffv1"}


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("intact")
    files = {name: write_video(SCENE, folder / name, fps=6, duration=10, codec=codec) for name, codec in CONTAINERS.items()}
    files["h264.ts"] = write_video(SCENE, folder / "h264.ts", fps=6, duration=10)
    return files


@pytest.mark.parametrize("name", list(CONTAINERS))
@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_cut_file_raises_truncated(intact, tmp_path, name, keep):
    data = intact[name].read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VideoDecodeError, match=r"truncated: the frames end at [\d.]+ s of the 10.00 s the container declares") as info:
        extract_clips(cut)
    assert info.value.path == str(cut)
    with pytest.raises(VideoDecodeError, match="truncated"):
        transcode_to_mpeg4(cut, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("name", [*CONTAINERS, "h264.ts"])
def test_intact_file_passes(intact, name):
    clips = extract_clips(intact[name])
    assert clips.num_frames == 60 and clips.starts == [0, 24]


def test_variable_frame_rate_not_flagged(tmp_path):
    """Irregular intervals (1/30 s to 1.5 s between frames) span the declared duration: not truncated."""
    rng = np.random.default_rng(1)
    times = np.cumsum(np.concatenate([[0.0], rng.choice([1 / 30, 1 / 6, 0.5, 1.5], 40)]))
    path = write_video(SCENE, tmp_path / "vfr.mkv", times=times.tolist())
    assert extract_clips(path).num_frames >= round(times[-1] * 6)
    data = path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="truncated"):
        extract_clips(tmp_path / "cut.mkv")


def test_longer_audio_track_is_not_truncation(tmp_path):
    """The container's duration is its longest stream's: an audio track longer than the video is fine."""
    path = tmp_path / "av.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=6)
        video.width, video.height, video.pix_fmt = SCENE.width, SCENE.height, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for i in range(24):  # 4 s of video
            frame = from_rgb(SCENE.render(i / 6), video.pix_fmt)
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = np.zeros((1, 1024), np.float32)
        for i in range(0, 16000 * 8, 1024):  # 8 s of audio
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    with av.open(str(path)) as container:
        assert container.duration / av.time_base > 7.5
    assert extract_clips(path).num_frames == 24
