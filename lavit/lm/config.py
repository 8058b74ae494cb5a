"""``MultimodalLMConfig``: the Llama and the extended vocabulary of the multimodal LM, in one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lavit.config import PresetConfig
from lavit.lm.vocabulary import MultimodalVocabulary


@dataclass(frozen=True)
class MultimodalLMConfig(PresetConfig):
    """A ``transformers.LlamaConfig``'s sizes plus the media vocabulary (``MultimodalVocabulary`` fields).

    Args:
        hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
            max_position_embeddings, rms_norm_eps, rope_theta, tie_word_embeddings, initializer_range: the Llama's
            (``llama2_7b``: Llama-2-7B, context 4096, untied head: docs/spec.md section 5, reference lm_hf_state_dict.tsv).
        text_size, visual_codes, motion_codes, motion_tokens_per_clip, bos_id, eos_id, unk_id: the vocabulary layout
            (official: 32000 text ids, 16384 visual codes, 1024 motion codes, 135 motion codes per clip; 49412 ids).
        pad_id: the padding id of batches (understanding: unk 0, generation: eos 2, official).
    """

    kind: ClassVar[str] = "multimodal LM"

    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    text_size: int = 32000
    visual_codes: int = 16384
    motion_codes: int = 1024
    motion_tokens_per_clip: int = 135
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 0
    pad_id: int = 0

    def __post_init__(self) -> None:
        self.require_positive("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                              "max_position_embeddings", "rms_norm_eps")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_attention_heads {self.num_attention_heads}")
        kv = self.num_key_value_heads or self.num_attention_heads
        if self.num_attention_heads % kv:
            raise ValueError(f"num_attention_heads {self.num_attention_heads} must be a multiple of num_key_value_heads {kv}")
        self.vocabulary  # validates the layout
        if not 0 <= self.pad_id < self.text_size:
            raise ValueError(f"pad_id must be a text id in 0..{self.text_size - 1}, got {self.pad_id}")

    @property
    def vocabulary(self) -> MultimodalVocabulary:
        return MultimodalVocabulary(self.text_size, self.visual_codes, self.motion_codes, self.motion_tokens_per_clip,
                                    self.bos_id, self.eos_id, self.unk_id)

    @property
    def vocab_size(self) -> int:
        return self.vocabulary.size

    def llama_config(self, **overrides: Any):
        """The ``transformers.LlamaConfig`` (``vocab_size`` = the vocabulary's size); ``overrides`` go to it as well
        (e.g. ``attn_implementation="sdpa"``)."""
        from transformers import LlamaConfig

        values = dict(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads or self.num_attention_heads,
            max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps, rope_theta=self.rope_theta,
            tie_word_embeddings=self.tie_word_embeddings, initializer_range=self.initializer_range,
            bos_token_id=self.bos_id, eos_token_id=self.eos_id, pad_token_id=self.pad_id,
        )
        return LlamaConfig(**{**values, **overrides})

    @classmethod
    def from_llama_config(cls, llama, **vocabulary: Any) -> "MultimodalLMConfig":
        """From a ``LlamaConfig`` (an HF folder's config.json) and the vocabulary fields (default: official; a
        ``vocab_size`` other than the layout's is an error naming both)."""
        kv = getattr(llama, "num_key_value_heads", None)
        config = cls(
            hidden_size=llama.hidden_size, intermediate_size=llama.intermediate_size, num_hidden_layers=llama.num_hidden_layers,
            num_attention_heads=llama.num_attention_heads, num_key_value_heads=None if kv == llama.num_attention_heads else kv,
            max_position_embeddings=llama.max_position_embeddings, rms_norm_eps=llama.rms_norm_eps,
            rope_theta=float(getattr(llama, "rope_theta", None) or (getattr(llama, "rope_parameters", None) or {}).get("rope_theta", 10000.0)),
            tie_word_embeddings=bool(llama.tie_word_embeddings), initializer_range=llama.initializer_range, **vocabulary,
        )
        if llama.vocab_size not in (config.text_size, config.vocab_size):
            raise ValueError(f"the Llama config has vocab_size {llama.vocab_size}; the multimodal vocabulary needs "
                             f"{config.vocab_size} (or {config.text_size} text ids, to be extended)")
        return config


MULTIMODAL_LM_CONFIGS: dict[str, dict[str, Any]] = {
    # ../shared/reference/lm_hf_state_dict.tsv: Llama-2-7B with the 49412-id vocabulary, untied head (6,881,054,720).
    "llama2_7b": dict(),
    # The official parity fixtures' tiny Llama (lm_*_tiny_parity.safetensors): official vocabulary, tied head.
    "tiny": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=512,
                 tie_word_embeddings=True),
}
MultimodalLMConfig.presets = MULTIMODAL_LM_CONFIGS
