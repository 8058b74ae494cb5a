"""The video detokenizer (docs/spec.md §4): motion condition encoder and motion-conditioned 3D U-Net."""

from lavit.detokenizer.motion_encoder import (
    MOTION_CONDITION_ENCODER_CONFIGS,
    MotionConditionEncoder,
    MotionConditionEncoderConfig,
    prepare_motion,
)
from lavit.detokenizer.unet import PAPER_UNET_CONFIG, TINY_UNET_CONFIG, MotionConditionedUNet, route_motion_context, unet_config

__all__ = [
    "MOTION_CONDITION_ENCODER_CONFIGS",
    "PAPER_UNET_CONFIG",
    "TINY_UNET_CONFIG",
    "MotionConditionEncoder",
    "MotionConditionEncoderConfig",
    "MotionConditionedUNet",
    "prepare_motion",
    "route_motion_context",
    "unet_config",
]
