"""Loading the stages a ``PipelineConfig`` names, each once, with the project's loaders (nothing downloads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lavit.lm.vocabulary import MultimodalVocabulary
from lavit.pipelines.config import GenerationSettings, PipelineConfig


@dataclass
class LanguageModel:
    """The multimodal LM (a ``LlamaForCausalLM``), its id layout and its text tokenizer."""

    model: Any
    vocab: MultimodalVocabulary
    tokenizer: Any

    def to(self, device=None, dtype=None) -> "LanguageModel":
        self.model.to(device=device, dtype=dtype)
        return self

    def encode(self, prompt: str, add_bos: bool) -> torch.Tensor:
        """Text -> ``(L,)`` ids without the tokenizer's specials, ``bos`` first when ``add_bos``."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return torch.tensor(([self.vocab.bos_id] if add_bos else []) + list(ids), dtype=torch.long)


def load_language_model(config: PipelineConfig) -> LanguageModel:
    from lavit.lm.loading import load_multimodal_lm
    from lavit.lm.text_tokenizer import load_text_tokenizer

    model = load_multimodal_lm(config.path("lm"))
    vocab = MultimodalVocabulary(**model.config.lavit_vocabulary)
    return LanguageModel(model.eval(), vocab, load_text_tokenizer(config.path("text_tokenizer")))


def load_motion(config: PipelineConfig):
    """-> (motion tokenizer in eval mode, its clip options: fps, sampling, normalization, ...)."""
    from lavit.tokenizers.loading import clip_options, load_motion_tokenizer, read_motion_tokenizer_checkpoint

    saved = read_motion_tokenizer_checkpoint(config.path("motion_tokenizer"))
    tokenizer = load_motion_tokenizer(saved).eval()
    return tokenizer, clip_options(saved, tokenizer.config)


def load_keyframe_tokenizer(config: PipelineConfig):
    from lavit.tokenizers.keyframe_loading import load_keyframe_tokenizer as load

    return load(config.path("keyframe_tokenizer")).eval()


def load_keyframe_detokenizer(config: PipelineConfig):
    """A Video-LaVIT root (with ``keyframe_decoder_config``) or a ``KeyframeDetokenizer`` checkpoint; a checkpoint is
    given the config's ``keyframe_tokenizer`` instead of the path stored in it, when the loader takes one."""
    import inspect

    from lavit.detokenizer.keyframe_pipeline import load_keyframe_detokenizer as load

    extra = {}
    if config.path("keyframe_tokenizer") is not None and "keyframe_tokenizer" in inspect.signature(load).parameters:
        extra["keyframe_tokenizer"] = config.path("keyframe_tokenizer")
    return load(config.path("keyframe_detokenizer"), decoder_config=config.keyframe_decoder_config, **extra)


def load_video_detokenizer(config: PipelineConfig, motion_tokenizer=None):
    """-> (``VideoDetokenizerPipeline``, its frame size (H, W)): ``generation.video_size``, else the checkpoint's
    training size, else the official 320 x 576."""
    from lavit.pipelines.reconstruct import OFFICIAL_SIZE, build_pipeline

    pipe, settings = build_pipeline(config.path("video_detokenizer"), config.path("vae"), config.path("scheduler"))
    pipe.motion_tokenizer = motion_tokenizer
    size = config.generation.video_size or settings.get("frame_size") or OFFICIAL_SIZE
    multiple = pipe.spatial_multiple
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(f"video size {size[0]}x{size[1]} (HxW) must be a multiple of {multiple} for this video detokenizer "
                         "(generation.video_size)")
    return pipe, tuple(size)


OFFICIAL_KEYFRAME_SIZE = (576, 1024)


def keyframe_size(pipe, size: tuple[int, int] | None) -> tuple[int, int]:
    """``size``, else the keyframe detokenizer's native (training) size, else the official 576 x 1024 (H, W)."""
    return tuple(size or getattr(pipe, "image_size", None) or OFFICIAL_KEYFRAME_SIZE)


def check_keyframe_size(pipe, size: tuple[int, int] | None) -> tuple[int, int]:
    """The size :func:`keyframe_size` picks, checked against the detokenizer's spatial multiple."""
    if pipe is None:
        return size
    size = keyframe_size(pipe, size)
    multiple = pipe.spatial_multiple
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(f"generation.keyframe_size {size[0]}x{size[1]} (HxW) must be a multiple of {multiple} for this "
                         "keyframe detokenizer")
    return size


def fit_keyframe_tokens(settings: GenerationSettings, pipe) -> GenerationSettings:
    """``settings`` with ``max_keyframe_tokens`` (and ``min_keyframe_tokens``) at most the keyframe decoder's code limit
    (``num_queries``: 256 at paper size, 16 for the demo's 56 px tokenizer), so the LM never writes a keyframe the
    keyframe detokenizer cannot draw."""
    if pipe is None:
        return settings
    limit = int(pipe.decoder.config.num_queries)
    most = min(settings.max_keyframe_tokens, limit)
    return settings.replace(max_keyframe_tokens=most, min_keyframe_tokens=min(settings.min_keyframe_tokens, most))
