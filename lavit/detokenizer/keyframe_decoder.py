"""The keyframe detokenizer's code-to-feature decoder (the official ``HighresVQDecoder``, SPEC section 3).

Quantised codes of each image (``(n_i, 32)`` codebook rows, images concatenated) -> ``in_proj`` (32 -> 1408) ->
zero-padded per image to the batch's longest, + ``pos_embed`` by position *in the kept sequence* -> 256 learned
``query_embed`` queries through ``depth`` blocks (self-attention among the queries, cross-attention to the codes with
the additive ``(1 - mask) * -10000`` padding mask, MLP) -> ``norm`` -> ``decode_task_layer`` (Linear-Tanh-Linear)
= ``visual_rec`` ``(B, 256, 1408)``, the reconstructed EVA features. From it the SDXL-shaped U-Net conditioning:
``prompt_embeds = cat(unet_proj_1 (768), unet_proj_2 (1280))`` ``(B, 256, 2048)`` and ``pooled = unet_attnpool``
(CLIP attention pooling of [mean; features]) ``(B, 1280)``.

Parameter names, shapes and order equal ``visual_tokenizer/highres_tokenizer_decoder.bin`` of rain1011/Video-LaVIT-v1
(414,002,304 parameters at paper size), so it loads strictly (:func:`load_keyframe_decoder_weights`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavit.config import PresetConfig
from lavit.modules.spatiotemporal import Float32LayerNorm, Mlp
from lavit.tokenizers.motion_tokenizer import init_weights
from lavit.weights import (
    KNOWN_WEIGHTS,
    check_finite,
    load_state_dict_strict,
    read_state_dict,
    resolve_weights,
    state_dict_of,
    strip_prefix,
)

__all__ = [
    "KEYFRAME_DECODER_CONFIGS",
    "KeyframeDecoderConfig",
    "KeyframeFeatureDecoder",
    "load_keyframe_decoder",
    "load_keyframe_decoder_weights",
]

WEIGHTS_KEY = "keyframe_decoder"  # lavit.weights.KNOWN_WEIGHTS entry of the official highres_tokenizer_decoder.bin
OFFICIAL_SUBFOLDER = "visual_tokenizer"  # where the file sits inside a Video-LaVIT root folder
ANCHOR = "decode_task_layer.0.weight"  # a key only this decoder has, whatever prefix a checkpoint adds
MASK_VALUE = -10000.0  # the official additive mask of padded codes


@dataclass(frozen=True)
class KeyframeDecoderConfig(PresetConfig):
    """Keyframe decoder sizes. Defaults are the official ``HighresVQDecoder(depth=12)`` (414,002,304 parameters).

    Args:
        in_channels: code vector size (32, the codebook's dim).
        dim, depth, num_heads, mlp_ratio: transformer width (1408), blocks (12), heads (16; also the attention
            pool's), MLP ratio (4.3637: hidden ``int(dim * mlp_ratio)`` = 6144).
        num_queries: learned queries = output positions = the most codes one image may have (256 = 16 x 16).
        decoder_out_dim: size of the reconstructed features ``visual_rec`` (1408, the EVA width).
        unet_proj_dims: widths of ``unet_proj_1`` and ``unet_proj_2`` (768, 1280); the prompt embeddings are
            their concatenation (2048).
        pooled_dim: the attention pool's output (1280).
        eps: LayerNorm epsilon (1e-5; computed in float32, as the official ``LayerNorm``).
        init_std: truncated-normal std of initial weights and of ``pos_embed`` / ``query_embed`` (0.02), or None
            for PyTorch's fan-in defaults (see ``lavit.tokenizers.motion_tokenizer.init_weights``).

    Raises:
        ValueError: at construction, naming each inconsistent or non-positive argument.
    """

    kind: ClassVar[str] = "keyframe decoder"

    in_channels: int = 32
    dim: int = 1408
    depth: int = 12
    num_heads: int = 16
    mlp_ratio: float = 4.3637
    num_queries: int = 256
    decoder_out_dim: int = 1408
    unet_proj_dims: tuple[int, int] = (768, 1280)
    pooled_dim: int = 1280
    eps: float = 1e-5
    init_std: float | None = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "unet_proj_dims", tuple(int(s) for s in self.unet_proj_dims))
        self.require_positive("in_channels", "dim", "depth", "num_heads", "mlp_ratio", "num_queries", "decoder_out_dim",
                              "pooled_dim", "eps")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.decoder_out_dim % self.num_heads:
            raise ValueError(f"decoder_out_dim {self.decoder_out_dim} is not divisible by num_heads {self.num_heads} "
                             "(the attention pool uses the same heads)")
        if self.mlp_hidden < 1:
            raise ValueError(f"dim * mlp_ratio must be at least 1, got {self.dim} * {self.mlp_ratio}")
        if len(self.unet_proj_dims) != 2 or min(self.unet_proj_dims) < 1:
            raise ValueError(f"unet_proj_dims must be two positive widths, got {self.unet_proj_dims}")
        if self.init_std is not None and not self.init_std > 0:
            raise ValueError(f"init_std must be positive or None, got {self.init_std}")

    @property
    def mlp_hidden(self) -> int:
        """MLP hidden size, ``int(dim * mlp_ratio)`` as official (6144)."""
        return int(self.dim * self.mlp_ratio)

    @property
    def prompt_dim(self) -> int:
        """Width of the prompt embeddings (768 + 1280 = 2048)."""
        return sum(self.unet_proj_dims)


KEYFRAME_DECODER_CONFIGS: dict[str, dict[str, Any]] = {
    # VideoLaVIT/models/modeling_decoder.py::build_tokenizer_decoder: HighresVQDecoder(depth=12).
    "paper": dict(),
    # reference/keyframe_decoder_tiny_parity.safetensors: the official class at width 64, 4 heads, 16 queries,
    # its hard-coded widths substituted (1408/768/1280/1280 -> 48/24/40/40).
    "tiny": dict(in_channels=8, dim=64, depth=2, num_heads=4, num_queries=16, decoder_out_dim=48,
                 unet_proj_dims=(24, 40), pooled_dim=40),
}
KeyframeDecoderConfig.presets = KEYFRAME_DECODER_CONFIGS


class SelfAttention(nn.Module):
    """Multi-head self-attention, one qkv Linear with bias (not the motion blocks' q_bias / v_bias), SDPA."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Queries attend to the padded codes; ``bias`` (B, 1, 1, M) is added to the scores (the padding mask)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, codes: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, N, C), codes (B, M, C), bias (B, 1, 1, M) -> (B, N, C)."""
        b, n, c = x.shape
        h = self.num_heads
        q = self.query(x).view(b, n, h, c // h).transpose(1, 2)
        k = self.key(codes).view(b, -1, h, c // h).transpose(1, 2)
        v = self.value(codes).view(b, -1, h, c // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DecoderBlock(nn.Module):
    """Pre-norm block: self-attention among queries, cross-attention to the codes, MLP, each residual."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, eps: float):
        super().__init__()
        self.norm0 = Float32LayerNorm(dim, eps=eps)
        self.self_attn = SelfAttention(dim, num_heads)
        self.norm1 = Float32LayerNorm(dim, eps=eps)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = Float32LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor, codes: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) queries, codes (B, M, C), bias (B, 1, 1, M) -> (B, N, C)."""
        x = x + self.self_attn(self.norm0(x))
        x = x + self.cross_attn(self.norm1(x), codes, bias)
        return x + self.mlp(self.norm2(x))


class AttentionPool(nn.Module):
    """CLIP's ``AttentionPool2d`` on a token sequence: the mean token is prepended, ``positional_embedding`` added,
    and the mean token's multi-head attention output over all tokens, through ``c_proj``, is returned."""

    def __init__(self, seq_len: int, dim: int, num_heads: int, out_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(seq_len + 1, dim) / dim ** 0.5)
        self.k_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, out_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, out_dim)."""
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        b, n, c = x.shape
        h = self.num_heads
        # only token 0 is returned, so only its query is computed
        q = self.q_proj(x[:, :1]).view(b, 1, h, c // h).transpose(1, 2)
        k = self.k_proj(x).view(b, n, h, c // h).transpose(1, 2)
        v = self.v_proj(x).view(b, n, h, c // h).transpose(1, 2)
        return self.c_proj(F.scaled_dot_product_attention(q, k, v).reshape(b, c))


def _describe(x: object) -> str:
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


class KeyframeFeatureDecoder(nn.Module):
    """The official keyframe code-to-feature decoder built from a :class:`KeyframeDecoderConfig`.

    Each image's output depends only on its own codes (padding is masked out), so batching images of different
    code counts changes nothing.

    Attributes:
        config: the config it was built from.
    """

    def __init__(self, config: KeyframeDecoderConfig | None = None):
        super().__init__()
        c = KeyframeDecoderConfig() if config is None else config
        if not isinstance(c, KeyframeDecoderConfig):
            raise TypeError(f"KeyframeFeatureDecoder takes a KeyframeDecoderConfig, got {type(c).__name__}")
        self.config = c
        # registration order = the official one (its state dict lists the direct parameters first)
        self.in_proj = nn.Linear(c.in_channels, c.dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_queries, c.dim))
        self.query_embed = nn.Parameter(torch.zeros(1, c.num_queries, c.dim))
        self.blocks = nn.ModuleList(DecoderBlock(c.dim, c.num_heads, c.mlp_hidden, c.eps) for _ in range(c.depth))
        self.norm = Float32LayerNorm(c.dim, eps=c.eps)
        self.decode_task_layer = nn.Sequential(nn.Linear(c.dim, c.dim), nn.Tanh(), nn.Linear(c.dim, c.decoder_out_dim))
        self.unet_proj_1 = nn.Linear(c.decoder_out_dim, c.unet_proj_dims[0])
        self.unet_proj_2 = nn.Linear(c.decoder_out_dim, c.unet_proj_dims[1])
        self.unet_attnpool = AttentionPool(c.num_queries, c.decoder_out_dim, c.num_heads, c.pooled_dim)
        init_weights(self, c.init_std)
        if c.init_std is not None:
            nn.init.trunc_normal_(self.pos_embed, std=c.init_std)
            nn.init.trunc_normal_(self.query_embed, std=c.init_std)

    # ---- inputs ------------------------------------------------------------------------------
    def _token_nums(self, token_nums: torch.Tensor | Sequence[int], num_codes: int) -> list[int]:
        if isinstance(token_nums, torch.Tensor):
            if token_nums.ndim != 1 or token_nums.is_floating_point() or token_nums.is_complex():
                raise ValueError(f"token_nums must be a 1-D integer tensor (B,), got {_describe(token_nums)}")
            counts = [int(n) for n in token_nums.tolist()]
        else:
            counts = [int(n) for n in token_nums]
        limit = self.config.num_queries
        if not counts:
            raise ValueError("token_nums is empty: the batch must hold at least one image")
        for i, n in enumerate(counts):
            if n < 1:
                raise ValueError(f"image {i} has {n} codes; each image needs at least 1")
            if n > limit:
                raise ValueError(f"image {i} has {n} codes, more than the decoder's limit of {limit} "
                                 f"(one position embedding per code)")
        if sum(counts) != num_codes:
            raise ValueError(f"token_nums sum to {sum(counts)} but {num_codes} codes were given")
        return counts

    def _check_codes(self, codes: torch.Tensor) -> None:
        d = self.config.in_channels
        if not isinstance(codes, torch.Tensor) or codes.ndim != 2 or codes.shape[1] != d or not codes.is_floating_point():
            raise ValueError(f"codes must be a floating-point tensor of shape (sum n_i, {d}) (quantised code vectors, "
                             f"images concatenated), got {_describe(codes)}")

    # ---- forward -----------------------------------------------------------------------------
    def embed_codes(self, codes: torch.Tensor, token_nums: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``in_proj`` of the codes, zero-padded per image to the longest, + ``pos_embed`` by position in each image's
        code sequence.

        Args:
            codes, token_nums: see :meth:`reconstruct_features`.

        Returns:
            padded (B, max n_i, dim) (padding rows hold only the position embedding, as official) and mask
            (B, max n_i), 1 at codes, 0 at padding, in the model dtype.

        Raises:
            ValueError: see :meth:`reconstruct_features`.
        """
        self._check_codes(codes)
        counts = self._token_nums(token_nums, codes.shape[0])
        x = self.in_proj(codes.to(self.in_proj.weight.dtype))
        longest = max(counts)
        padded = nn.utils.rnn.pad_sequence(list(torch.split(x, counts)), batch_first=True)  # (B, longest, dim)
        mask = torch.arange(longest, device=x.device)[None] < torch.tensor(counts, device=x.device)[:, None]
        return padded + self.pos_embed[:, :longest], mask.to(x.dtype)

    def reconstruct_features(self, codes: torch.Tensor, token_nums: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The reconstructed EVA features (``visual_rec``).

        Args:
            codes: (sum n_i, in_channels) quantised code vectors of all images, concatenated in order.
            token_nums: (B,) code count n_i of each image, 1 <= n_i <= num_queries.

        Returns:
            (B, num_queries, decoder_out_dim) = (B, 256, 1408) at paper size.

        Raises:
            ValueError: wrong codes shape or dtype; a count above num_queries (256) or below 1; counts that do not
                sum to the number of codes.
        """
        padded, mask = self.embed_codes(codes, token_nums)
        bias = ((1.0 - mask) * MASK_VALUE)[:, None, None, :]
        queries = self.query_embed.expand(padded.shape[0], -1, -1)
        for block in self.blocks:
            queries = block(queries, padded, bias)
        return self.decode_task_layer(self.norm(queries))

    def condition(self, visual_rec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 256, 1408) reconstructed features -> (prompt_embeds (B, 256, 2048), pooled (B, 1280)), the U-Net's
        ``encoder_hidden_states`` and ``text_embeds``."""
        prompt = torch.cat([self.unet_proj_1(visual_rec), self.unet_proj_2(visual_rec)], dim=-1)
        return prompt, self.unet_attnpool(visual_rec)

    def forward(self, codes: torch.Tensor, token_nums: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes -> U-Net conditioning, as the official ``forward(x, token_num)``.

        Args:
            codes: (sum n_i, in_channels) quantised code vectors (codebook rows), images concatenated.
            token_nums: (B,) code count of each image.

        Returns:
            prompt_embeds (B, num_queries, sum(unet_proj_dims)) = (B, 256, 2048) and pooled (B, pooled_dim) = (B, 1280).

        Raises:
            ValueError: see :meth:`reconstruct_features`.
        """
        return self.condition(self.reconstruct_features(codes, token_nums))

    def codes_of(self, code_ids: Sequence[torch.Tensor], codebook: torch.Tensor | nn.Embedding) -> tuple[torch.Tensor, list[int]]:
        """Code ids per image -> (codes (sum n_i, in_channels), token_nums): the codebook rows as stored (not
        l2-normalised), as the official ``generate_image_embeds``.

        Args:
            code_ids: list of (n_i,) integer code ids in 0..n_code-1 (LM ids minus 32002).
            codebook: (n_code, in_channels) codebook weight, or the ``nn.Embedding`` holding it.

        Raises:
            ValueError: a codebook of the wrong shape, ids that are not 1-D integer tensors or lie outside
                0..n_code-1 (the image and the offending id named), an empty list.
        """
        weight = codebook.weight if isinstance(codebook, nn.Embedding) else codebook
        d = self.config.in_channels
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.shape[1] != d or not weight.is_floating_point():
            raise ValueError(f"codebook must be a floating-point tensor of shape (n_code, {d}), got {_describe(weight)}")
        if isinstance(code_ids, torch.Tensor) or not len(code_ids):
            raise ValueError(f"code_ids must be a non-empty list of (n_i,) integer tensors, one per image, got {_describe(code_ids)}")
        n_code = weight.shape[0]
        for i, ids in enumerate(code_ids):
            if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise ValueError(f"code_ids[{i}] must be a 1-D integer tensor (n_i,), got {_describe(ids)}")
            bad = (ids < 0) | (ids >= n_code)
            if bool(bad.any()):
                raise ValueError(f"code_ids[{i}] holds id {int(ids[bad][0])} outside the codebook's 0..{n_code - 1} "
                                 "(LM ids need the 32002 offset removed)")
        counts = [int(ids.numel()) for ids in code_ids]
        ids = torch.cat([ids.to(device=weight.device, dtype=torch.long) for ids in code_ids])
        return weight[ids].to(self.in_proj.weight.dtype), counts

    def decode_ids(self, code_ids: Sequence[torch.Tensor], codebook: torch.Tensor | nn.Embedding
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Code ids per image -> (prompt_embeds (B, 256, 2048), pooled (B, 1280)); see :meth:`codes_of`."""
        codes, counts = self.codes_of(code_ids, codebook)
        return self(codes, counts)


# ---- weights ---------------------------------------------------------------------------------------
def _official_file(path: Path) -> Path:
    """A folder's ``highres_tokenizer_decoder.bin``, also inside ``visual_tokenizer/`` (a Video-LaVIT root)."""
    nested = path / OFFICIAL_SUBFOLDER / KNOWN_WEIGHTS[WEIGHTS_KEY].name
    return nested if path.is_dir() and nested.is_file() else path


def read_keyframe_decoder_state(source: str | os.PathLike | Mapping[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """The decoder's tensors (prefixes such as ``model.`` removed) and a name of the source for messages.

    Args:
        source: a state dict; the official ``highres_tokenizer_decoder.bin``, a ``.safetensors`` file or a Lightning
            checkpoint; a folder holding the file (or a Video-LaVIT root with ``visual_tokenizer/``); None:
            ``$LAVIT_WEIGHTS_DIR/highres_tokenizer_decoder.bin``.

    Raises:
        FileNotFoundError: the file is missing (the message names it and where to obtain it).
        lavit.weights.WeightsError: empty, corrupt or unsafe files (pickles load with ``weights_only=True``),
            non-tensor or non-finite values.
    """
    if isinstance(source, Mapping):
        state, name = state_dict_of(source, "state dict"), "state dict"
        check_finite(state, name)
    else:
        path = resolve_weights(WEIGHTS_KEY, None if source is None else _official_file(Path(source).expanduser()))
        state, name = read_state_dict(path), str(path)
    return strip_prefix(state, ANCHOR), name


def load_keyframe_decoder_weights(model: KeyframeFeatureDecoder,
                                  source: str | os.PathLike | Mapping[str, torch.Tensor] | None = None) -> KeyframeFeatureDecoder:
    """Load ``source`` (see :func:`read_keyframe_decoder_state`) strictly into ``model``; returns ``model``.

    Raises:
        FileNotFoundError, lavit.weights.WeightsError: see :func:`read_keyframe_decoder_state`.
        lavit.weights.WeightsMismatchError: every missing, unexpected or mis-shaped key named.
    """
    state, name = read_keyframe_decoder_state(source)
    load_state_dict_strict(model, state, name)
    return model


def load_keyframe_decoder(source: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
                          config: KeyframeDecoderConfig | str | Mapping[str, Any] | None = "paper") -> KeyframeFeatureDecoder:
    """A :class:`KeyframeFeatureDecoder` of ``config`` (a config, preset name or mapping; default the paper's) with
    the weights of ``source`` loaded strictly, in eval mode."""
    model = KeyframeFeatureDecoder(KeyframeDecoderConfig.coerce(config))
    return load_keyframe_decoder_weights(model, source).eval()
