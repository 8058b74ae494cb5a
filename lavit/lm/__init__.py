"""The multimodal LM: a transformers Llama over text, keyframe codes and motion codes (no Lightning import)."""

from lavit.lm import official_attention  # noqa: F401  registers attn_implementation="lavit_official"
from lavit.lm.config import MULTIMODAL_LM_CONFIGS, MultimodalLMConfig
from lavit.lm.conversation import (Conversation, ConversationError, build_prompt, encode_conversation, postprocess_answer,
                                   read_conversations)
from lavit.lm.loading import load_multimodal_lm, save_multimodal_lm
from lavit.lm.placeholders import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from lavit.lm.text_tokenizer import load_text_tokenizer, train_text_tokenizer
from lavit.lm.understanding import ImageFeatures, UnderstandingInputError, VideoFeatures, prepare_understanding_inputs
from lavit.lm.motion_direction import caption_pan_direction, motion_horizontal_sign, pan_direction_agreement
from lavit.lm.vocabulary import (ImageSegment, MultimodalVocabulary, Segment, SequenceGrammarError, TextSegment,
                                 VideoSegment)

__all__ = [
    "Conversation",
    "ConversationError",
    "IMAGE_PLACEHOLDER",
    "ImageFeatures",
    "MULTIMODAL_LM_CONFIGS",
    "ImageSegment",
    "MultimodalLMConfig",
    "MultimodalVocabulary",
    "Segment",
    "SequenceGrammarError",
    "TextSegment",
    "UnderstandingInputError",
    "VIDEO_PLACEHOLDER",
    "VideoFeatures",
    "VideoSegment",
    "build_prompt",
    "encode_conversation",
    "load_multimodal_lm",
    "load_text_tokenizer",
    "postprocess_answer",
    "prepare_understanding_inputs",
    "read_conversations",
    "save_multimodal_lm",
    "train_text_tokenizer",
    "caption_pan_direction",
    "motion_horizontal_sign",
    "pan_direction_agreement",
]
