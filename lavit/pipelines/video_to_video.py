"""``VideoReconstructionPipeline``: a video -> keyframe + motion code ids -> a video again, through every tokenizer
and detokenizer (what the LM's tokens can express).

Per clip (``extract_clips`` with the motion tokenizer's clip settings): keyframe codes from the keyframe tokenizer
(deterministic selection) -> the keyframe detokenizer's image (fresh, from noise: each clip has its own ground-truth
keyframe codes) -> resized to the video frame size; motion codes from the motion tokenizer -> decoded -> the video
detokenizer. The clips are concatenated (``24 N`` frames: the extracted clips do not overlap).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from lavit.pipelines.components import load_keyframe_detokenizer, load_keyframe_tokenizer, load_motion, load_video_detokenizer
from lavit.pipelines.config import STAGE_CHECKPOINTS, GenerationSettings, PipelineConfig
from lavit.pipelines.outputs import TextToVideoOutput
from lavit.pipelines.text_to_video import _dtype
from lavit.pipelines.tokenize import keyframe_code_ids
from lavit.pipelines.video_stages import StageClock, VideoStages


def read_clips(video: str | os.PathLike, options: dict[str, Any], max_clips: int | None = None):
    """``extract_clips`` of one video with ``options`` (FileNotFoundError / ``VideoDecodeError``, a ValueError naming
    the file, when it has no decodable clip)."""
    from pathlib import Path

    from lavit.video import extract_clips

    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    options = {k: v for k, v in options.items() if k in ("fps", "sampling", "normalization", "field_size", "clip_len",
                                                           "min_frames", "max_clips", "frame_size")}
    if max_clips is not None:
        options["max_clips"] = max_clips
    return extract_clips(path, **options)


class VideoReconstructionPipeline:
    """Video -> tokens -> video; see the module docstring."""

    stage_checkpoints = STAGE_CHECKPOINTS["reconstruction"]

    def __init__(self, keyframe_tokenizer, stages: VideoStages, clip_options: dict[str, Any],
                 generation: GenerationSettings = GenerationSettings()):
        self.keyframe_tokenizer, self.stages, self.clip_options, self.generation = keyframe_tokenizer, stages, clip_options, generation

    @classmethod
    def from_config(cls, config: PipelineConfig | str, device=None, dtype=None) -> "VideoReconstructionPipeline":
        config = PipelineConfig.from_file(config) if not isinstance(config, PipelineConfig) else config
        config.check(cls.stage_checkpoints)
        motion, options = load_motion(config)
        video, size = load_video_detokenizer(config)
        stages = VideoStages(load_keyframe_detokenizer(config), motion, video, size)
        return cls(load_keyframe_tokenizer(config), stages, options, config.generation).to(device or config.device,
                                                                                              _dtype(dtype, config))

    def to(self, device=None, dtype=None) -> "VideoReconstructionPipeline":
        self.stages.to(device, dtype)
        if device is not None:
            self.keyframe_tokenizer.to(device)
        return self

    @torch.no_grad()
    def __call__(self, video: str | os.PathLike, max_clips: int | None = 1, seed: int = 0, progress: bool = True,
                 **generation_overrides: Any) -> TextToVideoOutput:
        """-> :class:`TextToVideoOutput` with one ``(24 N, H, W, 3)`` video (N = clips read, at most ``max_clips``)."""
        # 1. check inputs, read the clips
        settings = self.generation.replace(**generation_overrides)
        clips = read_clips(video, self.clip_options, max_clips)
        n = len(clips)
        clock = StageClock({s: n for s in ("keyframe_detokenizer", "motion_decode", "video_detokenizer", "vae_decode")},
                           progress, self.stages.device)
        try:
            # 2. tokens: keyframe codes, motion codes
            device = str(next(self.keyframe_tokenizer.parameters()).device)
            keyframe_ids = [torch.tensor(c, dtype=torch.long) for c in keyframe_code_ids(self.keyframe_tokenizer, clips.keyframes, device)]
            empty = [k for k, c in enumerate(keyframe_ids) if not len(c)]
            if empty:
                raise ValueError(f"{video}: the keyframe tokenizer kept no token of clip {empty[0]}'s keyframe")
            tokenizer = self.stages.motion_tokenizer
            motion_ids = tokenizer.tokenize(clips.motion.to(next(tokenizer.parameters()).device)).cpu()
            # 3. per clip: keyframe detokenizer, motion decode, video detokenizer, VAE decode
            frames, images = [], []
            for k in range(n):
                image, _ = self.stages.keyframes([keyframe_ids[k]], settings, seed + k, None, clock)
                frames.append(self.stages.clip(image, [motion_ids[k]], settings, seed + k, clock)[0])
                images.append(image[0])
        finally:
            timings = clock.close()
        return TextToVideoOutput(videos=[torch.cat(frames)], fps=float(clips.fps), keyframe_ids=[keyframe_ids],
                                 motion_ids=[list(motion_ids)], keyframes=[images], timings=timings)
