"""FID over frames: Inception-V3 pool3 features (torch-fidelity), or CLIP image features (PYoCo)."""

from __future__ import annotations

import torch
from torch import nn

from metrics.feature_metrics import FrechetMetric
from metrics.video_input import check_images, check_video, to_uint8

BACKBONES = {"inception": 2048, "clip": None}


class FID(FrechetMetric):
    """Fréchet distance of per-frame features; videos contribute each of their frames.

    Args:
        weights: Inception weights (``weights-inception-2015-12-05-6726825d.pth``) or, for
            ``backbone="clip"``, an open_clip checkpoint; default ``$LAVIT_WEIGHTS_DIR`` (Inception).
        backbone: ``"inception"`` (2048-d pool3, torch-fidelity) or ``"clip"`` (PYoCo variant).
        resize: Inception only: ``"torch-fidelity"`` or ``"clean"`` (clean-fid's PIL bicubic).
        clip_model: open_clip architecture for ``backbone="clip"`` (``"ViT-B-32"``).
        unbiased: covariance normalisation (torch-fidelity and clean-fid: unbiased).
        value_range: range of float inputs.
        network: a prebuilt extractor ``(N, 3, H, W) uint8 -> {"2048": (N, d)}`` (tests).

    ``update(frames, real)`` with (B, 3, H, W) images or (B, T, 3, H, W) videos.
    """

    def __init__(self, weights: str | None = None, backbone: str = "inception", resize: str = "torch-fidelity",
                 clip_model: str = "ViT-B-32", unbiased: bool = True, value_range: tuple[float, float] = (0.0, 1.0),
                 network: nn.Module | None = None, **kwargs):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        if network is None:
            if backbone == "inception":
                from metrics.extractors import InceptionFeatures

                network = InceptionFeatures(weights, resize=resize)
            else:
                from metrics.extractors import ClipModel

                network = ClipModel(clip_model, weights)
        num_features = 2048 if backbone == "inception" else int(network.model.visual.output_dim)
        super().__init__(num_features, unbiased=unbiased, **kwargs)
        self.backbone, self.value_range = backbone, tuple(value_range)
        self.extractor = network

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, d)."""
        if self.backbone == "clip":
            return self.extractor.image_features(frames)
        return self.extractor(frames)["2048"]

    def update(self, frames: torch.Tensor, real: bool) -> None:
        if frames.ndim == 5:
            check_video(frames, 1, "videos")
            frames = frames.flatten(0, 1)
        check_images(frames, "frames")
        self.update_features(self.frame_features(to_uint8(frames, self.value_range, "frames")), real)
