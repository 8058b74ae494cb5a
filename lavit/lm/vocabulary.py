"""``MultimodalVocabulary``: the LM's id layout (text, [IMG] visual codes [/IMG], [MOV] motion codes [/MOV]).

Official layout (docs: ../shared/reference/official_lm_and_keyframe_tokenizer.md section 3): 0 unk, 1 bos, 2 eos,
3-31999 text; 32000 [IMG], 32001 [/IMG], 32002-48385 the 16384 visual codes; 48386 [MOV], 48387 [/MOV], 48388-49411
the 1024 motion codes; 49412 ids. Smaller vocabularies (a demo text tokenizer, a 32-code keyframe tokenizer) keep the
same order, shifted: every id is derived from ``text_size``, ``visual_codes`` and ``motion_codes``.

An image is ``[IMG] codes [/IMG]``; a video is, per clip, ``[IMG] keyframe codes [/IMG] [MOV] motion codes [/MOV]``
with exactly ``motion_tokens_per_clip`` motion codes (135 officially).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch


class SequenceGrammarError(ValueError):
    """A token sequence that breaks the media grammar (an unclosed segment, a code outside its segment, a wrong
    number of motion codes); the message names the position and the ids found."""


@dataclass(frozen=True)
class TextSegment:
    """Text ids ``(n,)`` int64 (any id below ``text_size``)."""

    ids: torch.Tensor


@dataclass(frozen=True)
class ImageSegment:
    """One image: its keyframe-tokenizer code ids ``(n,)`` int64 in ``0..visual_codes-1``."""

    codes: torch.Tensor


@dataclass(frozen=True)
class VideoSegment:
    """Consecutive clips: ``keyframes[k]`` ``(n_k,)`` visual code ids and ``motion[k]`` ``(motion_tokens_per_clip,)``
    motion code ids in ``0..motion_codes-1`` of clip ``k``."""

    keyframes: list[torch.Tensor]
    motion: list[torch.Tensor]


Segment = Union[TextSegment, ImageSegment, VideoSegment]


@dataclass(frozen=True)
class MultimodalVocabulary:
    """Ids of the extended vocabulary; defaults are the official 49412-id layout.

    Args:
        text_size: ids ``0..text_size-1`` are the text tokenizer's (Llama-2: 32000).
        visual_codes: keyframe tokenizer codebook size (16384).
        motion_codes: motion tokenizer codebook size (1024).
        motion_tokens_per_clip: motion codes per clip (135 = 3 x 5 x 9).
        bos_id, eos_id, unk_id: the text tokenizer's special ids (Llama: 1, 2, 0).
    """

    text_size: int = 32000
    visual_codes: int = 16384
    motion_codes: int = 1024
    motion_tokens_per_clip: int = 135
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 0

    def __post_init__(self) -> None:
        for name in ("text_size", "visual_codes", "motion_codes", "motion_tokens_per_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("bos_id", "eos_id", "unk_id"):
            if not 0 <= getattr(self, name) < self.text_size:
                raise ValueError(f"{name} must be a text id in 0..{self.text_size - 1}, got {getattr(self, name)}")

    # ---- the layout -----------------------------------------------------------------------
    @property
    def img_start(self) -> int:
        """[IMG] (official 32000)."""
        return self.text_size

    @property
    def img_end(self) -> int:
        """[/IMG] (official 32001)."""
        return self.text_size + 1

    @property
    def visual_offset(self) -> int:
        """LM id of visual code 0 (official 32002)."""
        return self.text_size + 2

    @property
    def mov_start(self) -> int:
        """[MOV] (official 48386)."""
        return self.visual_offset + self.visual_codes

    @property
    def mov_end(self) -> int:
        """[/MOV] (official 48387)."""
        return self.mov_start + 1

    @property
    def motion_offset(self) -> int:
        """LM id of motion code 0 (official 48388)."""
        return self.mov_start + 2

    @property
    def size(self) -> int:
        """Number of ids, the LM's ``vocab_size`` (official 49412)."""
        return self.motion_offset + self.motion_codes

    @property
    def visual_range(self) -> range:
        return range(self.visual_offset, self.mov_start)

    @property
    def motion_range(self) -> range:
        return range(self.motion_offset, self.size)

    @property
    def media_range(self) -> range:
        """Every non-text id: [IMG] .. the last motion code (what text answers never emit)."""
        return range(self.text_size, self.size)

    def token_strings(self) -> list[str]:
        """The strings a text tokenizer is extended with, in id order from ``text_size``: ``[IMG]``, ``[/IMG]``,
        ``<v_0>`` .. ``<v_{visual_codes-1}>``, ``[MOV]``, ``[/MOV]``, ``<m_0>`` .. ``<m_{motion_codes-1}>``."""
        return (["[IMG]", "[/IMG]"] + [f"<v_{i}>" for i in range(self.visual_codes)] + ["[MOV]", "[/MOV]"]
                + [f"<m_{i}>" for i in range(self.motion_codes)])

    # ---- masks ----------------------------------------------------------------------------
    def modality(self, ids: torch.Tensor) -> torch.Tensor:
        """Per id: 0 text (incl. bos / eos / pad), 1 keyframe ([IMG], visual codes, [/IMG]), 2 motion ([MOV], motion
        codes, [/MOV]); same shape as ``ids``, int64. Negative ids (placeholders, ignore labels) count as text."""
        out = torch.zeros_like(ids, dtype=torch.long)
        out[(ids >= self.img_start) & (ids < self.mov_start)] = 1
        out[ids >= self.mov_start] = 2
        return out

    def check_ids(self, ids: torch.Tensor, what: str = "token ids") -> None:
        """Raise ``ValueError`` naming the first ids outside ``0..size-1``."""
        bad = (ids < 0) | (ids >= self.size)
        if bool(bad.any()):
            raise ValueError(f"{what} outside the vocabulary 0..{self.size - 1}: {ids[bad][:5].tolist()}")

    # ---- serialisation --------------------------------------------------------------------
    def _codes(self, codes: torch.Tensor | Sequence[int], n: int, what: str) -> torch.Tensor:
        codes = torch.as_tensor(codes, dtype=torch.long).reshape(-1)
        if codes.is_floating_point():
            raise ValueError(f"{what} code ids must be integers, got {codes.dtype}")
        bad = (codes < 0) | (codes >= n)
        if bool(bad.any()):
            raise ValueError(f"{what} code ids must be in 0..{n - 1}, got {codes[bad][:5].tolist()}")
        return codes

    def image(self, codes: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Visual code ids ``(n,)`` -> ``[IMG] codes+visual_offset [/IMG]`` ``(n + 2,)`` int64."""
        codes = self._codes(codes, self.visual_codes, "visual")
        return torch.cat([codes.new_tensor([self.img_start]), codes + self.visual_offset, codes.new_tensor([self.img_end])])

    def motion(self, codes: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """``motion_tokens_per_clip`` motion code ids -> ``[MOV] codes+motion_offset [/MOV]`` int64."""
        codes = self._codes(codes, self.motion_codes, "motion")
        if len(codes) != self.motion_tokens_per_clip:
            raise ValueError(f"a clip has exactly {self.motion_tokens_per_clip} motion codes, got {len(codes)}")
        return torch.cat([codes.new_tensor([self.mov_start]), codes + self.motion_offset, codes.new_tensor([self.mov_end])])

    def video(self, keyframes: Sequence[torch.Tensor], motion: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Clips in time order: ``keyframes[k]`` visual code ids ``(n_k,)``, ``motion[k]`` motion code ids
        ``(motion_tokens_per_clip,)`` (or one ``(K, motion_tokens_per_clip)`` tensor) -> per clip
        ``[IMG] .. [/IMG] [MOV] .. [/MOV]``, concatenated, int64."""
        if len(keyframes) != len(motion) or len(keyframes) == 0:
            raise ValueError(f"a video needs one keyframe per clip of motion and at least one clip, got {len(keyframes)} "
                             f"keyframes and {len(motion)} motion clips")
        return torch.cat([torch.cat([self.image(k), self.motion(m)]) for k, m in zip(keyframes, motion)])

    def serialize(self, segments: Sequence[Segment]) -> torch.Tensor:
        """Segments in order -> one ``(L,)`` int64 id sequence (the inverse of :meth:`parse`)."""
        parts = []
        for segment in segments:
            if isinstance(segment, TextSegment):
                ids = torch.as_tensor(segment.ids, dtype=torch.long).reshape(-1)
                bad = (ids < 0) | (ids >= self.text_size)
                if bool(bad.any()):
                    raise ValueError(f"text ids must be in 0..{self.text_size - 1}, got {ids[bad][:5].tolist()}")
                parts.append(ids)
            elif isinstance(segment, ImageSegment):
                parts.append(self.image(segment.codes))
            elif isinstance(segment, VideoSegment):
                parts.append(self.video(segment.keyframes, segment.motion))
            else:
                raise TypeError(f"expected TextSegment, ImageSegment or VideoSegment, got {type(segment).__name__}")
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def parse(self, ids: torch.Tensor | Sequence[int]) -> list[Segment]:
        """An id sequence -> text, image and video segments (consecutive clips form one video; an image is an
        [IMG] segment not followed by [MOV]).

        Raises:
            SequenceGrammarError: naming the position: a code outside its segment, an unclosed segment, a [MOV]
                without a keyframe before it, a clip with other than ``motion_tokens_per_clip`` motion codes.
        """
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        self.check_ids(ids)
        values = ids.tolist()
        segments: list[Segment] = []
        text: list[int] = []
        i, n = 0, len(values)

        def flush_text() -> None:
            if text:
                segments.append(TextSegment(torch.tensor(text, dtype=torch.long)))
                text.clear()

        def read_until(start: int, end: int, lo: int, hi: int, name: str) -> tuple[list[int], int]:
            j = start + 1
            codes = []
            while j < n and values[j] != end:
                if not lo <= values[j] < hi:
                    raise SequenceGrammarError(f"id {values[j]} at position {j} inside the {name} segment opened at "
                                               f"{start}: only codes {lo}..{hi - 1} and the closing id {end} may follow")
                codes.append(values[j] - lo)
                j += 1
            if j == n:
                raise SequenceGrammarError(f"the {name} segment opened at position {start} is never closed (no {end})")
            return codes, j + 1

        while i < n:
            v = values[i]
            if v < self.text_size:
                text.append(v)
                i += 1
            elif v == self.img_start:
                flush_text()
                codes, i = read_until(i, self.img_end, self.visual_offset, self.mov_start, "[IMG]")
                keyframe = torch.tensor(codes, dtype=torch.long)
                if i < n and values[i] == self.mov_start:
                    start = i
                    motion, i = read_until(i, self.mov_end, self.motion_offset, self.size, "[MOV]")
                    if len(motion) != self.motion_tokens_per_clip:
                        raise SequenceGrammarError(f"the [MOV] segment at position {start} holds {len(motion)} motion codes, "
                                                   f"expected {self.motion_tokens_per_clip}")
                    clip = torch.tensor(motion, dtype=torch.long)
                    if segments and isinstance(segments[-1], VideoSegment):
                        segments[-1].keyframes.append(keyframe)
                        segments[-1].motion.append(clip)
                    else:
                        segments.append(VideoSegment([keyframe], [clip]))
                else:
                    segments.append(ImageSegment(keyframe))
            else:
                kind = {self.img_end: "[/IMG]", self.mov_start: "[MOV]", self.mov_end: "[/MOV]"}.get(v)
                where = f"{kind} ({v})" if kind else f"{'visual' if v < self.mov_start else 'motion'} code id {v}"
                raise SequenceGrammarError(f"{where} at position {i} outside its segment"
                                           + (" ([MOV] must follow a keyframe's [/IMG])" if v == self.mov_start else ""))
        flush_text()
        return segments

    # ---- text tokenizer and embeddings ---------------------------------------------------
    def extend_tokenizer(self, tokenizer) -> None:
        """Add the media tokens (:meth:`token_strings`) to a transformers tokenizer so that its ids equal this layout.

        Raises:
            ValueError: the tokenizer does not hold exactly ``text_size`` ids before (``len(tokenizer)``), or its new
                ids do not come out at ``img_start`` .. ``size - 1``.
        """
        if len(tokenizer) == self.size and tokenizer.convert_tokens_to_ids("[MOV]") == self.mov_start:
            return  # already extended
        if len(tokenizer) != self.text_size:
            raise ValueError(f"the text tokenizer has {len(tokenizer)} ids; this vocabulary's text part has {self.text_size} "
                             "(set text_size to the tokenizer's size)")
        tokenizer.add_tokens(self.token_strings(), special_tokens=True)
        if len(tokenizer) != self.size or tokenizer.convert_tokens_to_ids("[MOV]") != self.mov_start:
            raise ValueError(f"extending the tokenizer gave {len(tokenizer)} ids and [MOV] = "
                             f"{tokenizer.convert_tokens_to_ids('[MOV]')}, expected {self.size} and {self.mov_start}")

    def resize_embeddings(self, model) -> None:
        """Resize a transformers causal LM's input (and untied output) embeddings to ``size`` rows; new rows are drawn
        from a Gaussian with the existing rows' mean and covariance (transformers' ``mean_resizing``)."""
        old = model.get_input_embeddings().weight.shape[0]
        if old == self.size:
            return
        if old > self.size:
            raise ValueError(f"the LM already has {old} embedding rows, more than this vocabulary's {self.size}")
        model.resize_token_embeddings(self.size, mean_resizing=True)
