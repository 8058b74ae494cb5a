"""Inception Score for images (Inception-V3) and videos (C3D on UCF-101, TGAN protocol)."""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from metrics.feature_metrics import GatheredFeaturesMetric
from metrics.video_input import check_images, check_video, to_uint8


def inception_score(logits: torch.Tensor, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> tuple[torch.Tensor, torch.Tensor]:
    """torch-fidelity's ISC on (N, C) logits (in canonical order): mean and std over ``splits``."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    out = isc_features_to_metric(logits.double().cpu(), splits=splits, shuffle=shuffle, rng_seed=seed)
    return torch.tensor(out[KEY_METRIC_ISC_MEAN], dtype=torch.float64), torch.tensor(out[KEY_METRIC_ISC_STD], dtype=torch.float64)


class _ScoreBase(GatheredFeaturesMetric):
    higher_is_better = True

    def __init__(self, splits: int, seed: int, **kwargs):
        super().__init__(sides=("fake",), **kwargs)
        self.splits, self.seed = splits, seed

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) float64 over the splits."""
        return inception_score(self.gathered("fake", min_samples=max(2, self.splits)), self.splits, True, self.seed)


class InceptionScore(_ScoreBase):
    """Image Inception Score with torch-fidelity's Inception-V3 (unbiased 1008-way logits), 10 splits.

    ``update(images, indices=None)`` with ``images`` (B, 3, H, W) uint8 or float in ``value_range``
    (videos (B, T, 3, H, W) count every frame as an image).
    """

    def __init__(self, weights: str | None = None, splits: int = 10, seed: int = 2020,
                 value_range: tuple[float, float] = (0.0, 1.0), network: nn.Module | None = None, **kwargs):
        super().__init__(splits, seed, **kwargs)
        from metrics.extractors import InceptionFeatures

        self.value_range = tuple(value_range)
        self.extractor = network if network is not None else InceptionFeatures(weights)

    def update(self, images: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        if images.ndim == 5:
            check_video(images, 1, "images")
            if indices is not None:  # one key per frame, frames of a video in order
                t = images.shape[1]
                indices = (torch.as_tensor(indices).reshape(-1, 1) * t + torch.arange(t)).reshape(-1)
            images = images.flatten(0, 1)
        check_images(images)
        logits = self.extractor(to_uint8(images, self.value_range, "images"))["logits_unbiased"]
        self.update_features(logits, "fake", indices)


class VideoInceptionScore(_ScoreBase):
    """Video Inception Score: C3D fine-tuned on UCF-101, central 16 frames at 112x112 (TGAN protocol).

    Args:
        weights: C3D state dict (see ``metrics.networks.load_c3d``); default ``$LAVIT_WEIGHTS_DIR``.
        mean: TGAN's per-pixel ``mean2.npz`` path (exact protocol) or None for the per-channel mean.

    ``update(videos, indices=None)`` with ``videos`` (B, T >= 16, 3, H, W).
    """

    def __init__(self, weights: str | None = None, mean: str | None = None, splits: int = 10, seed: int = 2020,
                 value_range: tuple[float, float] = (0.0, 1.0), network: nn.Module | None = None, **kwargs):
        super().__init__(splits, seed, **kwargs)
        from metrics.networks import load_c3d, load_c3d_mean

        self.value_range = tuple(value_range)
        self.network = (network if network is not None else load_c3d(weights)).eval().requires_grad_(False)
        self.register_buffer("mean", load_c3d_mean(mean) if mean is not None else None, persistent=False)

    @torch.no_grad()
    def update(self, videos: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        from metrics.networks import c3d_preprocess

        check_video(videos, 16, "videos")
        clip = to_uint8(videos, self.value_range, "videos").permute(0, 1, 3, 4, 2)  # (B, T, H, W, 3)
        logits = self.network(c3d_preprocess(clip, self.mean))
        self.update_features(logits, "fake", indices)
