"""Tokenizers: the motion VQ-VAE and the LaVIT keyframe tokenizer (selector, merger, quantiser)."""

from lavit.tokenizers.keyframe_config import KEYFRAME_TOKENIZER_CONFIGS, KeyframeTokenizerConfig
from lavit.tokenizers.keyframe_tokenizer import KeyframeTokenizer, KeyframeTokenizerOutput
from lavit.tokenizers.eva_loading import load_eva_encoder
from lavit.tokenizers.keyframe_loading import load_keyframe_tokenizer, save_keyframe_tokenizer
from lavit.tokenizers.eva_vit import EVA_VISION_CONFIGS, EVAVisionConfig, EVAVisionEncoder
from lavit.tokenizers.loading import load_motion_tokenizer, read_motion_tokenizer_checkpoint, save_motion_tokenizer
from lavit.tokenizers.motion_config import MOTION_TOKENIZER_CONFIGS, MotionTokenizerConfig
from lavit.tokenizers.motion_tokenizer import MotionTokenizer
from lavit.tokenizers.quantizer import NormEMAQuantizer, QuantizerOutput

__all__ = [
    "KEYFRAME_TOKENIZER_CONFIGS",
    "KeyframeTokenizer",
    "KeyframeTokenizerConfig",
    "KeyframeTokenizerOutput",
    "EVA_VISION_CONFIGS",
    "EVAVisionConfig",
    "EVAVisionEncoder",
    "MOTION_TOKENIZER_CONFIGS",
    "MotionTokenizer",
    "MotionTokenizerConfig",
    "NormEMAQuantizer",
    "QuantizerOutput",
    "load_eva_encoder",
    "load_keyframe_tokenizer",
    "load_motion_tokenizer",
    "read_motion_tokenizer_checkpoint",
    "save_keyframe_tokenizer",
    "save_motion_tokenizer",
]
