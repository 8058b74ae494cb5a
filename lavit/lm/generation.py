"""Generation with the multimodal LM: keyframe then motion tokens per clip, images, and text answers.

Video generation runs as the official code does (``generate_image_tokenids`` / ``generate_motion_tokenids``), one
``model.generate`` call per stage: the rows so far, left-padded, + [IMG] -> keyframe codes until [/IMG] (guidance
``keyframe_guidance``), then + [MOV] -> motion codes until [/MOV] (guidance ``motion_guidance``); clip k > 0 has the
whole sequence so far as its prompt. With ``constraint="grammar"`` (default) ``MediaGrammarLogitsProcessor`` makes
every clip well formed while decoding (exactly ``motion_tokens_per_clip`` motion codes, then [/MOV]); with
``constraint="official"`` the official suppress lists and ``min_new_tokens`` are applied instead (parity; the official
code then repairs the motion count afterwards, see :func:`official_motion_repair`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from transformers import GenerationConfig, LogitsProcessorList, MinNewTokensLengthLogitsProcessor, SuppressTokensLogitsProcessor

from lavit.lm.processors import ClassifierFreeGuidanceLogitsProcessor, MediaGrammarLogitsProcessor
from lavit.lm.vocabulary import ImageSegment, MultimodalVocabulary, VideoSegment

Constraint = Literal["grammar", "official"]
Unconditional = Literal["start", "empty_prompt"]


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding of one stage. ``do_sample=False`` is greedy; ``top_k`` 0 / ``top_p`` 1.0 disable those filters."""

    do_sample: bool = True
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 1.0


def left_pad(rows: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``(L_i,)`` -> ``(B, L)`` ids left-padded with ``pad_id`` and their ``(B, L)`` attention mask."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long, device=rows[0].device)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        if len(row):
            ids[i, length - len(row):], mask[i, length - len(row):] = row, 1
    return ids, mask


class StageGenerator:
    """Runs one generation stage (``model.generate`` with the grammar or official processors and guidance).

    Args:
        model: a transformers causal LM (``LlamaForCausalLM``) over ``vocab``.
        vocab: the id layout.
        pad_id: the left-padding id (official generation: eos 2; padded positions are masked either way).
    """

    def __init__(self, model, vocab: MultimodalVocabulary, pad_id: int | None = None):
        self.model, self.vocab = model, vocab
        self.pad_id = vocab.eos_id if pad_id is None else pad_id

    def official_processors(self, stage: str, prompt_length: int, min_new_tokens: int, device) -> list:
        """The official stage's ``suppress_tokens`` and ``min_new_tokens`` (reference: generation constraints table)."""
        v = self.vocab
        if stage == "keyframe":
            suppress, eos = list(range(3, v.text_size)) + list(range(v.mov_start, v.size)), v.img_end
        elif stage == "motion":
            suppress, eos = list(range(3, v.mov_start)), v.mov_end
        else:
            suppress, eos = list(range(v.text_size, v.size)), v.eos_id
        return [SuppressTokensLogitsProcessor(suppress, device=device),
                MinNewTokensLengthLogitsProcessor(prompt_length, min_new_tokens, eos, device=device)]

    @torch.no_grad()
    def run(self, rows: Sequence[torch.Tensor], stage: Literal["keyframe", "motion", "text"], max_new_tokens: int,
            guidance_scale: float = 1.0, unconditional_rows: Sequence[torch.Tensor] | None = None,
            constraint: Constraint = "grammar", grammar: MediaGrammarLogitsProcessor | None = None, min_new_tokens: int = 1,
            sampling: SamplingSettings = SamplingSettings(), output_scores: bool = False):
        """Generate after each row (already ending with the stage's start id for media stages).

        Returns:
            ``(new, scores)``: per row the generated ids ``(n_i,)`` (the stop id included, padding removed) and, when
            ``output_scores``, the processed scores of every step ``(B, steps, V)`` (else None).
        """
        v = self.vocab
        device = next(self.model.parameters()).device
        ids, mask = left_pad([r.to(device) for r in rows], self.pad_id)
        processors = []
        if guidance_scale != 1.0:
            u_ids = u_mask = None
            if unconditional_rows is not None:
                u_ids, u_mask = left_pad([r.to(device) for r in unconditional_rows], self.pad_id)
            processors.append(ClassifierFreeGuidanceLogitsProcessor(self.model, guidance_scale, u_ids, u_mask))
        if constraint == "official":
            processors += self.official_processors(stage, ids.shape[1], min_new_tokens, device)
        elif constraint == "grammar":
            processors.append(grammar or MediaGrammarLogitsProcessor(v, mode="text" if stage == "text" else "video"))
        else:
            raise ValueError(f"constraint must be 'grammar' or 'official', got {constraint!r}")
        eos = {"keyframe": v.img_end, "motion": v.mov_end, "text": v.eos_id}[stage]
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sampling.do_sample, num_beams=1,
            top_k=sampling.top_k if sampling.do_sample else None, top_p=sampling.top_p if sampling.do_sample else None,
            temperature=sampling.temperature if sampling.do_sample else None, eos_token_id=eos, pad_token_id=self.pad_id,
            bos_token_id=v.bos_id, output_scores=output_scores, return_dict_in_generate=True, use_cache=True,
        )
        # official: the head over the whole prompt at the first step (HF 4.33), which float32 rounding can tell apart
        keep = {"logits_to_keep": 0} if constraint == "official" else {}
        out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                  logits_processor=LogitsProcessorList(processors), **keep)
        generated = out.sequences[:, ids.shape[1]:]
        new = []
        for row in generated:
            stop = (row == eos).nonzero()
            new.append(row[: int(stop[0]) + 1] if len(stop) else row)
        scores = torch.stack(out.scores, dim=1) if output_scores else None
        return new, scores


