"""The stages after the LM, shared by the video pipelines: keyframe detokenizer image, motion decode, video
detokenizer clip, VAE decode, each timed and with its own progress bar."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Sequence

import torch
from tqdm.auto import tqdm

from lavit.detokenizer.autoencoder import decode_latents
from lavit.pipelines.config import GenerationSettings
from lavit.pipelines.stitch import resize_images

STAGES = ("lm", "keyframe_detokenizer", "motion_decode", "video_detokenizer", "vae_decode")


class StageClock:
    """Seconds per stage (CUDA synchronised) and one tqdm bar per stage (quiet with ``progress=False``)."""

    def __init__(self, totals: dict[str, int], progress: bool, device: torch.device):
        self.seconds = {name: 0.0 for name in totals}
        self.device = device
        self.bars = {name: tqdm(total=n, desc=name, unit="clip", position=i, leave=True, disable=not progress)
                     for i, (name, n) in enumerate(totals.items())}

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str, steps: int = 1):
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.seconds[name] += time.perf_counter() - start
        self.bars[name].update(steps)

    def close(self) -> dict[str, float]:
        for bar in self.bars.values():
            bar.close()
        return dict(self.seconds)


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """``(B, T, 3, H, W)`` float in [-1, 1] -> ``(B, T, H, W, 3)`` uint8 (the video detokenizer's own conversion)."""
    return (((video.float() + 1) / 2).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).contiguous()


class VideoStages:
    """Keyframe codes + motion codes -> a clip, in four timed stages.

    Args:
        keyframe_detokenizer: ``KeyframeDetokenizerPipeline`` (None: keyframes must be given as images).
        motion_tokenizer: the motion tokenizer (``detokenize(ids) -> (B, 2, T, h, w)``).
        video_detokenizer: ``VideoDetokenizerPipeline``.
        video_size: (H, W) of the video frames.
    """

    def __init__(self, keyframe_detokenizer, motion_tokenizer, video_detokenizer, video_size: tuple[int, int]):
        self.keyframe_detokenizer = keyframe_detokenizer
        self.motion_tokenizer = motion_tokenizer
        self.video_detokenizer = video_detokenizer
        self.video_size = tuple(video_size)

    def to(self, device=None, dtype=None):
        if self.keyframe_detokenizer is not None:
            self.keyframe_detokenizer.to(device, dtype)
        self.video_detokenizer.to(device, dtype)
        if device is not None:  # float32: the quantiser compares distances
            self.motion_tokenizer.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.video_detokenizer.device

    def keyframes(self, code_ids: Sequence[torch.Tensor], settings: GenerationSettings, seed: int | None,
                  init_image: torch.Tensor | None = None, clock: StageClock | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Code ids per row -> ``(B, h, w, 3)`` uint8 images at ``settings.keyframe_size`` (or the native size); with ``init_image`` ``(B, H,
        W, 3)`` uint8 (the previous clip's last frames) continued by ``settings.chaining``. Also returns the final
        ``(B, c, h/8, w/8)`` latents."""
        from lavit.pipelines.components import check_keyframe_size

        size = check_keyframe_size(self.keyframe_detokenizer, settings.keyframe_size)
        extra = {}
        if init_image is not None:
            extra = dict(init_image=resize_images(init_image, size), continuation=settings.chaining,
                         inverse_rate=settings.inverse_rate)
        with clock.stage("keyframe_detokenizer") if clock else _null():
            out = self.keyframe_detokenizer.generate(
                [c.to(self.keyframe_detokenizer.device) for c in code_ids], size=size,
                guidance=settings.keyframe_cfg, num_steps=settings.keyframe_steps, seed=seed, **extra)
        return out.images.cpu(), out.latents.cpu()

    def clip(self, keyframes: torch.Tensor, motion_ids: Sequence[torch.Tensor], settings: GenerationSettings,
             seed: int | None, clock: StageClock | None = None) -> torch.Tensor:
        """``(B, h, w, 3)`` uint8 keyframes + ``(motion_tokens_per_clip,)`` ids per row -> ``(B, T, H, W, 3)`` uint8."""
        keyframes = resize_images(keyframes, self.video_size)
        tokenizer_device = next(self.motion_tokenizer.parameters()).device
        with clock.stage("motion_decode") if clock else _null():
            motion = self.motion_tokenizer.detokenize(torch.stack([m.long() for m in motion_ids]).to(tokenizer_device))
        with clock.stage("video_detokenizer") if clock else _null():
            latents = self.video_detokenizer.generate(
                keyframes, motion=motion, num_steps=settings.video_steps, min_guidance=settings.min_guidance,
                max_guidance=settings.max_guidance, seed=seed, output_type="latent").latents
        with clock.stage("vae_decode") if clock else _null():
            pipe = self.video_detokenizer
            frames = to_uint8_frames(decode_latents(pipe.vae, latents.to(pipe.dtype), 8))
        return frames.cpu()

    def chain(self, segments: Sequence, settings: GenerationSettings, seed: int, clock: StageClock,
              first_keyframes: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor], list]:
        """All clips of a batch of ``VideoSegment`` s: clip k's keyframe (``first_keyframes`` ``(B, h, w, 3)`` for k = 0
        when given, else drawn from the codes, continued from clip k - 1's last frame unless ``chaining`` is "none"),
        then the clip; clip k draws from seed ``seed + k``. -> (clips ``(B, T, H, W, 3)``, keyframes ``(B, h, w, 3)``,
        keyframe latents (None for a given keyframe)), one entry per clip."""
        clips, keyframes, latents, previous = [], [], [], None
        for k in range(len(segments[0].keyframes)):
            if k == 0 and first_keyframes is not None:
                image, latent = first_keyframes, None
            else:
                init = previous if settings.chaining != "none" else None
                image, latent = self.keyframes([s.keyframes[k] for s in segments], settings, seed + k, init, clock)
            video = self.clip(image, [s.motion[k] for s in segments], settings, seed + k, clock)
            clips.append(video)
            keyframes.append(image)
            latents.append(latent)
            previous = video[:, -1]
        return clips, keyframes, latents


def video_output(segments: Sequence, clips: list[torch.Tensor], keyframes: list[torch.Tensor], latents: list,
                 settings: GenerationSettings, timings: dict[str, float]):
    """:meth:`VideoStages.chain`'s clips stitched per row (24 + 23 (N - 1) frames) -> ``TextToVideoOutput``."""
    from lavit.pipelines.outputs import TextToVideoOutput
    from lavit.pipelines.stitch import stitch_clips

    rows = range(len(segments))
    return TextToVideoOutput(videos=[stitch_clips([c[i] for c in clips]) for i in rows], fps=settings.fps,
                             keyframe_ids=[list(s.keyframes) for s in segments], motion_ids=[list(s.motion) for s in segments],
                             keyframes=[[kf[i] for kf in keyframes] for i in rows],
                             keyframe_latents=[[z[i] for z in latents if z is not None] for i in rows], timings=timings)


@contextmanager
def _null():
    yield
