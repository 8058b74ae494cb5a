"""Fréchet Video Distance and Kernel Video Distance on I3D (Kinetics-400) features.

Input videos are ``(B, T, 3, H, W)``: uint8, or float in the declared ``value_range``. Each video's
protocol frames (16 by default) are resized to 224x224, mapped to [-1, 1] and passed through I3D; the
feature is the 400-d logit vector averaged over time (docs/spec.md §6).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from metrics.feature_metrics import FrechetMetric, GatheredFeaturesMetric
from metrics.protocols import get_protocol
from metrics.video_input import check_video, resize_frames, select_frames, to_signed_unit

I3D_FEATURES = 400


def i3d_video_features(weights: str | os.PathLike | None, torchscript: bool, protocol: str,
                       value_range: Sequence[float], network: nn.Module | None) -> "I3DVideoFeatures":
    """The protocol's video -> I3D feature extractor; ``network`` replaces loading ``weights``."""
    if network is None:
        from metrics.networks import load_i3d

        network = load_i3d(weights, torchscript=torchscript)
    p = get_protocol(protocol)
    return I3DVideoFeatures(network, p.num_frames, p.frames, p.size, value_range)


class I3DVideoFeatures(nn.Module):
    """(B, T, 3, H, W) videos -> (B, 400) I3D features under a protocol's frame/resize/scaling rules."""

    def __init__(self, network: nn.Module, num_frames: int = 16, frames: str = "first", size: int = 224,
                 value_range: Sequence[float] = (0.0, 1.0)):
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.num_frames, self.frames, self.size, self.value_range = num_frames, frames, size, tuple(value_range)

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        check_video(videos, self.num_frames, "videos")
        clip = select_frames(videos, self.num_frames, self.frames)
        b, t = clip.shape[:2]
        x = to_signed_unit(clip, self.value_range, "videos").flatten(0, 1)
        x = resize_frames(x, self.size).reshape(b, t, 3, self.size, self.size)
        return self.network(x.permute(0, 2, 1, 3, 4).contiguous())


class FVD(FrechetMetric):
    """Fréchet Video Distance.

    Args:
        weights: I3D weight file (``rgb_imagenet.pt`` state dict, or StyleGAN-V's
            ``i3d_torchscript.pt`` with ``torchscript=True``); default ``$LAVIT_WEIGHTS_DIR``.
        protocol: ``"stylegan-v"`` (biased covariance) or ``"tf"`` (unbiased); see ``metrics.protocols``.
        value_range: range of float inputs (uint8 inputs are always [0, 255]).
        network: an already built I3D-like module ``(B, 3, T, 224, 224) -> (B, 400)`` (tests, custom
            backbones); replaces ``weights``.

    ``update(videos, real)`` with ``videos`` (B, T, 3, H, W); ``compute()`` -> float64 scalar.
    """

    def __init__(self, weights: str | None = None, protocol: str = "stylegan-v", value_range: tuple[float, float] = (0.0, 1.0),
                 torchscript: bool = False, network: nn.Module | None = None, **kwargs):
        super().__init__(I3D_FEATURES, unbiased=get_protocol(protocol).unbiased, **kwargs)
        self.protocol = protocol
        self.extractor = i3d_video_features(weights, torchscript, protocol, value_range, network)

    def update(self, videos: torch.Tensor, real: bool) -> None:
        self.update_features(self.extractor(videos), real)


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 2020) -> tuple[torch.Tensor, torch.Tensor]:
    """KID / KVD by torch-fidelity: mean and std of the unbiased MMD^2 with the kernel (x.y / d + 1)^3
    over ``subsets`` random subsets (``subset_size`` capped at the smaller set size).

    Args:
        real, fake: (N, d) features in canonical order (see ``metrics.feature_metrics``).
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(subset_size, len(real), len(fake))
    out = kid_features_to_metric(real.double().cpu(), fake.double().cpu(), kid_subsets=subsets, kid_subset_size=size,
                                 rng_seed=seed, verbose=False)
    return torch.tensor(out[KEY_METRIC_KID_MEAN], dtype=torch.float64), torch.tensor(out[KEY_METRIC_KID_STD], dtype=torch.float64)


class KVD(GatheredFeaturesMetric):
    """Kernel Video Distance: KID's polynomial-kernel MMD on the same I3D features as FVD.

    Args: as ``FVD``, plus ``subsets`` / ``subset_size`` / ``seed`` of the subset sampling.
    ``update(videos, real, indices=None)``: pass dataset ``indices`` for results equal to a
    single-process run in data order. ``compute()`` -> (mean, std) float64.
    """

    higher_is_better = False

    def __init__(self, weights: str | None = None, protocol: str = "stylegan-v", value_range: tuple[float, float] = (0.0, 1.0),
                 torchscript: bool = False, subsets: int = 100, subset_size: int = 1000, seed: int = 2020,
                 network: nn.Module | None = None, **kwargs):
        super().__init__(**kwargs)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        self.extractor = i3d_video_features(weights, torchscript, protocol, value_range, network)

    def update(self, videos: torch.Tensor, real: bool, indices: torch.Tensor | None = None) -> None:
        self.update_features(self.extractor(videos), "real" if real else "fake", indices)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return kernel_distance(self.gathered("real"), self.gathered("fake"), self.subsets, self.subset_size, self.seed)
