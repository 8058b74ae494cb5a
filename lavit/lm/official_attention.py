"""``attn_implementation="lavit_official"``: transformers 4.33.2's eager Llama attention, for parity runs.

The official release ran on transformers 4.33.2, whose eager attention divides the scores by ``sqrt(head_dim)``;
transformers 5.x multiplies by ``head_dim ** -0.5``. Both are the same maths but round differently in float32, and
guidance (scores x 4 / x 7) makes the difference visible (2.3e-5 on the generation parity file). Registered with
transformers' ``AttentionInterface`` (and the eager additive mask), so ``LlamaForCausalLM(config)`` with
``attn_implementation="lavit_official"`` reproduces the official scores bit for bit; use "sdpa" for anything else.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.models.llama.modeling_llama import repeat_kv

NAME = "lavit_official"


def official_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs):
    """``(B, heads, L, d)`` q / k / v -> ``(B, L, heads, d)`` output and the attention weights (HF 4.33.2 order)."""
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key.transpose(2, 3)) / math.sqrt(query.shape[-1])
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


AttentionInterface.register(NAME, official_eager_attention)
AttentionMaskInterface.register(NAME, eager_mask)
