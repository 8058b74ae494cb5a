"""``VideoDetokenizerConfig``: the whole video detokenizer (U-Net, motion encoder, conditioning, EDM) in one object."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from lavit.config import PresetConfig
from lavit.detokenizer.motion_encoder import MotionConditionEncoderConfig
from lavit.detokenizer.unet import MOTION_GRID, unet_config


@dataclass(frozen=True)
class VideoDetokenizerConfig(PresetConfig):
    """Sizes and training / conditioning constants of the video detokenizer (docs/spec.md §4).

    Args:
        unet: ``MotionConditionedUNet`` constructor arguments, or the name of one of ``lavit.detokenizer.unet_config``'s
            ("paper", "tiny"). Stored as a plain mapping.
        motion_encoder: a ``MotionConditionEncoderConfig``, its preset name or its fields.
        latent_channels: channels of the (VAE) latent the U-Net denoises: 4 for SVD's VAE, 3 in pixel space. The U-Net
            takes ``2 * latent_channels + motion channels`` (noisy latent, keyframe latent, motion) and returns
            ``latent_channels``.
        motion_scale_factor: tokenizer-scale motion (``normalization="official"``, what ``extract_clips`` and the
            motion tokenizer's decoder give) is divided by this before conditioning (official: 10; the from-scratch
            ``demo``: 0.5).
        fps, motion_bucket_id, noise_aug_strength: the U-Net's ``added_time_ids`` (official: 6, 127, 0.02) and the
            std of the Gaussian noise added to the keyframe in pixel space before it is VAE-encoded.
        p_mean, p_std: training noise levels ``ln(sigma) ~ N(p_mean, p_std^2)`` (SVD: 1.0, 1.2).
        keyframe_latent_dropout, motion_channel_dropout, motion_feature_dropout: per-sample probabilities of zeroing
            one condition in training (the official release does not say; ours).
        unconditional_dropout: per-sample probability of zeroing all three together: the unconditional branch that
            classifier-free guidance samples with (zero keyframe latent, motion channels and motion features).
        keyframe_residual: denoise the clip's difference to its keyframe: ``D(x) = k + D_edm(x - k)`` with ``k`` the
            keyframe's (VAE-scaled) latent repeated over T, so an untrained U-Net already copies the keyframe. Not
            official (False in ``paper`` and ``tiny``, whose U-Net starts from SVD, which can copy); the CPU ``demo``
            trains from scratch and sets it.

    Raises:
        ValueError: at construction, naming each inconsistent size or out-of-range value.
    """

    kind: ClassVar[str] = "video detokenizer"

    unet: Mapping[str, Any] | str = "paper"
    motion_encoder: MotionConditionEncoderConfig | Mapping[str, Any] | str = "paper"
    latent_channels: int = 4
    motion_scale_factor: float = 10.0
    fps: int = 6
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    p_mean: float = 1.0
    p_std: float = 1.2
    keyframe_latent_dropout: float = 0.05
    motion_channel_dropout: float = 0.05
    motion_feature_dropout: float = 0.05
    unconditional_dropout: float = 0.1
    keyframe_residual: bool = False

    def __post_init__(self) -> None:
        unet = unet_config(self.unet) if isinstance(self.unet, str) else json.loads(json.dumps(dict(self.unet)))
        object.__setattr__(self, "unet", unet)
        object.__setattr__(self, "motion_encoder", MotionConditionEncoderConfig.coerce(self.motion_encoder))
        encoder = self.motion_encoder
        self.require_positive("latent_channels", "motion_scale_factor", "p_std")
        for name in ("keyframe_latent_dropout", "motion_channel_dropout", "motion_feature_dropout", "unconditional_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.noise_aug_strength < 0:
            raise ValueError(f"noise_aug_strength must be >= 0, got {self.noise_aug_strength}")
        expected_in = 2 * self.latent_channels + encoder.in_channels
        checks = {
            "unet.in_channels": (unet.get("in_channels", 10), expected_in,
                                 f"2 * latent_channels + motion_encoder.in_channels = 2 * {self.latent_channels} + {encoder.in_channels}"),
            "unet.out_channels": (unet.get("out_channels", 4), self.latent_channels, "latent_channels"),
            "unet.cross_attention_dim": (unet.get("cross_attention_dim", 1024), encoder.out_channels, "motion_encoder.out_channels"),
            "motion_encoder.grid": (tuple(encoder.grid), MOTION_GRID, "the 16 x 16 grid the U-Net's motion routing reads"),
        }
        for name, (value, expected, why) in checks.items():
            if value != expected:
                raise ValueError(f"{name} must equal {why} ({expected}), got {value}")
        ids = unet.get("projection_class_embeddings_input_dim", 768) / unet.get("addition_time_embed_dim", 256)
        if ids != 3:
            raise ValueError(
                "unet.projection_class_embeddings_input_dim must be 3 * addition_time_embed_dim (fps, motion bucket, "
                f"noise augmentation), got {unet.get('projection_class_embeddings_input_dim', 768)} and "
                f"{unet.get('addition_time_embed_dim', 256)}"
            )

    @property
    def motion_channels(self) -> int:
        """Channels of the motion condition (2: x and y)."""
        return self.motion_encoder.in_channels

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        values["motion_encoder"] = self.motion_encoder.to_dict()
        return values


_TINY_ENCODER = dict(dim=32, num_heads=2, depth=1, out_channels=32)

VIDEO_DETOKENIZER_CONFIGS: dict[str, dict[str, Any]] = {
    # docs/spec.md §4: SVD img2vid-xt layout with 10 input channels (1,524,628,842 + 51,095,040 parameters).
    "paper": dict(),
    # Tests and smoke runs: the tiny parity U-Net (cross_attention_dim 32) and a one-block 32-wide encoder.
    "tiny": dict(unet="tiny", motion_encoder=_TINY_ENCODER),
    # The CPU demo in pixel space (latent = RGB in [-1, 1], 3 channels): see configs/video_detokenizer/demo.yaml.
    # 64 channels in both blocks, not the tiny U-Net's (32, 64): diffusers' spatio-temporal blocks hard-code
    # GroupNorm(32 groups), so 32 channels normalise each channel alone per frame and the output cannot carry a
    # frame's mean colour (73% of the demo clips' pixel variance); it never beat copying the keyframe.
    # Cross-attention in the half-resolution block (1.6x faster than at full resolution, same loss) and
    # keyframe_residual: trained from scratch, the U-Net otherwise spends its CPU budget learning to copy the keyframe.
    # motion_scale_factor 0.5, not the official 10: the demo's motion (mean |m| 0.69, up to 14 in tokenizer scale) then
    # enters at the pixels' scale instead of 20x below it, and the from-scratch U-Net reads it within the CPU budget
    # (zeroing the motion after 1000 steps raises the per-pixel MSE at sigma 4 by 33%, against 4.7% with 10). p_mean
    # 1.5 (SVD: 1.0) trains more at the noise levels where only the motion tells where the block is: +54% at sigma 4.
    "demo": dict(
        unet={**unet_config("tiny"), "in_channels": 8, "out_channels": 3, "num_frames": 24, "block_out_channels": (64, 64),
              "down_block_types": ("DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"),
              "up_block_types": ("CrossAttnUpBlockSpatioTemporal", "UpBlockSpatioTemporal")},
        motion_encoder=_TINY_ENCODER,
        latent_channels=3,
        keyframe_residual=True,
        motion_scale_factor=0.5,
        p_mean=1.5,
    ),
}
VideoDetokenizerConfig.presets = VIDEO_DETOKENIZER_CONFIGS
