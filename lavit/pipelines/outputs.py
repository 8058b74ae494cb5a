"""Output dataclasses of the generation pipelines (diffusers ``BaseOutput``: attribute, key and tuple access)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.utils import BaseOutput


@dataclass
class TextToVideoOutput(BaseOutput):
    """Result of ``TextToVideoPipeline`` / ``ImageToVideoPipeline`` / ``VideoReconstructionPipeline``.

    Attributes:
        videos: per prompt a ``(T, H, W, 3)`` uint8 video, ``T = 24 + 23 (num_clips - 1)`` for 24-frame clips.
        fps: frames per second of the videos.
        keyframe_ids: per prompt, per clip the ``(n,)`` keyframe codebook ids (0..n_code-1).
        motion_ids: per prompt, per clip the ``(motion_tokens_per_clip,)`` motion codebook ids.
        keyframes: per prompt, per clip the keyframe detokenizer's image ``(h, w, 3)`` uint8 at its native size.
        keyframe_latents: per prompt, per clip the keyframe detokenizer's final latent ``(c, h/8, w/8)`` (clips whose
            keyframe was given, image-to-video's first, have none).
        timings: seconds spent per stage in this call (``lm``, ``keyframe_detokenizer``, ``motion_decode``,
            ``video_detokenizer``, ``vae_decode``).
    """

    videos: list[torch.Tensor]
    fps: float
    keyframe_ids: list[list[torch.Tensor]]
    motion_ids: list[list[torch.Tensor]]
    keyframes: list[list[torch.Tensor]] = field(default_factory=list)
    keyframe_latents: list[list[torch.Tensor]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class TextToImageOutput(BaseOutput):
    """Result of ``TextToImagePipeline``: ``images`` per prompt ``(h, w, 3)`` uint8; ``keyframe_ids`` per prompt."""

    images: list[torch.Tensor]
    keyframe_ids: list[torch.Tensor]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class VideoQAOutput(BaseOutput):
    """Result of ``VideoQAPipeline``: ``answers`` per question (text), ``answer_ids`` (generated text ids)."""

    answers: list[str]
    answer_ids: list[torch.Tensor]
