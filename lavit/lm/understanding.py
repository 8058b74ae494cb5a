"""The understanding input of the multimodal LM (official, LLaVA-style): media spliced in at placeholder ids.

Text ids carry ``IMAGE_PLACEHOLDER`` (-200, ``<image>``) or ``VIDEO_PLACEHOLDER`` (-201, ``<video>``) where a medium
goes; :func:`prepare_understanding_inputs` replaces each placeholder by the medium's embeddings (official
``VideoLaVITLlamaForCausalLM.prepare_inputs_labels_for_multimodal``; ../shared/reference/official_lm_and_keyframe_tokenizer.md
section 3), per clip::

    emb[IMG] ++ keyframe ++ emb[/IMG] ++ (video only) emb[MOV] ++ emb(motion ids + motion_offset) ++ emb[/MOV]

The keyframe part is either continuous (official: ``KeyframeTokenizer.encode_features``, ``vit_proj`` of the kept
merged tokens: :class:`ImageFeatures` / :class:`VideoFeatures`) or discrete (the all-discrete variant: keyframe code ids
through the embedding table, ``lavit.lm.ImageSegment`` / ``VideoSegment``). Motion always enters as discrete ids
through the embedding table. Media positions take ``IGNORE_INDEX`` labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence, Union

import torch
from torch import nn

from lavit.lm.config import MultimodalLMConfig
from lavit.lm.placeholders import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from lavit.lm.sequences import IGNORE_INDEX, ContextLengthError
from lavit.lm.vocabulary import ImageSegment, MultimodalVocabulary, VideoSegment



class UnderstandingInputError(ValueError):
    """Ids and media that do not fit together: a placeholder without its medium (or a medium without a placeholder),
    an image at a ``<video>`` placeholder, ids outside the vocabulary, motion ids outside the codebook, features of
    the wrong width; the message names the sample and the problem."""


@dataclass(frozen=True)
class ImageFeatures:
    """One image for understanding: ``features`` ``(n, hidden_size)`` float, the keyframe tokenizer's
    ``encode_features`` output for it (the kept tokens, continuous)."""

    features: torch.Tensor


@dataclass(frozen=True)
class VideoFeatures:
    """Clips in time order: ``keyframes[k]`` ``(n_k, hidden_size)`` float keyframe features of clip k
    (``encode_features``) and ``motion`` ``(K, motion_tokens_per_clip)`` int64 motion code ids (0..motion_codes-1, the
    motion tokenizer's ``tokenize`` output)."""

    keyframes: list[torch.Tensor]
    motion: torch.Tensor | list[torch.Tensor]


Media = Union[ImageFeatures, VideoFeatures, ImageSegment, VideoSegment]


def image_features(keyframe_tokenizer, x: torch.Tensor, **selection) -> list[ImageFeatures]:
    """``B`` images (``(B, 3, H, W)`` or EVA features ``(B, N, D)``) -> ``B`` :class:`ImageFeatures`; ``selection``
    goes to ``KeyframeTokenizer.encode_features`` (``selection``, ``generator``, ``exponential_draws``)."""
    return [ImageFeatures(f) for f in keyframe_tokenizer.encode_features(x, **selection)]


def video_features(keyframe_tokenizer, keyframes: torch.Tensor, motion_ids: torch.Tensor, **selection) -> VideoFeatures:
    """One video: its ``K`` clips' keyframes (``(K, 3, H, W)`` or EVA features ``(K, N, D)``) and motion code ids
    ``(K, motion_tokens_per_clip)`` -> :class:`VideoFeatures` (``selection`` as in :func:`image_features`)."""
    return VideoFeatures(keyframe_tokenizer.encode_features(keyframes, **selection), motion_ids)


def _motion_ids(vocab: MultimodalVocabulary, clip: torch.Tensor, where: str) -> torch.Tensor:
    clip = torch.as_tensor(clip)
    if clip.is_floating_point() or clip.dtype == torch.bool:
        raise UnderstandingInputError(f"{where}: motion code ids must be integers, got {clip.dtype}")
    clip = clip.long().reshape(-1)
    bad = (clip < 0) | (clip >= vocab.motion_codes)
    if bool(bad.any()):
        raise UnderstandingInputError(f"{where}: motion code ids must be in 0..{vocab.motion_codes - 1}, "
                                      f"got {clip[bad][:5].tolist()}")
    if len(clip) != vocab.motion_tokens_per_clip:
        raise UnderstandingInputError(f"{where}: a clip has exactly {vocab.motion_tokens_per_clip} motion codes, got {len(clip)}")
    return clip


def _visual_codes(vocab: MultimodalVocabulary, codes: torch.Tensor, where: str) -> torch.Tensor:
    codes = torch.as_tensor(codes)
    if codes.is_floating_point() or codes.dtype == torch.bool:
        raise UnderstandingInputError(f"{where}: keyframe code ids must be integers, got {codes.dtype} (continuous "
                                      "features go in ImageFeatures / VideoFeatures)")
    codes = codes.long().reshape(-1)
    bad = (codes < 0) | (codes >= vocab.visual_codes)
    if bool(bad.any()):
        raise UnderstandingInputError(f"{where}: keyframe code ids must be in 0..{vocab.visual_codes - 1}, "
                                      f"got {codes[bad][:5].tolist()}")
    return codes


def embed_media(medium: Media, embed_tokens: nn.Module, vocab: MultimodalVocabulary, where: str = "medium") -> torch.Tensor:
    """One medium -> its spliced embeddings ``(n, hidden_size)`` (see the module docstring), in the embedding's dtype."""
    weight = embed_tokens.weight
    hidden = weight.shape[1]

    def ids(*values: int | torch.Tensor) -> torch.Tensor:
        parts = [v.reshape(-1) if isinstance(v, torch.Tensor) else torch.tensor([v]) for v in values]
        return embed_tokens(torch.cat(parts).to(weight.device))

    def keyframe(k, index: str) -> torch.Tensor:
        if isinstance(medium, (ImageFeatures, VideoFeatures)):
            if not isinstance(k, torch.Tensor) or not k.is_floating_point() or k.ndim != 2 or k.shape[1] != hidden:
                got = f"{tuple(k.shape)} {k.dtype}" if isinstance(k, torch.Tensor) else type(k).__name__
                raise UnderstandingInputError(f"{where}{index}: keyframe features must be a float (n, {hidden}) tensor "
                                              f"(the LM's hidden size), got {got}")
            return torch.cat([ids(vocab.img_start), k.to(weight), ids(vocab.img_end)])
        return ids(vocab.img_start, _visual_codes(vocab, k, f"{where}{index}") + vocab.visual_offset, vocab.img_end)

    if isinstance(medium, (ImageFeatures, ImageSegment)):
        return keyframe(medium.features if isinstance(medium, ImageFeatures) else medium.codes, "")
    if isinstance(medium, (VideoFeatures, VideoSegment)):
        motion = medium.motion
        if len(medium.keyframes) == 0 or len(medium.keyframes) != len(motion):
            raise UnderstandingInputError(f"{where}: a video needs one keyframe per clip of motion and at least one clip, "
                                          f"got {len(medium.keyframes)} keyframes and {len(motion)} motion clips")
        parts = []
        for k, (frame, clip) in enumerate(zip(medium.keyframes, motion)):
            clip = _motion_ids(vocab, clip, f"{where} clip {k}")
            parts += [keyframe(frame, f" clip {k}"), ids(vocab.mov_start, clip + vocab.motion_offset, vocab.mov_end)]
        return torch.cat(parts)
    raise TypeError(f"{where}: expected ImageFeatures, VideoFeatures, ImageSegment or VideoSegment, got {type(medium).__name__}")


def _rows(input_ids, attention_mask) -> list[torch.Tensor]:
    if isinstance(input_ids, torch.Tensor) and input_ids.ndim == 2:
        if attention_mask is None:
            return list(input_ids)
        return [row[mask.bool()] for row, mask in zip(input_ids, attention_mask)]
    if attention_mask is not None:
        raise ValueError("attention_mask only applies to a (B, L) input_ids tensor")
    return [torch.as_tensor(row, dtype=torch.long).reshape(-1) for row in input_ids]


def prepare_understanding_inputs(
    input_ids: torch.Tensor | Sequence[torch.Tensor | Sequence[int]],
    embed_tokens: nn.Module,
    media: Sequence[Media | Sequence[Media] | None],
    vocab: MultimodalVocabulary | MultimodalLMConfig | None = None,
    labels: torch.Tensor | Sequence[torch.Tensor] | None = None,
    attention_mask: torch.Tensor | None = None,
    padding_side: Literal["right", "left"] = "right",
    pad_id: int | None = None,
    max_length: int | None = None,
) -> dict[str, torch.Tensor | None]:
    """Splice media into a batch of ids at their placeholders and pad -> the LM's ``inputs_embeds``.

    Args:
        input_ids: ``B`` id sequences (a list of ``(L_b,)`` or a ``(B, L)`` tensor, padding dropped by
            ``attention_mask`` if given) of text ids with ``IMAGE_PLACEHOLDER`` / ``VIDEO_PLACEHOLDER`` where media go.
        embed_tokens: the LM's input embedding module (``model.get_input_embeddings()``), ``vocab.size`` rows.
        media: per sample ``None`` (text only), one medium, or a list of media matched to the placeholders in order.
            A medium is :class:`ImageFeatures` / :class:`VideoFeatures` (continuous keyframes, official) or
            ``ImageSegment`` / ``VideoSegment`` (keyframe code ids, the all-discrete variant).
        vocab: the id layout (default: official 49412 ids), or a ``MultimodalLMConfig``: its vocabulary, and the
            defaults of ``pad_id`` (``config.pad_id``) and ``max_length`` (``config.max_position_embeddings``).
        labels: per sample ``(L_b,)`` labels aligned with ``input_ids`` (or None); media positions get ``IGNORE_INDEX``.
        padding_side: ``"right"`` (training) or ``"left"`` (batched generation).
        pad_id: the id whose embedding fills padded positions (default ``config.pad_id``, else 0 = official
            understanding's unk).
        max_length: the context (``max_position_embeddings``); a longer spliced sequence is an error.

    Returns:
        ``inputs_embeds`` ``(B, L, D)`` in the embedding's dtype, ``attention_mask`` ``(B, L)`` int64 (0 on padding),
        ``labels`` ``(B, L)`` int64 (``IGNORE_INDEX`` on media and padding; None when ``labels`` is None) and
        ``position_ids`` ``(B, L)`` int64 (0.. over each sample's tokens, 0 on padding); ``L`` = the longest sample.

    Raises:
        UnderstandingInputError: a placeholder without a medium or a medium without a placeholder, an image at a
            ``<video>`` placeholder (or the reverse), text ids outside ``0..vocab.size-1``, keyframe or motion code ids
            outside their codebook, features not of the LM's hidden size.
        ContextLengthError: a spliced sequence longer than ``max_length``.
    """
    if isinstance(vocab, MultimodalLMConfig):
        pad_id = vocab.pad_id if pad_id is None else pad_id
        max_length = vocab.max_position_embeddings if max_length is None else max_length
        vocab = vocab.vocabulary
    vocab = vocab or MultimodalVocabulary()
    pad_id = 0 if pad_id is None else pad_id
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    rows = _rows(input_ids, attention_mask)
    if len(media) != len(rows):
        raise UnderstandingInputError(f"{len(rows)} id sequences but media for {len(media)} samples")
    if labels is not None:
        label_rows = _rows(labels, attention_mask)
        if len(label_rows) != len(rows) or any(len(a) != len(b) for a, b in zip(label_rows, rows)):
            raise UnderstandingInputError("labels must have the shape of input_ids, sample by sample")
    rows_embeds, rows_labels = [], []
    for b, ids in enumerate(rows):
        if ids.is_floating_point():
            raise UnderstandingInputError(f"sample {b}: ids must be integers, got {ids.dtype}")
        items = media[b]
        items = [] if items is None else list(items) if isinstance(items, (list, tuple)) else [items]
        holes = ((ids == IMAGE_PLACEHOLDER) | (ids == VIDEO_PLACEHOLDER)).nonzero().flatten().tolist()
        if len(holes) != len(items):
            raise UnderstandingInputError(f"sample {b} holds {len(holes)} media placeholders (<image> {IMAGE_PLACEHOLDER}, "
                                          f"<video> {VIDEO_PLACEHOLDER}) but {len(items)} media were given")
        text = ids.clone()
        text[holes] = 0
        bad = (text < 0) | (text >= vocab.size)
        if bool(bad.any()):
            raise UnderstandingInputError(f"sample {b}: ids outside the vocabulary 0..{vocab.size - 1} (and not a "
                                          f"placeholder): {ids[bad][:5].tolist()}")
        if embed_tokens.weight.shape[0] < vocab.size:
            raise UnderstandingInputError(f"the embedding table has {embed_tokens.weight.shape[0]} rows, the vocabulary "
                                          f"{vocab.size} ids")
        text_embeds = embed_tokens(text.to(embed_tokens.weight.device))
        row_labels = label_rows[b].long() if labels is not None else None
        pieces, piece_labels, start = [], [], 0
        for hole, medium in zip(holes, items):
            want = VIDEO_PLACEHOLDER if isinstance(medium, (VideoFeatures, VideoSegment)) else IMAGE_PLACEHOLDER
            if int(ids[hole]) != want:
                raise UnderstandingInputError(f"sample {b}: placeholder {int(ids[hole])} at position {hole} got a "
                                              f"{type(medium).__name__} (images go at {IMAGE_PLACEHOLDER}, videos at "
                                              f"{VIDEO_PLACEHOLDER})")
            spliced = embed_media(medium, embed_tokens, vocab, f"sample {b} position {hole}")
            pieces += [text_embeds[start:hole], spliced]
            if row_labels is not None:
                piece_labels += [row_labels[start:hole], row_labels.new_full((len(spliced),), IGNORE_INDEX)]
            start = hole + 1
        pieces.append(text_embeds[start:])
        rows_embeds.append(torch.cat(pieces))
        if row_labels is not None:
            piece_labels.append(row_labels[start:])
            rows_labels.append(torch.cat(piece_labels))
        if max_length is not None and len(rows_embeds[-1]) > max_length:
            raise ContextLengthError(f"sample {b}: the spliced sequence of {len(rows_embeds[-1])} positions is longer "
                                     f"than the context of {max_length}")

    length = max(len(e) for e in rows_embeds)
    weight = embed_tokens.weight
    pad = embed_tokens(torch.tensor([pad_id], device=weight.device))[0]
    embeds = pad.expand(len(rows), length, -1).clone()
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=weight.device)
    positions = torch.zeros(len(rows), length, dtype=torch.long, device=weight.device)
    out_labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long, device=weight.device) if labels is not None else None
    for b, e in enumerate(rows_embeds):
        n = len(e)
        where = slice(0, n) if padding_side == "right" else slice(length - n, length)
        embeds[b, where], mask[b, where] = e, 1
        positions[b, where] = torch.arange(n, device=weight.device)
        if out_labels is not None:
            out_labels[b, where] = rows_labels[b].to(weight.device)
    return {"inputs_embeds": embeds, "attention_mask": mask, "labels": out_labels, "position_ids": positions}
