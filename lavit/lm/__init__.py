"""The multimodal LM: a transformers Llama over text, keyframe codes and motion codes (no Lightning import)."""

from lavit.lm.config import MULTIMODAL_LM_CONFIGS, MultimodalLMConfig
from lavit.lm.motion_direction import caption_pan_direction, motion_horizontal_sign, pan_direction_agreement
from lavit.lm.vocabulary import (ImageSegment, MultimodalVocabulary, Segment, SequenceGrammarError, TextSegment,
                                 VideoSegment)

__all__ = [
    "MULTIMODAL_LM_CONFIGS",
    "ImageSegment",
    "MultimodalLMConfig",
    "MultimodalVocabulary",
    "Segment",
    "SequenceGrammarError",
    "TextSegment",
    "VideoSegment",
    "caption_pan_direction",
    "motion_horizontal_sign",
    "pan_direction_agreement",
]
