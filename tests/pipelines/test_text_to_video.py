"""TextToVideoPipeline and `lavit generate` on tiny random components saved in their real formats."""

import av
import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import: before capsys swaps it
import numpy as np
import pytest
import torch

from lavit.video.pixels import to_rgb
from lavit.pipelines import PipelineConfig, TextToVideoPipeline, clip_boundary_jumps
from lavit.pipelines.stitch import mean_abs_difference, resize_images
from tests.cli_runner import run_lavit
from tests.pipelines.pipeline_fixtures import KEYFRAME_SIZE, VIDEO_SIZE, pipeline_config, write_config  # noqa: F401

PROMPTS = ["a red square moving left", "a blue circle moving right"]


@pytest.fixture(scope="module")
def pipe(pipeline_config):
    return TextToVideoPipeline.from_config(pipeline_config)


def decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([to_rgb(f) for f in container.decode(stream)])
        return frames, float(stream.average_rate)


def test_batched_prompts_give_stitched_videos_with_the_lm_codes(pipe):
    out = pipe(PROMPTS, num_clips=2, seed=0, progress=False)
    vocab = pipe.lm.vocab
    assert len(out.videos) == 2 and out.fps == 6.0
    for video, keyframes, motion in zip(out.videos, out.keyframe_ids, out.motion_ids):
        assert video.shape == (24 + 23, *VIDEO_SIZE, 3) and video.dtype == torch.uint8
        assert len(keyframes) == len(motion) == 2
        assert all(4 <= len(k) <= 12 and int(k.max()) < vocab.visual_codes for k in keyframes)
        assert all(m.shape == (vocab.motion_tokens_per_clip,) and int(m.max()) < vocab.motion_codes for m in motion)
    assert [k.shape for k in out.keyframes[0]] == [(*KEYFRAME_SIZE, 3)] * 2
    assert set(out.timings) == {"lm", "keyframe_detokenizer", "motion_decode", "video_detokenizer", "vae_decode"}


def test_keyframes_never_hold_more_codes_than_the_keyframe_decoder_draws(pipe):
    limit = pipe.stages.keyframe_detokenizer.decoder.config.num_queries  # 16 for the tiny decoder
    out = pipe(PROMPTS[0], seed=0, progress=False, min_keyframe_tokens=limit + 40, max_keyframe_tokens=500)
    assert [len(k) for k in out.keyframe_ids[0]] == [limit]  # both bounds clamped to the limit


def test_seeded_runs_are_identical_and_seeds_differ(pipe):
    a = pipe(PROMPTS[0], seed=3, progress=False)
    b = pipe(PROMPTS[0], seed=3, progress=False)
    c = pipe(PROMPTS[0], seed=4, progress=False)
    assert torch.equal(a.videos[0], b.videos[0])
    assert all(torch.equal(x, y) for x, y in zip(a.keyframe_ids[0], b.keyframe_ids[0]))
    assert not torch.equal(a.videos[0], c.videos[0])


@pytest.mark.slow
def test_chained_keyframes_start_from_the_previous_clips_last_frame(pipe):
    """Clip k+1's keyframe latent against the latent of clip k's last frame (what the keyframe detokenizer continues
    from: VAE mode x scaling factor); in latents because the tiny VAE is random (decode(encode(x)) is not x). Measured
    (3 clips, 10 keyframe steps, seed 0), mean |latent difference| at the two boundaries: renoise 0.28 / 0.28,
    ddim_inversion 0.08 / 0.08, none 6.9 / 6.6 (the stitched pixel jumps, ~60 in every mode, say nothing with a random
    video detokenizer)."""
    detokenizer = pipe.stages.keyframe_detokenizer
    distances, jumps = {}, {}
    for chaining in ("renoise", "ddim_inversion", "none"):
        out = pipe(PROMPTS[0], num_clips=3, seed=0, progress=False, chaining=chaining, keyframe_steps=10)
        video, latents = out.videos[0], out.keyframe_latents[0]
        last = torch.stack([video[23 * (k + 1)] for k in range(2)])  # clips 0 and 1's last frames in the stitched video
        start = detokenizer.encode_image(resize_images(last, KEYFRAME_SIZE))
        distances[chaining] = [float((latents[k + 1] - start[k]).abs().mean().detach()) for k in range(2)]
        jumps[chaining] = clip_boundary_jumps(video, 3)
    print("keyframe latent distance", distances, "stitched jumps (pixels)", jumps)
    for mode in ("renoise", "ddim_inversion"):
        assert max(distances[mode]) < 0.5 * min(distances["none"]), (mode, distances)