def generate_video(
    model,
    vocab: MultimodalVocabulary,
    prompts: Sequence[torch.Tensor],
    num_clips: int = 1,
    keyframe_guidance: float = 4.0,
    motion_guidance: float = 7.0,
    unconditional: Unconditional = "start",
    keyframe_sampling: SamplingSettings = SamplingSettings(),
    motion_sampling: SamplingSettings = SamplingSettings(),
    min_keyframe_tokens: int = 20,
    max_keyframe_tokens: int = 500,
    seed: int | None = None,
) -> list[VideoSegment]:
    """Text (or any prefix) -> ``num_clips`` clips per prompt, each ``[IMG] keyframe [/IMG] [MOV] motion [/MOV]``.

    Args:
        prompts: per row the prompt ids ``(L_i,)`` (official text-to-video: the caption's ids, no BOS).
        keyframe_guidance, motion_guidance: LM guidance scales of the two stages (official 4.0 / 7.0; 1 = none).
        unconditional: the guidance's unconditional branch: "start" = the lone [IMG] / [MOV] (official), "empty_prompt"
            = the row with its prompt removed (a leading bos and the previous clips kept) + the start id: what a
            media-first training sample looks like, so the LM has learnt that distribution.
        keyframe_sampling, motion_sampling: decoding of each stage (official text-to-video: motion greedy).
        min_keyframe_tokens, max_keyframe_tokens: bounds of the keyframe code count.
        seed: seeds ``torch.manual_seed`` before generating (sampling then repeats exactly).

    Returns:
        Per prompt a ``VideoSegment`` (keyframe code ids per clip, ``(motion_tokens_per_clip,)`` motion code ids per clip).
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if seed is not None:
        torch.manual_seed(seed)
    v = vocab
    stage = StageGenerator(model, vocab)
    prompts = [torch.as_tensor(p, dtype=torch.long).reshape(-1) for p in prompts]
    for p in prompts:
        v.check_ids(p, "prompt ids")
    rows = [p.clone() for p in prompts]
    clips: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in rows]
    keyframe_grammar = MediaGrammarLogitsProcessor(v, "video", min_keyframe_tokens, max_keyframe_tokens)
    for _ in range(num_clips):
        for start, end, guidance, sampling, kind in (
            (v.img_start, v.img_end, keyframe_guidance, keyframe_sampling, "keyframe"),
            (v.mov_start, v.mov_end, motion_guidance, motion_sampling, "motion"),
        ):
            rows = [torch.cat([r, r.new_tensor([start])]) for r in rows]
            uncond = None
            if unconditional == "empty_prompt":  # a leading bos stays: media-first training samples start so
                uncond = [torch.cat([p[:1], r[len(p):]]) if len(p) and int(p[0]) == v.bos_id else r[len(p):]
                          for r, p in zip(rows, prompts)]
            elif unconditional != "start":
                raise ValueError(f"unconditional must be 'start' or 'empty_prompt', got {unconditional!r}")
            max_new = max_keyframe_tokens + 1 if kind == "keyframe" else v.motion_tokens_per_clip + 1
            new, _ = stage.run(rows, kind, max_new, guidance, uncond, grammar=keyframe_grammar, sampling=sampling)
            rows = [torch.cat([r, n.to(r.device)]) for r, n in zip(rows, new)]
            for i, n in enumerate(new):
                if not len(n) or int(n[-1]) != end:
                    raise RuntimeError(f"the {kind} segment of row {i} did not close with {end} within {max_new} tokens")
                codes = n[:-1] - (v.visual_offset if kind == "keyframe" else v.motion_offset)
                if kind == "keyframe":
                    clips[i].append((codes.cpu(), None))
                else:
                    clips[i][-1] = (clips[i][-1][0], codes.cpu())
    return [VideoSegment([k for k, _ in c], [m for _, m in c]) for c in clips]


def generate_image(model, vocab: MultimodalVocabulary, prompts: Sequence[torch.Tensor], guidance: float = 4.0,
                   sampling: SamplingSettings = SamplingSettings(), min_tokens: int = 20, max_tokens: int = 200,
                   seed: int | None = None) -> list[ImageSegment]:
    """Text -> one image's keyframe codes per prompt (the keyframe stage alone; official max 200)."""
    if seed is not None:
        torch.manual_seed(seed)
    v = vocab
    rows = [torch.cat([torch.as_tensor(p, dtype=torch.long).reshape(-1), torch.tensor([v.img_start])]) for p in prompts]
    grammar = MediaGrammarLogitsProcessor(v, "image", min_tokens, max_tokens)
    new, _ = StageGenerator(model, v).run(rows, "keyframe", max_tokens + 1, guidance, grammar=grammar, sampling=sampling)
    return [ImageSegment((n[:-1] - v.visual_offset).cpu()) for n in new]


def official_motion_repair(vocab: MultimodalVocabulary, ids: torch.Tensor) -> torch.Tensor:
    """The official ``video_decoding`` repair of one clip's motion output: keep ids > [/MOV], truncate to
    ``motion_tokens_per_clip`` or right-pad with code 0, subtract the motion offset -> ``(motion_tokens_per_clip,)``."""
    codes = ids[ids > vocab.mov_end] - vocab.motion_offset
    n = vocab.motion_tokens_per_clip
    return torch.cat([codes[:n], codes.new_zeros(max(0, n - len(codes)))])
