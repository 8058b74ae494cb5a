"""Logits processors of the multimodal LM: the media grammar and classifier-free guidance.

Both are ``transformers.LogitsProcessor`` s, so they run inside ``model.generate`` (batched, left padding, KV cache).
``generate`` applies custom processors before its temperature / top-k / top-p warpers, which is the official order
(HF 4.33.2): guidance, then the constraint, then sampling.
"""

from __future__ import annotations

import inspect
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor

from lavit.lm.vocabulary import MultimodalVocabulary

def _cache_argument(model) -> str:
    """The KV-cache keyword of the model's forward: ``cache`` (transformers >= 5.x) or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


Mode = Literal["video", "image", "text", "any"]

# Grammar states of a row (rows of the mask table).
_OUTSIDE, _IMG_OPEN, _IMG_CAN_CLOSE, _IMG_MUST_CLOSE, _AFTER_IMG, _MOV_OPEN, _MOV_MUST_CLOSE = range(7)


class MediaGrammarLogitsProcessor(LogitsProcessor):
    """Sets to -inf every id the grammar forbids next, per row, from the row's ids so far (prompt included).

    Inside ``[IMG]``: only visual codes, and ``[/IMG]`` once ``min_keyframe_tokens`` codes are out; after
    ``max_keyframe_tokens`` codes ``[/IMG]`` is forced. Inside ``[MOV]``: exactly ``motion_tokens_per_clip`` motion codes,
    then ``[/MOV]`` is forced. Outside segments, ``mode`` says what may come: "text" = text ids only (answers never emit a
    media id), "image" = text or ``[IMG]``, "video" = ``[IMG]`` or eos and after a keyframe's ``[/IMG]`` its ``[MOV]``,
    "any" = text, images and videos. The state is recomputed from ``input_ids`` (vectorised: the last position of each
    marker), so the processor holds no per-call state and works for prompts that end inside a segment.

    Args:
        vocab: the id layout.
        mode: what may appear outside media segments (above).
        min_keyframe_tokens, max_keyframe_tokens: bounds of a keyframe's code count (official: min 20, max 500 new tokens).
    """

    def __init__(self, vocab: MultimodalVocabulary, mode: Mode = "video", min_keyframe_tokens: int = 1,
                 max_keyframe_tokens: int = 500):
        if mode not in ("video", "image", "text", "any"):
            raise ValueError(f"mode must be 'video', 'image', 'text' or 'any', got {mode!r}")
        if not 1 <= min_keyframe_tokens <= max_keyframe_tokens:
            raise ValueError(f"need 1 <= min_keyframe_tokens <= max_keyframe_tokens, got {min_keyframe_tokens}, {max_keyframe_tokens}")
        self.vocab, self.mode = vocab, mode
        self.min_keyframe_tokens, self.max_keyframe_tokens = min_keyframe_tokens, max_keyframe_tokens
        self._table: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None

    def allowed_table(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``(7, vocab.size)`` bool: the ids allowed in each grammar state."""
        if self._table is None or self._table.device != torch.device(device):
            v = self.vocab
            table = torch.zeros(7, v.size, dtype=torch.bool)
            text = slice(0, v.text_size)
            if self.mode in ("text", "image", "any"):
                table[_OUTSIDE, text] = True
            table[_OUTSIDE, v.eos_id] = True
            if self.mode != "text":
                table[_OUTSIDE, v.img_start] = True
            table[_IMG_OPEN, v.visual_offset:v.mov_start] = True
            table[_IMG_CAN_CLOSE, v.visual_offset:v.mov_start] = True
            table[_IMG_CAN_CLOSE, v.img_end] = True
            table[_IMG_MUST_CLOSE, v.img_end] = True
            if self.mode == "video":
                table[_AFTER_IMG, v.mov_start] = True
            else:
                table[_AFTER_IMG] = table[_OUTSIDE]
                if self.mode == "any":
                    table[_AFTER_IMG, v.mov_start] = True
            table[_MOV_OPEN, v.motion_offset:v.size] = True
            table[_MOV_MUST_CLOSE, v.mov_end] = True
            self._table = table.to(device)
        return self._table

    def states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B,)`` grammar state of the next position (one of the table's rows)."""
        v = self.vocab
        b, length = input_ids.shape
        pos = torch.arange(length, device=input_ids.device).expand(b, length)

        def last(token: int) -> torch.Tensor:
            return torch.where(input_ids == token, pos, -1).amax(1) if length else torch.full((b,), -1, device=input_ids.device)

        img, img_end, mov, mov_end = last(v.img_start), last(v.img_end), last(v.mov_start), last(v.mov_end)
        img_count, mov_count = length - 1 - img, length - 1 - mov
        state = torch.full((b,), _OUTSIDE, dtype=torch.long, device=input_ids.device)
        after_img = (img_end > img) & (img_end > mov) & (img_end > mov_end) & (img_end == length - 1)
        state[after_img] = _AFTER_IMG
        in_img = img > torch.maximum(img_end, mov_end)
        state[in_img & (img_count < self.min_keyframe_tokens)] = _IMG_OPEN
        state[in_img & (img_count >= self.min_keyframe_tokens)] = _IMG_CAN_CLOSE
        state[in_img & (img_count >= self.max_keyframe_tokens)] = _IMG_MUST_CLOSE
        in_mov = mov > torch.maximum(mov_end, img)
        state[in_mov] = _MOV_OPEN
        state[in_mov & (mov_count >= v.motion_tokens_per_clip)] = _MOV_MUST_CLOSE
        return state

    def bias_table(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(7, vocab.size)``: 0 where ``allowed_table`` allows an id, -inf elsewhere."""
        if self._bias is None or self._bias.device != torch.device(device) or self._bias.dtype != dtype:
            allowed = self.allowed_table(device)
            self._bias = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))
        return self._bias

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # Adding a gathered 0 / -inf row is ~4x faster on a CPU than masked_fill with a gathered bool mask (measured
        # (8, 49412): 115 us against 420 us); finite scores and -inf come out the same.
        bias = F.embedding(self.states(input_ids), self.bias_table(scores.device, scores.dtype))
        return scores + bias[:, : scores.shape[-1]]


class ClassifierFreeGuidanceLogitsProcessor(LogitsProcessor):
    """Classifier-free guidance with an unconditional branch of its own (HF 4.33.2 ``UnbatchedClassifierFreeGuidance``
    semantics, which the official code relies on): ``g * (log_softmax(c) - log_softmax(u)) + log_softmax(u)``.

    The unconditional sequence is ``unconditional_ids`` (left-padded, with its mask) or, by default, the lone last id
    of the prompt (official: just [IMG] or [MOV]); it is fed every generated id and keeps its own KV cache. Scores are
    returned as log-probabilities even at ``guidance_scale`` 1 (as HF does). Use one instance per ``generate`` call.
    Unlike transformers' class, a left-padded unconditional batch gets position ids from its mask (the
    "empty_prompt" branch of ``lavit.lm.generation``), and the cache argument is named for the installed version.
    """

    def __init__(self, model, guidance_scale: float, unconditional_ids: torch.Tensor | None = None,
                 unconditional_attention_mask: torch.Tensor | None = None):
        self.model, self.guidance_scale = model, float(guidance_scale)
        self.ids, self.mask = unconditional_ids, unconditional_attention_mask
        self.cache = None

    @torch.no_grad()
    def _unconditional_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            ids = input_ids[:, -1:] if self.ids is None else self.ids.to(input_ids.device)
            self.mask = torch.ones_like(ids) if self.mask is None else self.mask.to(input_ids.device)
        else:
            ids = input_ids[:, -1:]
            self.mask = torch.cat([self.mask, torch.ones_like(ids)], dim=1)
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=positions, use_cache=True,
                         **{_cache_argument(self.model): self.cache})
        self.cache = out.get("cache", None) or out.get("past_key_values", None)
        return out.logits[:, -1].float()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = F.log_softmax(scores, dim=-1)
        if self.guidance_scale == 1:
            return scores
        uncond = F.log_softmax(self._unconditional_logits(input_ids), dim=-1)
        return self.guidance_scale * (scores - uncond) + uncond
