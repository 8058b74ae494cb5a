"""``TextToImagePipeline``: prompt(s) -> image(s): the LM's keyframe stage alone (official ``generate_image_tokenids``,
guidance 4, top-k 50, at most 200 codes) -> the keyframe detokenizer at its native size (``keyframe_size``)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from lavit.lm.generation import generate_image
from lavit.pipelines.components import (LanguageModel, check_keyframe_size, fit_keyframe_tokens, load_keyframe_detokenizer,
                                        load_language_model)
from lavit.pipelines.config import STAGE_CHECKPOINTS, GenerationSettings, PipelineConfig
from lavit.pipelines.outputs import TextToImageOutput
from lavit.pipelines.text_to_video import _dtype, check_prompts, lm_sampling
from lavit.pipelines.video_stages import StageClock


class TextToImagePipeline:
    """Text -> image (see the module docstring). Seeds: the LM after ``torch.manual_seed(seed)``, the keyframe
    detokenizer from a CPU generator seeded ``seed``."""

    stage_checkpoints = STAGE_CHECKPOINTS["text_to_image"]

    def __init__(self, lm: LanguageModel, keyframe_detokenizer, generation: GenerationSettings = GenerationSettings()):
        self.lm, self.keyframe_detokenizer, self.generation = lm, keyframe_detokenizer, generation
        check_keyframe_size(keyframe_detokenizer, generation.keyframe_size)

    @classmethod
    def from_config(cls, config: PipelineConfig | str, device=None, dtype=None) -> "TextToImagePipeline":
        config = PipelineConfig.from_file(config) if not isinstance(config, PipelineConfig) else config
        config.check(cls.stage_checkpoints)
        pipe = cls(load_language_model(config), load_keyframe_detokenizer(config), config.generation)
        return pipe.to(device or config.device, _dtype(dtype, config))

    def to(self, device=None, dtype=None) -> "TextToImagePipeline":
        self.lm.to(device, dtype)
        self.keyframe_detokenizer.to(device, dtype)
        return self

    @torch.no_grad()
    def __call__(self, prompts: str | Sequence[str], seed: int = 0, progress: bool = True,
                 **generation_overrides: Any) -> TextToImageOutput:
        """-> :class:`TextToImageOutput`: per prompt an ``(h, w, 3)`` uint8 image and its code ids."""
        # 1. check inputs
        prompts = check_prompts(prompts)
        settings = fit_keyframe_tokens(self.generation.replace(**generation_overrides), self.keyframe_detokenizer)
        size = check_keyframe_size(self.keyframe_detokenizer, settings.keyframe_size)
        clock = StageClock({"lm": 1, "keyframe_detokenizer": 1}, progress, self.keyframe_detokenizer.device)
        try:
            # 2. LM: the keyframe codes
            rows = [self.lm.encode(p, settings.add_bos) for p in prompts]
            with clock.stage("lm"):
                segments = generate_image(self.lm.model, self.lm.vocab, rows, guidance=settings.keyframe_guidance,
                                          sampling=lm_sampling(settings)[0], min_tokens=settings.min_keyframe_tokens,
                                          max_tokens=min(settings.max_keyframe_tokens, 200), seed=seed)
            # 3. keyframe detokenizer
            codes = [s.codes.to(self.keyframe_detokenizer.device) for s in segments]
            with clock.stage("keyframe_detokenizer"):
                images = self.keyframe_detokenizer.generate(codes, size=size, guidance=settings.keyframe_cfg,
                                                            num_steps=settings.keyframe_steps, seed=seed).images.cpu()
        finally:
            timings = clock.close()
        return TextToImageOutput(images=list(images), keyframe_ids=[s.codes for s in segments], timings=timings)
