"""``lavit generate`` and ``lavit ask``: every input checked (prompt, output suffix, config, checkpoints, image, video
clips) before any model loads; errors are typed (ValueError / FileNotFoundError) so the CLI prints one line."""

from __future__ import annotations

import argparse
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def generate_command(ns: argparse.Namespace) -> int:
    from lavit.pipelines.config import PipelineConfig
    from lavit.pipelines.text_to_video import check_prompts

    suffix = ns.output.suffix.lower()
    if suffix not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        raise ValueError(f"{ns.output}: unknown output suffix {suffix!r}; use {', '.join(VIDEO_SUFFIXES)} for a video "
                         f"or {', '.join(IMAGE_SUFFIXES)} for text-to-image")
    image_out = suffix in IMAGE_SUFFIXES
    if ns.image is None or ns.prompt.strip():
        check_prompts(ns.prompt)
    if image_out and (ns.image is not None or ns.clips != 1):
        raise ValueError(f"{ns.output}: an image output is text-to-image; --image and --clips need a video output (.mp4, .gif)")
    config = PipelineConfig.from_file(ns.config)
    overrides = dict(chaining=ns.chaining, keyframe_guidance=ns.keyframe_guidance, motion_guidance=ns.motion_guidance,
                     video_steps=ns.video_steps, keyframe_steps=ns.keyframe_steps)
    config = config.with_generation(**overrides)
    progress = not ns.quiet
    if ns.quiet:
        _quiet_transformers()
    if image_out:
        from PIL import Image

        from lavit.pipelines.text_to_image import TextToImagePipeline

        pipe = TextToImagePipeline.from_config(config, device=ns.device)
        out = pipe(ns.prompt, seed=ns.seed, progress=progress)
        Image.fromarray(out.images[0].numpy()).save(ns.output)
        print(ns.output)
        return 0
    from lavit.video.writer import write_frames

    if ns.image is not None:
        from lavit.pipelines.image_to_video import ImageToVideoPipeline, read_image

        image = read_image(ns.image)
        config.check(ImageToVideoPipeline.stage_checkpoints)
        pipe = ImageToVideoPipeline.from_config(config, device=ns.device)
        out = pipe(image, ns.prompt, num_clips=ns.clips, seed=ns.seed, progress=progress)
    else:
        from lavit.pipelines.text_to_video import TextToVideoPipeline

        pipe = TextToVideoPipeline.from_config(config, device=ns.device)
        out = pipe(ns.prompt, num_clips=ns.clips, seed=ns.seed, progress=progress)
    video = out.videos[0]
    write_frames(video, ns.output, fps=out.fps)
    print(f"{ns.output}: {video.shape[0]} frames {video.shape[2]}x{video.shape[1]} at {out.fps:g} fps")
    return 0


def ask_command(ns: argparse.Namespace) -> int:
    from lavit.pipelines.components import load_motion
    from lavit.pipelines.config import PipelineConfig
    from lavit.pipelines.video_qa import CAPTION_QUESTION, VideoQAPipeline, check_questions
    from lavit.pipelines.video_to_video import read_clips

    if ns.caption and ns.question:
        raise ValueError("give QUESTION or --caption, not both")
    question = CAPTION_QUESTION if ns.caption else check_questions(ns.question or "")[0]
    if not Path(ns.video).is_file():
        raise FileNotFoundError(f"video not found: {ns.video}")
    config = PipelineConfig.from_file(ns.config).check(VideoQAPipeline.stage_checkpoints)
    motion, options = load_motion(config)  # small: its clip settings decide how the video is read
    clips = read_clips(ns.video, options, ns.max_clips)  # a video with no decodable clip fails here, before the LM loads
    _quiet_transformers()  # stdout is the answer alone
    pipe = VideoQAPipeline.from_config(config, device=ns.device)
    out = pipe(clips, question, max_answer_tokens=ns.max_tokens)
    print(out.answers[0])
    return 0


def _quiet_transformers() -> None:
    """No "Loading weights" bar from transformers while the LM loads."""
    from transformers.utils import logging

    logging.disable_progress_bar()
