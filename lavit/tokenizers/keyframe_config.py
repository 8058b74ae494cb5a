"""``KeyframeTokenizerConfig``: sizes and settings of the LaVIT keyframe (visual) tokenizer, with presets.

Defaults are the official ``DynamicVisualTokenizer`` without its EVA encoder (409,819,394 parameters with
``vit_proj``; reference/official_lm_and_keyframe_tokenizer.md §1, §4, §5). ``encoder`` names the EVA-CLIP
config (a preset name or a mapping) that ``lavit.tokenizers.eva_vit.EVAVisionConfig`` reads; the keyframe
tokenizer only builds an encoder when asked to (``KeyframeTokenizer(config, encoder=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from lavit.config import PresetConfig
from lavit.tokenizers.quantizer import check_quantizer_settings

SELECTIONS = ("gumbel", "deterministic")
ATTENTIONS = ("exact", "sdpa")


@dataclass(frozen=True)
class KeyframeTokenizerConfig(PresetConfig):
    """Keyframe tokenizer: token selector, token merger, quantiser and understanding projection.

    Args:
        img_size, patch_size: input image side (224) and EVA patch (14): 16 x 16 = 256 patches.
        width: EVA feature width and merger width (1408).
        layers, heads, mlp_hidden: merger depth (12), heads (16 of 88) and MLP hidden size (6144 =
            int(1408 * 4.3637), the official ``mlp_ratio``).
        n_code, code_dim: codebook of 16384 codes of 32 dimensions.
        llm_embed_dim: output of ``vit_proj`` (4096, the LM hidden size).
        llm_code_offset, img_start, img_end: LM ids of code 0 (32002), [IMG] (32000), [/IMG] (32001).
        ln_eps: LayerNorm epsilon of selector and merger (1e-5).
        policy_eps: epsilon of the soft-policy attention normalisation (1e-6).
        selection: ``"deterministic"`` (keep where the selector's keep score wins; reproducible ids, the
            default) or ``"gumbel"`` (the official hard Gumbel-softmax, sampled at inference too).
        attention: the merger's soft-policy attention: ``"exact"`` (the official computation, the default, parity)
            or ``"sdpa"`` (``scaled_dot_product_attention`` with an additive mask, inference only; it drops the
            official ``eps`` terms, see ``lavit.tokenizers.keyframe_tokenizer.policy_attention``).
        encoder: the EVA-CLIP encoder config: a preset name (``"paper"``, ``"tiny"``) or a mapping of
            its fields, consumed by ``EVAVisionConfig.coerce``; None: no encoder (features in).
        decay, commitment_weight, kmeans_init, dead_code_steps, restart_buffer: the quantiser's training
            extras (see ``NormEMAQuantizer``); they do not change tokenization.

    Raises:
        ValueError: at construction, naming each inconsistent or non-positive argument.
    """

    kind: ClassVar[str] = "keyframe tokenizer"

    img_size: int = 224
    patch_size: int = 14
    width: int = 1408
    layers: int = 12
    heads: int = 16
    mlp_hidden: int = 6144
    n_code: int = 16384
    code_dim: int = 32
    llm_embed_dim: int = 4096
    llm_code_offset: int = 32002
    img_start: int = 32000
    img_end: int = 32001
    ln_eps: float = 1e-5
    policy_eps: float = 1e-6
    selection: str = "deterministic"
    attention: str = "exact"
    encoder: str | dict[str, Any] | None = "paper"
    decay: float = 0.99
    commitment_weight: float = 0.25
    kmeans_init: bool = False
    dead_code_steps: int | None = None
    restart_buffer: int = 4096

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            object.__setattr__(self, "encoder", dict(self.encoder))
        self.require_positive("img_size", "patch_size", "width", "layers", "heads", "mlp_hidden", "n_code", "code_dim",
                              "llm_embed_dim", "ln_eps", "policy_eps", "restart_buffer")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.width % 4:
            raise ValueError(f"width must be divisible by 4 (selector MLP width -> width/2 -> width/4), got {self.width}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.encoder is not None and not isinstance(self.encoder, (str, dict)):
            raise ValueError(f"encoder must be an EVA preset name, a mapping or None, got {type(self.encoder).__name__}")
        if any(self.llm_code_offset <= s < self.llm_code_offset + self.n_code for s in (self.img_start, self.img_end)):
            raise ValueError(f"visual ids {self.llm_code_offset}..{self.llm_code_offset + self.n_code - 1} overlap "
                             f"[IMG] {self.img_start} / [/IMG] {self.img_end}")
        check_quantizer_settings(self)

    @property
    def grid_size(self) -> int:
        """Patches per side (16)."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per image (256), the selector's and merger's sequence length."""
        return self.grid_size ** 2

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


KEYFRAME_TOKENIZER_CONFIGS: dict[str, dict[str, Any]] = {
    # The official size (reference/official_lm_and_keyframe_tokenizer.md §4).
    "paper": dict(encoder="paper"),
    # The config of reference/visual_tokenizer_tiny_parity.safetensors (metadata "config").
    "tiny": dict(img_size=56, width=64, layers=2, heads=4, mlp_hidden=279, n_code=64, code_dim=8, encoder="tiny"),
}
KeyframeTokenizerConfig.presets = KEYFRAME_TOKENIZER_CONFIGS
