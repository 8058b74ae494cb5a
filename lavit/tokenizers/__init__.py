"""Tokenizers: the motion VQ-VAE (and, later, the LaVIT keyframe tokenizer)."""

from lavit.tokenizers.loading import load_motion_tokenizer
from lavit.tokenizers.motion_tokenizer import MotionTokenizer
from lavit.tokenizers.quantizer import NormEMAQuantizer, QuantizerOutput

__all__ = ["MotionTokenizer", "NormEMAQuantizer", "QuantizerOutput", "load_motion_tokenizer"]
