"""``lavit reconstruct``: keyframe + (tokenized) motion -> mp4 per clip, side by side with the ground truth."""

import json

import av
import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import: before capsys swaps it
import numpy as np
import pytest
import torch

from lavit.video.pixels import to_rgb
from lavit.detokenizer import VideoDetokenizerModel
from lavit.detokenizer.loading import save_video_detokenizer
from lavit.pipelines.extract import output_folder_name
from lavit.tokenizers.loading import save_motion_tokenizer
from lavit.tokenizers.motion_config import MotionTokenizerConfig
from lavit.tokenizers.motion_tokenizer import MotionTokenizer
from lavit.video import extract_clips
from lavit.video.synthetic import random_scene, write_video
from tests.cli_runner import run_lavit


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("reconstruct")
    torch.manual_seed(0)
    save_video_detokenizer(VideoDetokenizerModel("demo"), root / "demo.safetensors")
    save_video_detokenizer(VideoDetokenizerModel("tiny"), root / "latent.safetensors")
    scene, _ = random_scene(np.random.default_rng(0), height=96, width=160)
    write_video(scene, root / "pan.mp4", fps=12, duration=4.5)
    return root


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return np.stack([to_rgb(f) for f in container.decode(stream)]), float(stream.average_rate)


def test_reconstruct_writes_clips_beside_the_ground_truth(files, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = run_lavit(capsys, "reconstruct", files / "pan.mp4", "--detokenizer", files / "demo.safetensors",
                             "--size", "64x32", "--steps", "2", "--max-clips", "1", "-o", out)
    assert rc == 0, err
    assert "1 clips from 1 videos" in stdout
    folder = out / output_folder_name(files / "pan.mp4")
    video, fps = _decode(folder / "clip_00.mp4")
    assert video.shape == (24, 32, 64, 3) and fps == pytest.approx(6.0)
    both, _ = _decode(folder / "clip_00_side_by_side.mp4")
    assert both.shape == (24, 32, 128, 3)
    truth = extract_clips(files / "pan.mp4", frame_size=(32, 64), max_clips=1).frames[0].permute(0, 2, 3, 1).numpy()
    left = np.abs(both[:, :, :64].astype(float) - truth).mean()  # the ground truth, up to H.264 loss (4:2:0 at 32x64)
    assert left < 8.0 and left < 0.5 * np.abs(both[:, :, :64].astype(float) - truth[::-1]).mean()
    assert np.abs(both[:, :, 64:].astype(float) - video).mean() < 8.0
    metrics = json.loads((folder / "metrics.json").read_text())
    clip = metrics["clips"][0]
    assert metrics["size"] == [32, 64] and clip["start"] == 0
    mse = np.mean((np.broadcast_to(truth[:1], truth.shape).astype(float) - truth) ** 2)
    assert clip["psnr_repeated_keyframe"] == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-6)
    assert np.isfinite(clip["psnr"])
    assert (folder / "comparison.png").is_file()


def test_reconstruct_through_motion_tokens(files, tmp_path, capsys):
    tokenizer = MotionTokenizer(MotionTokenizerConfig.from_name("tiny"))
    save_motion_tokenizer(tokenizer, files / "motion.safetensors")
    out = tmp_path / "tokens"
    rc, _, err = run_lavit(capsys, "reconstruct", files / "pan.mp4", "--detokenizer", files / "demo.safetensors",
                        "--motion-tokenizer", files / "motion.safetensors", "--size", "64x32", "--steps", "1",
                        "--max-clips", "1", "-o", out)
    assert rc == 0, err
    video, _ = _decode(out / output_folder_name(files / "pan.mp4") / "clip_00.mp4")
    assert video.shape[:3] == (tokenizer.config.num_frames, 32, 64)


@pytest.mark.parametrize("case, expected", [
    ("size", "must be a multiple of 2"),
    ("syntax", "argument --size: expected WxH"),
    ("missing", "missing.safetensors"),
    ("latent without vae", "--vae"),
])
def test_reconstruct_errors_are_one_line(files, tmp_path, capsys, case, expected):
    detokenizer = {"missing": files / "missing.safetensors", "latent without vae": files / "latent.safetensors"}.get(
        case, files / "demo.safetensors")
    size = {"size": "64x33", "syntax": "64-32"}.get(case, "64x64")
    rc, _, err = run_lavit(capsys, "reconstruct", files / "pan.mp4", "--detokenizer", detokenizer, "--size", size,
                        "-o", tmp_path / "o")
    assert rc == 2
    assert len(err) == 1 and expected in err[0], err
