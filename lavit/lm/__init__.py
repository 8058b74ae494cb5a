"""The multimodal LM: a transformers Llama over text, keyframe codes and motion codes (no Lightning import)."""

from lavit.lm.config import MULTIMODAL_LM_CONFIGS, MultimodalLMConfig
from lavit.lm.loading import load_multimodal_lm, save_multimodal_lm
from lavit.lm.understanding import (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, ImageFeatures, UnderstandingInputError,
                                    VideoFeatures, prepare_understanding_inputs)
from lavit.lm.vocabulary import (ImageSegment, MultimodalVocabulary, Segment, SequenceGrammarError, TextSegment,
                                 VideoSegment)

__all__ = [
    "IMAGE_PLACEHOLDER",
    "ImageFeatures",
    "UnderstandingInputError",
    "VIDEO_PLACEHOLDER",
    "VideoFeatures",
    "load_multimodal_lm",
    "prepare_understanding_inputs",
    "save_multimodal_lm",
    "MULTIMODAL_LM_CONFIGS",
    "ImageSegment",
    "MultimodalLMConfig",
    "MultimodalVocabulary",
    "Segment",
    "SequenceGrammarError",
    "TextSegment",
    "VideoSegment",
]