def test_generate_cli_writes_videos_that_redecode(pipeline_config, tmp_path, capsys):
    mp4, gif = tmp_path / "out.mp4", tmp_path / "out.gif"
    rc, stdout, err = run_lavit(capsys, "generate", PROMPTS[0], "-o", mp4, "--clips", "2", "-c", pipeline_config, "-q")
    assert rc == 0, err
    frames, fps = decode(mp4)
    assert frames.shape == (47, *VIDEO_SIZE, 3) and fps == pytest.approx(6.0)
    rc, _, err = run_lavit(capsys, "generate", PROMPTS[0], "-o", gif, "-c", pipeline_config, "-q", "--seed", "5")
    assert rc == 0, err
    frames, _ = decode(gif)
    expected = TextToVideoPipeline.from_config(pipeline_config)(PROMPTS[0], seed=5, progress=False).videos[0].numpy()
    assert frames.shape == expected.shape == (24, *VIDEO_SIZE, 3)
    error = np.abs(frames.astype(float) - expected).mean()  # an 8-bit palette of the same frames (measured ~16)
    assert error < 20 and error < 0.5 * np.abs(frames.astype(float) - expected[::-1]).mean()


def test_generate_cli_png_is_text_to_image(pipeline_config, tmp_path, capsys):
    from PIL import Image

    rc, _, err = run_lavit(capsys, "generate", PROMPTS[1], "-o", tmp_path / "image.png", "-c", pipeline_config, "-q")
    assert rc == 0, err
    assert np.array(Image.open(tmp_path / "image.png")).shape == (*KEYFRAME_SIZE, 3)


def _one_line_error(capsys, *argv):
    rc, stdout, err = run_lavit(capsys, *argv)
    assert rc == 2 and len(err) == 1 and "Traceback" not in "".join(err), err
    return err[0]


def test_bad_input_errors_come_before_any_loading(pipeline_config, tmp_path, capsys):
    # an LM file that would fail to load: each error below must come before it is read
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    broken = write_config(tmp_path / "broken.yaml", pipeline_config, checkpoints={"lm": str(garbage)})
    line = _one_line_error(capsys, "generate", "  ", "-o", tmp_path / "a.mp4", "-c", broken)
    assert "prompt 0 is empty" in line
    missing = write_config(tmp_path / "missing.yaml", broken,
                           checkpoints={"video_detokenizer": str(tmp_path / "no_such.ckpt")})
    line = _one_line_error(capsys, "generate", "x", "-o", tmp_path / "a.mp4", "-c", missing)
    assert "'video_detokenizer'" in line and str(tmp_path / "no_such.ckpt") in line
    unknown = write_config(tmp_path / "unknown.yaml", pipeline_config, generation={"cfg": 3})
    line = _one_line_error(capsys, "generate", "x", "-o", tmp_path / "a.mp4", "-c", unknown)
    assert "'cfg'" in line and "allowed:" in line
    line = _one_line_error(capsys, "generate", "x", "-o", tmp_path / "a.avi", "-c", pipeline_config)
    assert "'.avi'" in line
    assert not list(tmp_path.glob("a.*"))


def test_from_config_checks_before_loading(pipeline_config, tmp_path):
    config = PipelineConfig.from_file(pipeline_config)
    from dataclasses import replace

    gone = replace(config, checkpoints={**config.checkpoints, "keyframe_detokenizer": str(tmp_path / "none")})
    with pytest.raises(FileNotFoundError, match="'keyframe_detokenizer'"):
        TextToVideoPipeline.from_config(gone)
    with pytest.raises(ValueError, match="num_clips"):
        TextToVideoPipeline.from_config(config)("x", num_clips=0)
