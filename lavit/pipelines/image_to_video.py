"""``ImageToVideoPipeline``: an image (optionally with text) -> video.

The image is clip 0's keyframe: the keyframe tokenizer's code ids of it (deterministic selection) form
``[text] [IMG] codes [/IMG]`` and the LM writes ``[MOV] 135 motion codes [/MOV]`` after it (greedy and guidance 7 by
default, as in text-to-video); the video detokenizer animates the image itself (centre-cropped and resized to its
frame size), not a re-generation of it. Further clips (``num_clips`` > 1) continue exactly as in
:class:`~lavit.pipelines.text_to_video.TextToVideoPipeline`: the LM writes their keyframe and motion codes with the
whole sequence so far as prompt, each keyframe chained from the previous clip's last frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lavit.lm.generation import StageGenerator, generate_video
from lavit.lm.processors import MediaGrammarLogitsProcessor
from lavit.lm.vocabulary import VideoSegment
from lavit.pipelines.components import (fit_keyframe_tokens, load_keyframe_detokenizer, load_keyframe_tokenizer,
                                        load_language_model, load_motion,
                                        load_video_detokenizer)
from lavit.pipelines.config import STAGE_CHECKPOINTS, PipelineConfig
from lavit.pipelines.outputs import TextToVideoOutput
from lavit.pipelines.text_to_video import TextToVideoPipeline, _dtype, check_num_clips, lm_sampling
from lavit.pipelines.tokenize import keyframe_code_ids
from lavit.pipelines.video_stages import StageClock, VideoStages, video_output


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file -> ``(H, W, 3)`` uint8 RGB (FileNotFoundError / ValueError naming the file)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return torch.from_numpy(np.array(image.convert("RGB")))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None


class ImageToVideoPipeline(TextToVideoPipeline):
    """Image (+ text) -> video; see the module docstring. Needs the keyframe tokenizer besides the text-to-video parts."""

    stage_checkpoints = STAGE_CHECKPOINTS["image_to_video"]

    def __init__(self, lm, stages: VideoStages, keyframe_tokenizer, generation=None):
        super().__init__(lm, stages, generation or PipelineConfig().generation)
        self.keyframe_tokenizer = keyframe_tokenizer

    @classmethod
    def from_config(cls, config: PipelineConfig | str, device=None, dtype=None) -> "ImageToVideoPipeline":
        config = PipelineConfig.from_file(config) if not isinstance(config, PipelineConfig) else config
        config.check(cls.stage_checkpoints)
        motion, _ = load_motion(config)
        video, size = load_video_detokenizer(config)
        stages = VideoStages(load_keyframe_detokenizer(config), motion, video, size)
        pipe = cls(load_language_model(config), stages, load_keyframe_tokenizer(config), config.generation)
        return pipe.to(device or config.device, _dtype(dtype, config))

    def to(self, device=None, dtype=None) -> "ImageToVideoPipeline":
        super().to(device, dtype)
        if device is not None:
            self.keyframe_tokenizer.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor], prompts: str | Sequence[str] | None = None,
                 num_clips: int = 1, seed: int = 0, progress: bool = True, **generation_overrides: Any) -> TextToVideoOutput:
        """Animate each image ``(H, W, 3)`` uint8 (a list, or a ``(B, H, W, 3)`` batch), with its prompt if given
        (``""`` / None: image only). -> :class:`TextToVideoOutput` (``T = 24 + 23 (num_clips - 1)``)."""
        # 1. check inputs
        images = list(images) if not (isinstance(images, torch.Tensor) and images.ndim == 3) else [images]
        for i, image in enumerate(images):
            if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"image {i} must be an (H, W, 3) uint8 tensor, got "
                                 f"{tuple(getattr(image, 'shape', ()))} {getattr(image, 'dtype', type(image).__name__)}")
        texts = [prompts] * len(images) if prompts is None or isinstance(prompts, str) else list(prompts)
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} prompts for {len(images)} images")
        check_num_clips(num_clips)
        settings = fit_keyframe_tokens(self.generation.replace(**generation_overrides), self.stages.keyframe_detokenizer)
        v = self.lm.vocab
        clock = StageClock({"lm": num_clips, **{s: num_clips for s in ("keyframe_detokenizer", "motion_decode",
                                                                 "video_detokenizer", "vae_decode")}},
                           progress, self.device)
        try:
            # 2. the images' keyframe codes prefix the [MOV] stage
            device = next(self.keyframe_tokenizer.parameters()).device
            codes = [torch.tensor(keyframe_code_ids(self.keyframe_tokenizer, im[None].numpy(), str(device))[0], dtype=torch.long)
                     for im in images]
            rows = []
            for text, c in zip(texts, codes):
                prefix = self.lm.encode(text, settings.add_bos) if text and text.strip() else \
                    torch.tensor([v.bos_id] if settings.add_bos else [], dtype=torch.long)
                rows.append(torch.cat([prefix, torch.tensor([v.img_start]), c + v.visual_offset,
                                       torch.tensor([v.img_end, v.mov_start])]))
            # 3. LM: motion of clip 0, then whole clips
            keyframe_sampling, motion_sampling = lm_sampling(settings)
            with clock.stage("lm", num_clips):
                torch.manual_seed(seed)
                new, _ = StageGenerator(self.lm.model, v).run(
                    rows, "motion", v.motion_tokens_per_clip + 1, settings.motion_guidance,
                    grammar=MediaGrammarLogitsProcessor(v, "video"), sampling=motion_sampling)
                for i, n in enumerate(new):
                    if len(n) != v.motion_tokens_per_clip + 1 or int(n[-1]) != v.mov_end:
                        raise RuntimeError(f"the motion segment of image {i} did not close with [/MOV]")
                segments = [VideoSegment([c], [(n[:-1] - v.motion_offset).cpu()]) for c, n in zip(codes, new)]
                if num_clips > 1:
                    rows = [torch.cat([r, n.cpu()]) for r, n in zip(rows, new)]
                    more = generate_video(
                        self.lm.model, v, rows, num_clips=num_clips - 1, keyframe_guidance=settings.keyframe_guidance,
                        motion_guidance=settings.motion_guidance, keyframe_sampling=keyframe_sampling,
                        motion_sampling=motion_sampling, min_keyframe_tokens=settings.min_keyframe_tokens,
                        max_keyframe_tokens=settings.max_keyframe_tokens)
                    segments = [VideoSegment(s.keyframes + m.keyframes, s.motion + m.motion) for s, m in zip(segments, more)]
            # 4. per clip: keyframe (the image itself for clip 0), motion decode, video, VAE decode
            first = torch.stack([_fit(im, images[0].shape) for im in images])
            clips, keyframes, latents = self.stages.chain(segments, settings, seed, clock, first_keyframes=first)
        finally:
            timings = clock.close()
        return video_output(segments, clips, keyframes, latents, settings, timings)


def _fit(image: torch.Tensor, shape) -> torch.Tensor:
    """Images of a batch to one shape (the first's) before the video detokenizer resizes them."""
    from lavit.pipelines.stitch import resize_images

    return resize_images(image[None], tuple(shape[:2]))[0]
