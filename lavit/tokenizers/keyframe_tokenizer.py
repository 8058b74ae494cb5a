"""The LaVIT keyframe (visual) tokenizer: EVA patch features -> kept tokens -> codebook ids.

``(B, 256, 1408)`` EVA-CLIP patch features (last block, no final norm, CLS dropped) -> token selector
(``token_predictor``: keep / drop per patch) -> token merger (``causal_encoder``: causal self-attention
among kept tokens, cross-attention to the dropped ones, soft-policy masking) -> kept tokens in raster order
-> ``encode_task_layer`` (1408-Tanh-1408-32) -> l2-normalised nearest code of 16384 (``quantize``). The
understanding path projects the kept merged tokens by ``vit_proj`` to 4096 instead of quantising.
Module and parameter names equal the official ``DynamicVisualTokenizer`` (reference/
official_lm_and_keyframe_tokenizer.md §1; visual_tokenizer_state_dict.tsv), so its weights load strictly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavit.modules.spatiotemporal import Mlp
from lavit.tokenizers.keyframe_config import ATTENTIONS, SELECTIONS, KeyframeTokenizerConfig
from lavit.tokenizers.quantizer import NormEMAQuantizer

__all__ = ["CausalFuserBlock", "KeyframeTokenizer", "KeyframeTokenizerConfig", "KeyframeTokenizerOutput", "TokenCausalAttention",
           "TokenCrossAttention", "TokenMerger", "TokenSelector", "policy_attention", "soft_policy_softmax"]


def soft_policy_softmax(scores: torch.Tensor, policy: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The official ``softmax_with_policy``: (B, H, Nq, Nk) scores, policy broadcastable to them (1 = the key
    is visible) -> attention weights ``a = exp(s - rowmax s) * policy; (a + eps/Nk) / (sum_k a + eps)`` in
    float32, returned in the scores' dtype. A row without visible keys becomes uniform (1/Nk)."""
    n = scores.shape[-1]
    a = (scores - scores.amax(-1, keepdim=True)).float().exp() * policy.float()
    return ((a + eps / n) / (a.sum(-1, keepdim=True) + eps)).to(scores.dtype)


def policy_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, policy: torch.Tensor, scale: float, eps: float,
                     attention: str = "exact") -> torch.Tensor:
    """Soft-policy attention: q (B, H, Nq, hd), k / v (B, H, Nk, hd), policy broadcastable to (B, H, Nq, Nk) ->
    (B, H, Nq, hd).

    ``"exact"``: ``soft_policy_softmax(q k^T * scale) @ v``, the official computation (parity). ``"sdpa"``:
    ``F.scaled_dot_product_attention`` with the additive float mask ``log(policy)``, i.e. ``softmax`` over the
    visible keys without the ``eps`` terms; a row without visible keys returns the mean of ``v`` (the exact path's
    uniform row). The two differ by about ``eps / sum_k a``, large only where a row's visible keys score far below
    its maximum over all keys, masked ones included (benchmarks/keyframe_tokenizer.py: up to 8e-3 for q, k ~ N(0, 1)
    at paper size with 2 of 256 patches kept; merged features within 3.4e-5 on the tiny parity file). The mask has
    no useful gradient, so where the policy carries one (the straight-through Gumbel keep of training) the exact
    path runs whatever ``attention`` says.
    """
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if attention == "exact" or (policy.requires_grad and torch.is_grad_enabled()):
        return soft_policy_softmax((q @ k.transpose(-2, -1)) * scale, policy, eps) @ v
    visible = policy > 0
    empty = ~visible.any(-1, keepdim=True)  # (..., Nq, 1)
    mask = torch.where(visible | empty, policy.clamp_min(torch.finfo(policy.dtype).tiny).log(), float("-inf")).to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return torch.where(empty, v.mean(-2, keepdim=True), out)  # no host sync on CUDA


