"""CLIPSIM: mean cosine similarity between each frame and the video's caption (docs/spec.md §6)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchmetrics import Metric

from metrics.video_input import check_video, to_uint8


class CLIPSIM(Metric):
    """Raw cosine between CLIP image and text embeddings, averaged over frames, then over videos.

    No x100 and no clamp (reported values ~0.24-0.32 with ViT-B/16).

    Args:
        weights: open_clip checkpoint of ``model_name`` (see ``metrics.extractors.ClipModel``).
        model_name: open_clip architecture (``"ViT-B-16"``).
        value_range: range of float inputs.
        model: a prebuilt ``metrics.extractors.ClipModel`` (replaces ``weights``).

    ``update(videos (B, T, 3, H, W), captions: B strings)``; ``compute()`` -> float64 scalar.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, weights: str | None = None, model_name: str = "ViT-B-16", value_range: tuple[float, float] = (0.0, 1.0),
                 model: nn.Module | None = None, **kwargs):
        super().__init__(**kwargs)
        if model is None:
            from metrics.extractors import ClipModel

            model = ClipModel(model_name, weights)
        self.clip, self.value_range = model, tuple(value_range)
        self.add_state("score_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, videos: torch.Tensor, captions: Sequence[str]) -> None:
        captions = [captions] if isinstance(captions, str) else list(captions)
        if isinstance(videos, torch.Tensor) and videos.ndim == 5 and videos.shape[0] == 0 and not captions:
            return  # an empty batch (every video of it unreadable) adds nothing, as for FVD and FID
        check_video(videos, 1, "videos")
        if len(captions) != videos.shape[0]:
            raise ValueError(f"got {len(captions)} captions for {videos.shape[0]} videos")
        b, t = videos.shape[:2]
        frames = to_uint8(videos, self.value_range, "videos").flatten(0, 1)
        image = self.clip.image_features(frames).double().reshape(b, t, -1)
        text = self.clip.text_features(captions).double()
        per_video = (image * text[:, None]).sum(-1).mean(1)
        self.score_sum += per_video.sum()
        self.count += b

    def compute(self) -> torch.Tensor:
        if int(self.count) < 1:
            raise ValueError("CLIPSIM: no videos were given")
        return self.score_sum / self.count
