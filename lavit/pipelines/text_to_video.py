"""``TextToVideoPipeline``: prompt(s) -> video(s), in the diffusers manner.

Per prompt and clip: the LM writes ``[IMG] keyframe codes [/IMG] [MOV] 135 motion codes [/MOV]`` (official
``generate_image_tokenids`` / ``generate_motion_tokenids``: CFG 4 / 7, top-k 50, motion greedy; the grammar makes
every clip well formed) -> the keyframe detokenizer draws the keyframe at its native size (official 576 x 1024) ->
it is centre-cropped and resized to the video detokenizer's frame size -> the motion tokenizer decodes the motion
codes -> the video detokenizer samples the 24-frame clip.

Long videos (``num_clips`` > 1; SPEC section 4): the LM writes all clips in one sequence, clip k > 0 with every
earlier clip as its prompt (official). Clip k + 1's keyframe starts from clip k's last frame in the keyframe (image)
detokenizer; the video U-Net always starts from noise:

- ``chaining="renoise"`` (official code, ``regenerate_noise``): the frame is VAE-encoded, noised to step
  ``int(inverse_rate * keyframe_steps)`` (0.85 x 50) and denoised from there under clip k + 1's codes;
- ``chaining="ddim_inversion"`` (the paper's Eq. 4; ours, no official code): deterministic DDIM inversion of the
  frame for the same number of steps, then DDIM sampling;
- ``chaining="none"`` (ours: a baseline): a fresh keyframe from noise.

Clips are stitched ``24 + 23 (N - 1)`` frames: each further clip's first frame (its keyframe, a re-generation of the
previous clip's last frame) is dropped, as the official long-video notebook does (``clip0[0:24] + clip_k[1:24]``).

Seeds: the LM samples after ``torch.manual_seed(seed)``; the keyframe and video detokenizers of clip k draw from CPU
generators seeded ``seed + k``; the same seed gives identical output.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from lavit.lm.generation import SamplingSettings, generate_video
from lavit.pipelines.components import (LanguageModel, check_keyframe_size, fit_keyframe_tokens, load_keyframe_detokenizer,
                                        load_language_model,
                                        load_motion, load_video_detokenizer)
from lavit.pipelines.config import STAGE_CHECKPOINTS, GenerationSettings, PipelineConfig
from lavit.pipelines.outputs import TextToVideoOutput
from lavit.pipelines.video_stages import StageClock, VideoStages, video_output


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    """A prompt or a list of prompts -> a non-empty list of non-blank strings (ValueError naming the bad one)."""
    items = [prompts] if isinstance(prompts, str) else list(prompts)
    if not items:
        raise ValueError("no prompt given")
    for i, p in enumerate(items):
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"prompt {i} is empty; give a text such as 'a textured block moves up while the camera pans left'")
    return items


def check_num_clips(num_clips: int) -> int:
    if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"num_clips must be an integer >= 1, got {num_clips!r}")
    return num_clips


def lm_sampling(settings: GenerationSettings) -> tuple[SamplingSettings, SamplingSettings]:
    """(keyframe sampling, motion sampling) of the settings (motion greedy when ``motion_greedy``)."""
    keyframe = SamplingSettings(top_k=settings.top_k, top_p=settings.top_p, temperature=settings.temperature)
    return keyframe, SamplingSettings(do_sample=False) if settings.motion_greedy else keyframe


class TextToVideoPipeline:
    """Text -> video through the multimodal LM, the keyframe detokenizer, the motion tokenizer and the video
    detokenizer (see the module docstring).

    Args:
        lm: the LM with its vocabulary and text tokenizer (:class:`lavit.pipelines.components.LanguageModel`).
        stages: keyframe detokenizer, motion tokenizer and video detokenizer (:class:`VideoStages`).
        generation: default settings; each call may override any field.
    """

    stage_checkpoints = STAGE_CHECKPOINTS["text_to_video"]

    def __init__(self, lm: LanguageModel, stages: VideoStages, generation: GenerationSettings = GenerationSettings()):
        self.lm, self.stages, self.generation = lm, stages, generation
        check_keyframe_size(stages.keyframe_detokenizer, generation.keyframe_size)

    @classmethod
    def from_config(cls, config: PipelineConfig | str, device: str | torch.device | None = None,
                    dtype: torch.dtype | str | None = None) -> "TextToVideoPipeline":
        """Check every checkpoint the config names for this pipeline (``MissingComponentError`` before loading), then
        load each stage once; ``device`` / ``dtype`` default to the config's."""
        config = PipelineConfig.from_file(config) if not isinstance(config, PipelineConfig) else config
        config.check(cls.stage_checkpoints)
        motion, _ = load_motion(config)
        video, size = load_video_detokenizer(config)
        pipe = cls(load_language_model(config), VideoStages(load_keyframe_detokenizer(config), motion, video, size),
                   config.generation)
        return pipe.to(device or config.device, _dtype(dtype, config))

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "TextToVideoPipeline":
        """Move every stage (the motion tokenizer stays float32)."""
        self.lm.to(device, dtype)
        self.stages.to(device, dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self.stages.device

    def check_inputs(self, prompts, num_clips: int, overrides: dict[str, Any]) -> tuple[list[str], GenerationSettings]:
        prompts = check_prompts(prompts)
        check_num_clips(num_clips)
        settings = fit_keyframe_tokens(self.generation.replace(**overrides), self.stages.keyframe_detokenizer)
        check_keyframe_size(self.stages.keyframe_detokenizer, settings.keyframe_size)
        return prompts, settings

    @torch.no_grad()
    def __call__(self, prompts: str | Sequence[str], num_clips: int = 1, seed: int = 0, progress: bool = True,
                 **generation_overrides: Any) -> TextToVideoOutput:
        """Generate one video per prompt.

        Args:
            prompts: a prompt or a list (one batch).
            num_clips: clips per video; ``T = 24 + 23 (num_clips - 1)`` frames.
            seed: same seed, same videos.
            progress: a tqdm bar per stage.
            generation_overrides: any :class:`GenerationSettings` field (``keyframe_guidance=4.0``, ``video_steps=25``).

        Returns:
            :class:`TextToVideoOutput` (videos ``(T, H, W, 3)`` uint8 per prompt, fps, code ids, keyframes, timings).
        """
        # 1. check inputs
        prompts, settings = self.check_inputs(prompts, num_clips, generation_overrides)
        clock = StageClock({"lm": num_clips, **{s: num_clips for s in ("keyframe_detokenizer", "motion_decode",
                                                                 "video_detokenizer", "vae_decode")}},
                           progress, self.device)
        try:
            # 2. LM: keyframe then motion codes per clip
            rows = [self.lm.encode(p, settings.add_bos) for p in prompts]
            keyframe_sampling, motion_sampling = lm_sampling(settings)
            with clock.stage("lm", num_clips):
                segments = generate_video(
                    self.lm.model, self.lm.vocab, rows, num_clips=num_clips, keyframe_guidance=settings.keyframe_guidance,
                    motion_guidance=settings.motion_guidance, keyframe_sampling=keyframe_sampling,
                    motion_sampling=motion_sampling, min_keyframe_tokens=settings.min_keyframe_tokens,
                    max_keyframe_tokens=settings.max_keyframe_tokens, seed=seed)
            # 3. per clip: keyframe (chained from the previous clip's last frame), motion decode, video, VAE decode
            clips, keyframes, latents = self.stages.chain(segments, settings, seed, clock)
        finally:
            timings = clock.close()
        # 4. stitch: 24 + 23 (N - 1) frames
        return video_output(segments, clips, keyframes, latents, settings, timings)


def _dtype(dtype, config: PipelineConfig) -> torch.dtype | None:
    from lavit.pipelines.config import DTYPES

    if dtype is None:
        dtype = config.torch_dtype
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    return None if dtype == torch.float32 else dtype
