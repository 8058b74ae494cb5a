"""Image-to-video, text-to-image, reconstruction through tokens, video QA (`lavit ask`) on the tiny components."""

import av
import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import: before capsys swaps it
import numpy as np
import pytest
import torch
from PIL import Image

from lavit.video.pixels import to_rgb
from lavit.lm.conversation import build_prompt, tokenize_prompt
from lavit.lm.placeholders import VIDEO_PLACEHOLDER
from lavit.pipelines import ImageToVideoPipeline, TextToImagePipeline, VideoQAPipeline, VideoReconstructionPipeline
from lavit.pipelines.stitch import resize_images
from lavit.video import extract_clips, preprocess_keyframes
from lavit.video.synthetic import random_scene, write_video
from tests.cli_runner import run_lavit
from tests.pipelines.pipeline_fixtures import KEYFRAME_SIZE, VIDEO_SIZE, pipeline_config, write_config  # noqa: F401


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    scene, _ = random_scene(np.random.default_rng(0), height=96, width=160)
    write_video(scene, root / "pan.mp4", fps=12, duration=8.5)  # 51 frames at 6 fps: 2 clips
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "image.png")
    (root / "broken.mp4").write_bytes(b"\x00" * 2048)
    return root


def decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return np.stack([to_rgb(f) for f in container.decode(stream)]), float(stream.average_rate)


@pytest.mark.slow
def test_image_to_video_animates_the_given_image(pipeline_config, media, tmp_path, capsys):
    pipe = ImageToVideoPipeline.from_config(pipeline_config)
    image = torch.from_numpy(np.array(Image.open(media / "image.png")))
    out = pipe(image, "a red square moving left", num_clips=2, seed=1, progress=False)
    again = pipe(image, "a red square moving left", num_clips=2, seed=1, progress=False)
    assert out.videos[0].shape == (47, *VIDEO_SIZE, 3) and torch.equal(out.videos[0], again.videos[0])
    # clip 0's keyframe codes are the keyframe tokenizer's of the image, its keyframe the image itself
    x = preprocess_keyframes(image[None].numpy(), pipe.keyframe_tokenizer.config.img_size)
    codes = pipe.keyframe_tokenizer.tokenize(x, selection="deterministic")[0]
    assert len(codes) and torch.equal(out.keyframe_ids[0][0], codes)
    assert torch.equal(out.keyframes[0][0], image)
    assert out.keyframes[0][1].shape == (*KEYFRAME_SIZE, 3)  # clip 1: drawn by the keyframe detokenizer
    rc, _, err = run_lavit(capsys, "generate", "", "--image", media / "image.png", "-o", tmp_path / "i2v.mp4", "--clips", "2",
                           "-c", pipeline_config, "-q")
    assert rc == 0, err
    frames, fps = decode(tmp_path / "i2v.mp4")
    assert frames.shape == (47, *VIDEO_SIZE, 3) and fps == pytest.approx(6.0)
    rc, _, err = run_lavit(capsys, "generate", "x", "--image", media / "nope.png", "-o", tmp_path / "a.mp4", "-c", pipeline_config)
    assert rc == 2 and len(err) == 1 and "nope.png" in err[0]


def test_text_to_image_is_the_keyframe_detokenizer_on_the_lm_codes(pipeline_config):
    pipe = TextToImagePipeline.from_config(pipeline_config)
    out = pipe(["a red square", "a blue circle"], seed=2, progress=False)
    assert [im.shape for im in out.images] == [(*KEYFRAME_SIZE, 3)] * 2
    assert torch.equal(torch.stack(out.images), torch.stack(pipe(["a red square", "a blue circle"], seed=2, progress=False).images))
    g = pipe.generation
    direct = pipe.keyframe_detokenizer.generate(out.keyframe_ids, size=KEYFRAME_SIZE, guidance=g.keyframe_cfg,
                                                num_steps=g.keyframe_steps, seed=2).images
    assert torch.equal(torch.stack(out.images), direct)


def test_reconstruction_goes_through_both_tokenizers(pipeline_config, media):
    pipe = VideoReconstructionPipeline.from_config(pipeline_config)
    out = pipe(media / "pan.mp4", max_clips=2, seed=0, progress=False)
    clips = extract_clips(media / "pan.mp4", max_clips=2, **{k: v for k, v in pipe.clip_options.items() if k != "max_clips"})
    assert len(clips) == 2 and out.videos[0].shape == (48, *VIDEO_SIZE, 3) and out.fps == pytest.approx(clips.fps)
    motion = pipe.stages.motion_tokenizer.tokenize(clips.motion)
    assert all(torch.equal(a, b) for a, b in zip(out.motion_ids[0], motion))
    x = preprocess_keyframes(clips.keyframes, pipe.keyframe_tokenizer.config.img_size)
    assert all(torch.equal(a, b) for a, b in zip(out.keyframe_ids[0], pipe.keyframe_tokenizer.tokenize(x, selection="deterministic")))
    assert torch.equal(out.videos[0], pipe(media / "pan.mp4", max_clips=2, seed=0, progress=False).videos[0])


