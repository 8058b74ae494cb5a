"""The video detokenizer (docs/spec.md §4): motion condition encoder and motion-conditioned 3D U-Net."""

from lavit.detokenizer.motion_encoder import (
    MOTION_CONDITION_ENCODER_CONFIGS,
    MotionConditionEncoder,
    MotionConditionEncoderConfig,
    prepare_motion,
)

__all__ = ["MOTION_CONDITION_ENCODER_CONFIGS", "MotionConditionEncoder", "MotionConditionEncoderConfig", "prepare_motion"]