class TokenSelector(nn.Module):
    """The official ``TokenPredictor``: (B, N, D) features, (B, N, 1) policy -> (B, N, 2) log-probabilities,
    class 0 = keep. Local half of the channels per token, global half = policy-weighted mean over tokens."""

    def __init__(self, dim: int = 1408, eps: float = 1e-5):
        super().__init__()
        self.in_conv = nn.Sequential(nn.LayerNorm(dim, eps=eps), nn.Linear(dim, dim), nn.GELU())
        self.out_conv = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim // 4), nn.GELU(),
                                      nn.Linear(dim // 4, 2), nn.LogSoftmax(dim=-1))

    def forward(self, x: torch.Tensor, policy: torch.Tensor | None = None) -> torch.Tensor:
        x = self.in_conv(x)
        b, n, c = x.shape
        if policy is None:
            policy = x.new_ones(b, n, 1)
        local = x[..., : c // 2]
        pooled = (x[..., c // 2:] * policy).sum(1, keepdim=True) / policy.sum(1, keepdim=True)
        return self.out_conv(torch.cat([local, pooled.expand(b, n, c // 2)], dim=-1))


class TokenCausalAttention(nn.Module):
    """Self-attention in which query i sees key j iff j <= i and (keep_j or j == i); soft-policy masking."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, attention: str = "exact"):
        super().__init__()
        self.num_heads, self.scale, self.eps, self.attention = num_heads, (dim // num_heads) ** -0.5, eps, attention
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), keep (B, N) in [0, 1] (1 = kept; straight-through values keep their gradient)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        policy = keep.reshape(b, 1, 1, n).to(x.dtype)
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        policy = (policy + (1 - policy) * eye) * torch.ones(n, n, dtype=x.dtype, device=x.device).tril()
        out = policy_attention(q, k, v, policy, self.scale, self.eps, self.attention)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TokenCrossAttention(nn.Module):
    """Cross-attention: queries from x, keys / values from ``x_origin``; every query sees only the dropped keys."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, attention: str = "exact"):
        super().__init__()
        self.num_heads, self.scale, self.eps, self.attention = num_heads, (dim // num_heads) ** -0.5, eps, attention
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, x_origin: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, N, D) queries, x_origin (B, M, D) keys / values, keep (B, M) in [0, 1]."""
        b, n, d = x.shape
        m, h = x_origin.shape[1], self.num_heads
        q = self.query(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.key(x_origin).reshape(b, m, h, d // h).transpose(1, 2)
        v = self.value(x_origin).reshape(b, m, h, d // h).transpose(1, 2)
        policy = (1 - keep.to(x.dtype)).reshape(b, 1, 1, m)
        out = policy_attention(q, k, v, policy, self.scale, self.eps, self.attention)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CausalFuserBlock(nn.Module):
    """x += causal(norm0 x); x += cross(norm1 x, x_origin); x += mlp(norm2 x). (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, ln_eps: float = 1e-5, policy_eps: float = 1e-6,
                 attention: str = "exact"):
        super().__init__()
        self.norm0 = nn.LayerNorm(dim, eps=ln_eps)
        self.token_causal_attn = TokenCausalAttention(dim, num_heads, policy_eps, attention)
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.token_cross_attn = TokenCrossAttention(dim, num_heads, policy_eps, attention)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor, x_origin: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.token_causal_attn(self.norm0(x), keep)
        x = x + self.token_cross_attn(self.norm1(x), x_origin, keep)
        return x + self.mlp(self.norm2(x))


class TokenMerger(nn.Module):
    """The official ``TokenMerger`` (``causal_encoder``): (B, N, D) raw features, (B, N) keep -> (B, N, D).

    The residual stream starts from the raw features of all N positions (dropped ones stay in the tensor);
    ``ln_vision(x)`` is the cross-attention's key / value source; a final ``norm``. ``attention``: see
    :func:`policy_attention`."""

    def __init__(self, dim: int = 1408, depth: int = 12, num_heads: int = 16, mlp_hidden: int = 6144, ln_eps: float = 1e-5,
                 policy_eps: float = 1e-6, attention: str = "exact"):
        super().__init__()
        self.ln_vision = nn.LayerNorm(dim, eps=ln_eps)
        self.blocks = nn.ModuleList(CausalFuserBlock(dim, num_heads, mlp_hidden, ln_eps, policy_eps, attention)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=ln_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x_origin = self.ln_vision(x)
        for block in self.blocks:
            x = block(x, x_origin, keep)
        return self.norm(x)


@dataclass
class KeyframeTokenizerOutput:
    """What ``KeyframeTokenizer.encode`` computes for B images of N patches, K kept tokens in all.

    pred_score: (B, N, 2) selector log-probabilities (class 0 = keep). keep: (B, N) float policy (hard
    0 / 1; with Gumbel selection it carries the straight-through gradient). merged: (B, N, D) merger output.
    token_nums: (B,) int64 kept tokens per image. to_quantizer: (K, code_dim) ``encode_task_layer`` output of
    the kept tokens (raster order, images concatenated). quantized: (K, code_dim) codebook rows.
    code_ids: (K,) int64."""

    pred_score: torch.Tensor
    keep: torch.Tensor
    merged: torch.Tensor
    token_nums: torch.Tensor
    to_quantizer: torch.Tensor
    quantized: torch.Tensor
    code_ids: torch.Tensor

    def per_image(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Split a (K, ...) tensor into the B images' (n_i, ...) parts."""
        return list(values.split(self.token_nums.tolist()))


class KeyframeTokenizer(nn.Module):
    """Keyframe tokenizer built from a :class:`KeyframeTokenizerConfig` (default: the paper size, 409,819,394
    parameters without the encoder).

    Args:
        config: a config, a preset name (``"paper"``, ``"tiny"``) or a mapping.
        encoder: the frozen EVA-CLIP encoder module (``images (B, 3, H, W) -> (B, 1 + N, D)`` or ``(B, N, D)``);
            None: features only (``tokenize_features``, ``encode_features`` on features). Registered as
            ``encoder``, so a state dict with ``encoder.*`` (the official layout) loads into it.

    Attributes:
        config, num_patches, width, selection (the default of ``config.selection``).
    """

    def __init__(self, config: KeyframeTokenizerConfig | str | None = None, encoder: nn.Module | None = None):
        super().__init__()
        c = KeyframeTokenizerConfig.coerce(config)
        self.config = c
        self.num_patches, self.width, self.selection = c.num_patches, c.width, c.selection
        self.encoder = encoder
        if encoder is not None:
            encoder.requires_grad_(False)
            encoder.eval()
        self.token_predictor = TokenSelector(c.width, c.ln_eps)
        self.causal_encoder = TokenMerger(c.width, c.layers, c.heads, c.mlp_hidden, c.ln_eps, c.policy_eps, c.attention)
        self.quantize = NormEMAQuantizer(c.n_code, c.code_dim, c.decay, c.commitment_weight, c.kmeans_init,
                                         dead_code_steps=c.dead_code_steps, restart_buffer=c.restart_buffer)
        self.encode_task_layer = nn.Sequential(nn.Linear(c.width, c.width), nn.Tanh(), nn.Linear(c.width, c.code_dim))
        self.vit_proj = nn.Linear(c.width, c.llm_embed_dim)

    @classmethod
    def with_encoder(cls, config: KeyframeTokenizerConfig | str | None = None) -> "KeyframeTokenizer":
        """A tokenizer whose ``encoder`` is ``EVAVisionEncoder(EVAVisionConfig.coerce(config.encoder))``."""
        from lavit.tokenizers.eva_vit import EVAVisionConfig, EVAVisionEncoder  # a separate module (issue 12)

        c = KeyframeTokenizerConfig.coerce(config)
        if c.encoder is None:
            raise ValueError("config.encoder is None: name an EVA preset or give its fields")
        return cls(c, encoder=EVAVisionEncoder(EVAVisionConfig.coerce(c.encoder)))

    def train(self, mode: bool = True) -> "KeyframeTokenizer":
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()  # frozen: no dropout / drop-path whatever the tokenizer's mode
        return self

    # ---- input checks ----------------------------------------------------------------------
    def check_features(self, features: torch.Tensor) -> None:
        """Raise a ValueError naming the expected (B, num_patches, width) finite float features."""
        n, d = self.num_patches, self.width
        if (not isinstance(features, torch.Tensor) or features.ndim != 3 or tuple(features.shape[1:]) != (n, d)
                or not features.is_floating_point()):
            got = f"{tuple(features.shape)} {features.dtype}" if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be a floating-point tensor of shape (B, {n}, {d}) (EVA patch features, CLS "
                             f"dropped), got {got}")
        if not bool(torch.isfinite(features).all()):
            raise ValueError(f"features hold {int((~torch.isfinite(features)).sum())} non-finite values")

    def check_images(self, images: torch.Tensor) -> None:
        """Raise a ValueError naming the expected (B, 3, img_size, img_size) float images."""
        s = self.config.img_size
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s) or not images.is_floating_point():
            got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a floating-point tensor of shape (B, 3, {s}, {s}) (CLIP-normalised), got {got}")

    def check_code_ids(self, code_ids: torch.Tensor) -> None:
        """Raise a ValueError unless ``code_ids`` is an integer tensor with values in [0, n_code)."""
        n = self.config.n_code
        if not isinstance(code_ids, torch.Tensor) or code_ids.is_floating_point() or code_ids.dtype == torch.bool:
            got = code_ids.dtype if isinstance(code_ids, torch.Tensor) else type(code_ids).__name__
            raise ValueError(f"code ids must be an integer tensor, got {got}")
        if code_ids.numel() and (int(code_ids.min()) < 0 or int(code_ids.max()) >= n):
            raise ValueError(f"code ids must lie in [0, {n}), got [{int(code_ids.min())}, {int(code_ids.max())}]")

    # ---- features ----------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) CLIP-normalised images -> (B, N, D) patch features of the frozen encoder (CLS dropped)."""
        if self.encoder is None:
            raise RuntimeError("this KeyframeTokenizer has no encoder: pass EVA patch features to tokenize_features / "
                               "encode_features, or build it with encoder=<EVA encoder>")
        self.check_images(images)
        with torch.no_grad():
            features = self.encoder(images)
        if features.ndim == 3 and features.shape[1] == self.num_patches + 1:
            features = features[:, 1:]
        return features

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encode_images(x) if isinstance(x, torch.Tensor) and x.ndim == 4 else x
        self.check_features(features)
        return features.to(self.vit_proj.weight.dtype)

    # ---- selection ---------------------------------------------------------------------------
    def selector_scores(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, D) features -> (B, N, 2) selector log-probabilities (class 0 = keep)."""
        self.check_features(features)
        return self.token_predictor(features, features.new_ones(*features.shape[:2], 1))

    def keep_policy(self, pred_score: torch.Tensor, selection: str | None = None, generator: torch.Generator | None = None,
                    exponential_draws: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, 2) log-probabilities -> (B, N) float keep policy (1 = keep).

        ``"gumbel"``: the official ``F.gumbel_softmax(pred, tau=1, hard=True)[..., 0]``: E ~ Exponential(1)
        from ``generator`` (or ``exponential_draws``, (B, N, 2), to replay stored draws), g = -log E, keep =
        argmax(pred + g) == 0; straight-through gradient. ``"deterministic"``: pred[..., 0] > pred[..., 1].
        """
        selection = self.selection if selection is None else selection
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if selection == "deterministic":
            if exponential_draws is not None:
                raise ValueError("exponential_draws only apply to selection='gumbel'")
            return (pred_score[..., 0] > pred_score[..., 1]).to(pred_score.dtype)
        if exponential_draws is None:
            exponential_draws = torch.empty_like(pred_score).exponential_(generator=generator)
        elif tuple(exponential_draws.shape) != tuple(pred_score.shape):
            raise ValueError(f"exponential_draws must have the selector's shape {tuple(pred_score.shape)}, "
                             f"got {tuple(exponential_draws.shape)}")
        soft = (pred_score - exponential_draws.to(pred_score).log()).softmax(-1)
        hard = F.one_hot(soft.argmax(-1), 2).to(soft.dtype)
        return (hard - soft.detach() + soft)[..., 0]

    @torch.no_grad()
    def select(self, features: torch.Tensor, selection: str | None = None, generator: torch.Generator | None = None,
               exponential_draws: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D) features -> (B, N) bool keep mask (see ``keep_policy``)."""
        features = self._features(features)
        return self.keep_policy(self.selector_scores(features), selection, generator, exponential_draws) > 0.5

    # ---- tokenization ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, selection: str | None = None, generator: torch.Generator | None = None,
               exponential_draws: torch.Tensor | None = None) -> KeyframeTokenizerOutput:
        """(B, N, D) features or (B, 3, H, W) images -> selector, merger and quantiser outputs (see
        :class:`KeyframeTokenizerOutput`). Differentiable through selector (Gumbel), merger and task layer."""
        features = self._features(x)
        pred = self.selector_scores(features)
        keep = self.keep_policy(pred, selection, generator, exponential_draws)
        merged = self.causal_encoder(features, keep)
        kept = keep > 0.5
        z = self.encode_task_layer(merged[kept])
        quantized, code_ids = self.quantize.tokenize(z)  # float32
        return KeyframeTokenizerOutput(pred, keep, merged, kept.sum(1), z, quantized, code_ids)

    @torch.no_grad()
    def tokenize_features(self, features: torch.Tensor, selection: str | None = None, generator: torch.Generator | None = None,
                          exponential_draws: torch.Tensor | None = None) -> list[torch.Tensor]:
        """(B, N, D) EVA patch features -> B tensors (n_i,) int64 of code ids (0..n_code-1), kept tokens in
        raster order."""
        self.check_features(features)
        out = self.encode(features, selection, generator, exponential_draws)
        return out.per_image(out.code_ids)

    @torch.no_grad()
    def tokenize(self, images: torch.Tensor, selection: str | None = None, generator: torch.Generator | None = None,
                 exponential_draws: torch.Tensor | None = None) -> list[torch.Tensor]:
        """(B, 3, 224, 224) CLIP-normalised images -> B tensors (n_i,) int64 of code ids (through ``encoder``)."""
        self.check_images(images)
        return self.tokenize_features(self.encode_images(images), selection, generator, exponential_draws)

    def encode_features(self, x: torch.Tensor, selection: str | None = None, generator: torch.Generator | None = None,
                        exponential_draws: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The understanding path: (B, N, D) features or (B, 3, H, W) images -> B tensors (n_i, llm_embed_dim)
        of ``vit_proj`` on the kept merged tokens (continuous, no quantiser). Encoder and selector run
        without gradient, merger and ``vit_proj`` with it (they are trained with the LM)."""
        features = self._features(x)
        with torch.no_grad():
            keep = self.keep_policy(self.selector_scores(features), selection, generator, exponential_draws)
        kept = keep > 0.5
        projected = self.vit_proj(self.causal_encoder(features, keep))[kept]
        return list(projected.split(kept.sum(1).tolist()))

    # ---- LM ids ------------------------------------------------------------------------------
    def to_lm_ids(self, code_ids: torch.Tensor | Sequence[torch.Tensor], add_special: bool = True):
        """(n,) code ids -> LM ids ``code + 32002``, wrapped in [IMG] 32000 ... [/IMG] 32001 when ``add_special``;
        a list of such tensors -> a list."""
        if isinstance(code_ids, (list, tuple)):
            return [self.to_lm_ids(ids, add_special) for ids in code_ids]
        self.check_code_ids(code_ids)
        c = self.config
        ids = code_ids.long() + c.llm_code_offset
        if add_special:
            start, end = ids.new_tensor([c.img_start]), ids.new_tensor([c.img_end])
            ids = torch.cat([start, ids, end])
        return ids

    def from_lm_ids(self, lm_ids: torch.Tensor | Sequence[torch.Tensor]):
        """The inverse of ``to_lm_ids``: (n,) LM ids, optionally starting with [IMG] and ending with [/IMG] ->
        (n,) code ids. Any other id outside the visual range is a ValueError."""
        if isinstance(lm_ids, (list, tuple)):
            return [self.from_lm_ids(ids) for ids in lm_ids]
        c = self.config
        if not isinstance(lm_ids, torch.Tensor) or lm_ids.ndim != 1 or lm_ids.is_floating_point() or lm_ids.dtype == torch.bool:
            got = f"{tuple(lm_ids.shape)} {lm_ids.dtype}" if isinstance(lm_ids, torch.Tensor) else type(lm_ids).__name__
            raise ValueError(f"LM ids must be a 1-D integer tensor, got {got}")
        ids = lm_ids.long()
        if len(ids) and int(ids[0]) == c.img_start:
            ids = ids[1:]
        if len(ids) and int(ids[-1]) == c.img_end:
            ids = ids[:-1]
        lo, hi = c.llm_code_offset, c.llm_code_offset + c.n_code - 1
        outside = (ids < lo) | (ids > hi)
        if bool(outside.any()):
            bad = ids[outside][:5].tolist()
            raise ValueError(f"LM ids outside the visual range {lo}..{hi} (after an optional leading [IMG] {c.img_start} "
                             f"and trailing [/IMG] {c.img_end}): {bad}")
        return ids - lo