@torch.no_grad()
def test_video_qa_answers_from_the_spliced_prompt(pipeline_config, media):
    """The first answer token is the argmax (over text ids) of the LM on the prompt with the clips spliced in by hand:
    ``[IMG] keyframe features [/IMG] [MOV] motion codes [/MOV]`` per clip at ``<video>``."""
    pipe = VideoQAPipeline.from_config(pipeline_config)
    clips = pipe.read(media / "pan.mp4", max_clips=2)
    out = pipe(clips, ["what is moving in the video", "the camera pans"], max_answer_tokens=1)
    assert len(out.answers) == 2 and all(isinstance(a, str) for a in out.answers)
    model, v = pipe.lm.model, pipe.lm.vocab
    embed = model.get_input_embeddings()
    features = pipe.features(clips)
    for question, answer in zip(["what is moving in the video", "the camera pans"], out.answer_ids):
        ids = tokenize_prompt(build_prompt(question, "video"), pipe.lm.tokenizer)
        at = ids.index(VIDEO_PLACEHOLDER)
        parts = [embed(torch.tensor(ids[:at]))]
        for k, keyframe in enumerate(features.keyframes):
            parts += [embed(torch.tensor([v.img_start])), keyframe, embed(torch.tensor([v.img_end, v.mov_start])),
                      embed(features.motion[k] + v.motion_offset), embed(torch.tensor([v.mov_end]))]
        parts.append(embed(torch.tensor(ids[at + 1:])))
        logits = model(inputs_embeds=torch.cat(parts)[None]).logits[0, -1, : v.text_size]
        expected = int(logits.argmax())
        assert answer.tolist() == ([] if expected == v.eos_id else [expected])


def test_video_qa_with_keyframe_codes_splices_the_all_discrete_ids(pipeline_config, media):
    """``understanding_keyframes: codes``: the prompt holds ``[IMG] keyframe code ids [/IMG] [MOV] motion ids [/MOV]``
    per clip as plain tokens; the first answer token is the LM's argmax (over text ids) on those ids."""
    pipe = VideoQAPipeline.from_config(pipeline_config)
    clips = pipe.read(media / "pan.mp4", max_clips=2)
    out = pipe(clips, "what is moving in the video", max_answer_tokens=1, understanding_keyframes="codes")
    model, v = pipe.lm.model, pipe.lm.vocab
    media_ids = pipe.features(clips, "codes")
    ids = tokenize_prompt(build_prompt("what is moving in the video", "video"), pipe.lm.tokenizer)
    at = ids.index(VIDEO_PLACEHOLDER)
    video = []
    for codes, motion in zip(media_ids.keyframes, media_ids.motion):
        assert not codes.is_floating_point()
        video += [v.img_start, *(codes + v.visual_offset).tolist(), v.img_end, v.mov_start, *(motion + v.motion_offset).tolist(), v.mov_end]
    logits = model(input_ids=torch.tensor([ids[:at] + video + ids[at + 1:]])).logits[0, -1, : v.text_size]
    expected = int(logits.argmax())
    assert out.answer_ids[0].tolist() == ([] if expected == v.eos_id else [expected])


def test_features_wider_than_the_lm_are_refused_with_a_hint(pipeline_config, monkeypatch):
    import dataclasses

    pipe = VideoQAPipeline.from_config(pipeline_config)
    hidden = pipe.lm.model.config.hidden_size
    monkeypatch.setattr(pipe.keyframe_tokenizer, "config", dataclasses.replace(pipe.keyframe_tokenizer.config, llm_embed_dim=4 * hidden))
    with pytest.raises(ValueError, match="use 'codes'"):
        pipe.check_keyframe_input(pipe.generation.replace(understanding_keyframes="features"))
    pipe.check_keyframe_input(pipe.generation.replace(understanding_keyframes="codes"))  # codes need no vit_proj


def test_ask_cli_prints_an_answer_and_refuses_undecodable_videos_before_loading(pipeline_config, media, tmp_path, capsys):
    rc, stdout, err = run_lavit(capsys, "ask", media / "pan.mp4", "what is moving", "-c", pipeline_config, "--max-clips", "1")
    assert rc == 0, err
    assert len(stdout.splitlines()) <= 1
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    broken = write_config(tmp_path / "broken.yaml", pipeline_config, checkpoints={"lm": str(garbage)})
    rc, _, err = run_lavit(capsys, "ask", media / "broken.mp4", "what is moving", "-c", broken)
    assert rc == 2 and len(err) == 1 and "broken.mp4" in err[0], err  # the video's error, not the LM file's
    rc, _, err = run_lavit(capsys, "ask", media / "pan.mp4", " ", "-c", broken)
    assert rc == 2 and "question 0 is empty" in err[0]
    rc, _, err = run_lavit(capsys, "ask", media / "pan.mp4", "--caption", "-c", pipeline_config, "--max-clips", "1")
    assert rc == 0, err
