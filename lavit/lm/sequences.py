"""Training sequences of the multimodal LM: one sample = ids + labels; batches = right-padded to the longest.

Pre-training (stage 2) mixes image-text, video-text and text samples; a media sample is ``[bos] media text [eos]``
(media then text: captioning / understanding) or ``[bos] text media [eos]`` (text then media: generation), every
token labelled (next-token loss on all modalities). Sequences are padded per batch, not packed: a video-text sample
is ~230 ids per clip, so the batches' lengths are close and padding wastes little, while packing would need
per-document attention masks to keep samples from attending to each other (SDPA would lose its fused kernels).

Truncation happens only at clip boundaries: a video too long for the context loses trailing clips, never part of
one; what still does not fit raises ``ContextLengthError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from lavit.lm.vocabulary import ImageSegment, MultimodalVocabulary, TextSegment, VideoSegment

IGNORE_INDEX = -100
Order = Literal["media_first", "text_first"]


class ContextLengthError(ValueError):
    """A sample that does not fit the context even after dropping every clip but the first; names both lengths."""


@dataclass(frozen=True)
class TokenSample:
    """``ids`` ``(L,)`` int64 and ``labels`` ``(L,)`` int64 (``IGNORE_INDEX`` where no loss is taken; labels are not
    shifted: position t's label is ids[t], the LM shifts)."""

    ids: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.ids.shape != self.labels.shape or self.ids.ndim != 1:
            raise ValueError(f"ids and labels must be (L,) of one length, got {tuple(self.ids.shape)} and {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.ids)


def pretraining_sample(
    vocab: MultimodalVocabulary,
    text_ids: torch.Tensor | Sequence[int],
    media: ImageSegment | VideoSegment | None = None,
    order: Order = "media_first",
    max_length: int | None = None,
    add_bos: bool = True,
    add_eos: bool = True,
) -> TokenSample:
    """One stage-2 sample: text alone, or an image / video with its text in ``order``; all positions labelled.

    Args:
        text_ids: the text tokenizer's ids (no bos / eos: added here).
        media: the keyframe / motion codes (``VideoSegment`` clips in time order) or None (pure text).
        max_length: the context; a longer video keeps its first clips that fit (at least one), longer text is an error.

    Raises:
        ContextLengthError: the sample does not fit ``max_length`` (text alone, an image, or a one-clip video).
    """
    text = torch.as_tensor(text_ids, dtype=torch.long).reshape(-1)
    head = [torch.tensor([vocab.bos_id])] if add_bos else []
    tail = [torch.tensor([vocab.eos_id])] if add_eos else []

    def build(segment) -> torch.Tensor:
        parts = [vocab.serialize([TextSegment(text)])]
        if segment is not None:
            media_ids = vocab.serialize([segment])
            parts = [media_ids, parts[0]] if order == "media_first" else [parts[0], media_ids]
        return torch.cat(head + parts + tail)

    if order not in ("media_first", "text_first"):
        raise ValueError(f"order must be 'media_first' or 'text_first', got {order!r}")
    ids = build(media)
    if max_length is not None and len(ids) > max_length:
        if isinstance(media, VideoSegment):
            for keep in range(len(media.keyframes) - 1, 0, -1):
                ids = build(VideoSegment(media.keyframes[:keep], media.motion[:keep]))
                if len(ids) <= max_length:
                    break
        if len(ids) > max_length:
            what = {ImageSegment: "image-text", VideoSegment: "video-text (one clip)"}.get(type(media), "text")
            raise ContextLengthError(f"a {what} sample of {len(ids)} tokens does not fit the context of {max_length}")
    return TokenSample(ids, ids.clone())


def collate_padded(samples: Sequence[TokenSample], pad_id: int, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad samples to the longest -> ``{"input_ids": (B, L), "attention_mask": (B, L), "labels": (B, L)}``
    (labels ``IGNORE_INDEX`` on padding).

    Raises:
        ContextLengthError: a sample longer than ``max_length``.
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    length = max(len(s) for s in samples)
    if max_length is not None and length > max_length:
        raise ContextLengthError(f"a sample of {length} tokens is longer than the context of {max_length}")
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    for row, sample in enumerate(samples):
        n = len(sample)
        ids[row, :n], labels[row, :n], mask[row, :n] = sample.ids, sample.labels, 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
