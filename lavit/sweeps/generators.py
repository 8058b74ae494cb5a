"""Video generators a sweep can run: the text-to-video pipeline and two checkpoint-free baselines.

Protocol (every generator): ``__call__(prompts: list[str], seed: int, num_clips: int, **overrides)
-> list[uint8 (T, H, W, 3)]`` and an ``fps`` attribute; optional ``check(checkpoint)`` (class method,
raises before any work) and ``to(device)``. The sweep names one with ``generator: {class_path, init_args}``;
the grid's ``checkpoint`` value is passed as the ``checkpoint`` init argument when the grid has one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lavit.video.frames import read_frames
from lavit.video.transcode import open_video

CLIP_FRAMES, NEXT_CLIP_FRAMES = 24, 23  # frames of the first clip, and added by each further (chained) clip


def clip_frame_count(num_clips: int) -> int:
    """Frames of a ``num_clips`` long video: 24 + 23 (N - 1)."""
    return CLIP_FRAMES + NEXT_CLIP_FRAMES * (num_clips - 1)


class PipelineGenerator:
    """``lavit.pipelines.TextToVideoPipeline`` loaded from a pipeline config (``configs/pipelines/*.yaml``),
    called with the grid point's overrides (``keyframe_guidance``, ``motion_guidance``, ``video_steps``)."""

    def __init__(self, checkpoint: str, device: str | None = None, progress: bool = False):
        self.checkpoint, self.device, self.progress = checkpoint, device, progress
        self._pipe = None
        generation = getattr(self._config(), "generation", None)
        fps = generation.get("fps") if isinstance(generation, dict) else getattr(generation, "fps", None)
        self.fps = float(fps or 8.0)

    @classmethod
    def check(cls, checkpoint: str | None) -> None:
        """The pipeline config exists and names checkpoints that all exist (no weights are loaded)."""
        if checkpoint is None:
            raise ValueError("the pipeline generator needs grid.checkpoint (pipeline config paths, configs/pipelines/*.yaml)")
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"pipeline config not found: {checkpoint} (grid.checkpoint names configs/pipelines/*.yaml files)")
        config = _pipeline_config(checkpoint)  # a ValueError when lavit.pipelines has no PipelineConfig
        import lavit.pipelines.config as pipeline_config

        needed = getattr(pipeline_config, "STAGE_CHECKPOINTS", {}).get("text_to_video")
        config.check(needed) if needed else config.check()

    def _config(self):
        return _pipeline_config(self.checkpoint)

    def to(self, device) -> "PipelineGenerator":
        self.device = str(device)
        return self

    def __call__(self, prompts: list[str], seed: int, num_clips: int, **overrides) -> list[torch.Tensor]:
        if self._pipe is None:
            from lavit.pipelines import TextToVideoPipeline

            self._pipe = TextToVideoPipeline.from_config(self._config(), device=self.device or "cpu")
        out = self._pipe(prompts, num_clips=num_clips, seed=seed, progress=self.progress, **overrides)
        self.fps = float(out.fps)
        return list(out.videos)


def _pipeline_config(path: str):
    try:
        from lavit.pipelines import PipelineConfig
    except ImportError as err:
        raise ValueError(f"lavit.pipelines.PipelineConfig is not available ({err}); use another sweep generator "
                         "(e.g. lavit.sweeps.generators.ReferenceVideos)") from err
    return PipelineConfig.from_file(path)


class _ManifestVideos:
    """Videos of a manifest (``datamodules.manifest.read_manifest``: CSV / TSV / JSONL / JSON, video and caption
    columns, paths relative to the manifest), looked up by caption."""

    def __init__(self, videos: str | os.PathLike, fps: float | None = None, clip_frames: int = CLIP_FRAMES):
        from datamodules.manifest import read_manifest  # lazy, as lavit.cli does: the datamodules package imports Lightning

        self.manifest = Path(videos)
        if not self.manifest.is_file():
            raise FileNotFoundError(f"reference video manifest not found: {self.manifest}")
        self.by_caption: dict[str, Path] = {}
        for record in read_manifest(self.manifest):
            self.by_caption.setdefault(record.caption.strip(), record.path)
        self.fps = fps if fps is not None else _stream_fps(next(iter(self.by_caption.values())))
        self.clip_frames = clip_frames

    def _video(self, prompt: str, num_frames: int) -> torch.Tensor:
        path = self.by_caption.get(prompt.strip())
        if path is None:
            raise ValueError(f"{self.manifest}: no video has the caption {prompt!r}")
        return read_frames(path, num_frames, size=None, allow_fewer=True).permute(0, 2, 3, 1)  # (T, H, W, 3)

    def _length(self, num_clips: int) -> int:
        return self.clip_frames + (self.clip_frames - 1) * (num_clips - 1)


class ReferenceVideos(_ManifestVideos):
    """The real video whose caption is the prompt (its first 24 + 23 (N - 1) frames): the oracle row of a
    table (FVD of real against real ~ 0). Ignores seed and overrides."""

    def __call__(self, prompts: list[str], seed: int, num_clips: int, **overrides) -> list[torch.Tensor]:
        return [self._video(p, self._length(num_clips)) for p in prompts]


class StillKeyframe(_ManifestVideos):
    """The first frame of the real video whose caption is the prompt, repeated: the repeated-keyframe
    (no motion) baseline."""

    def __call__(self, prompts: list[str], seed: int, num_clips: int, **overrides) -> list[torch.Tensor]:
        return [self._video(p, 1).expand(self._length(num_clips), -1, -1, -1).contiguous() for p in prompts]


def _stream_fps(path: Path) -> float:
    container, stream = open_video(path)
    try:
        return float(stream.average_rate or 8.0)
    finally:
        container.close()
