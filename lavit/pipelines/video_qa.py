"""``VideoQAPipeline``: a video and a question -> the answer text (the understanding path).

Per clip (``extract_clips`` with the motion tokenizer's clip settings, at most ``max_clips``): continuous keyframe
features (``KeyframeTokenizer.encode_features``, official; or the keyframe code ids with
``understanding_keyframes: codes``) and motion code ids (``MotionTokenizer.tokenize``) are
spliced at ``<video>`` of the Vicuna v1 prompt ``SYSTEM USER: <video>\\n{question} ASSISTANT:``
(``lavit.lm.conversation.build_prompt``, ``prepare_understanding_inputs``); the answer is greedy, text ids only
(``MediaGrammarLogitsProcessor(mode="text")``), cut at the official stop keyword. Captioning asks
:data:`CAPTION_QUESTION` (ours: the official code has no captioning prompt).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from lavit.lm.conversation import build_prompt, postprocess_answer, tokenize_prompt
from lavit.lm.vocabulary import VideoSegment
from lavit.lm.understanding import VideoFeatures, prepare_understanding_inputs
from lavit.pipelines.components import LanguageModel, load_keyframe_tokenizer, load_language_model, load_motion
from lavit.pipelines.config import STAGE_CHECKPOINTS, GenerationSettings, PipelineConfig
from lavit.pipelines.outputs import VideoQAOutput
from lavit.pipelines.text_to_video import _dtype
from lavit.pipelines.video_to_video import read_clips
from lavit.video.defaults import DEFAULT_MAX_CLIPS
from lavit.video.keyframes import preprocess_keyframes

CAPTION_QUESTION = "Describe the video in detail."


def check_questions(questions: str | Sequence[str]) -> list[str]:
    items = [questions] if isinstance(questions, str) else list(questions)
    if not items:
        raise ValueError("no question given")
    for i, q in enumerate(items):
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"question {i} is empty; ask something, e.g. 'what is moving?' (or use --caption)")
    return items


class VideoQAPipeline:
    """Video question answering and captioning; see the module docstring."""

    stage_checkpoints = STAGE_CHECKPOINTS["video_qa"]

    def __init__(self, lm: LanguageModel, keyframe_tokenizer, motion_tokenizer, clip_options: dict[str, Any],
                 generation: GenerationSettings = GenerationSettings()):
        self.lm, self.keyframe_tokenizer, self.motion_tokenizer = lm, keyframe_tokenizer, motion_tokenizer
        self.clip_options, self.generation = clip_options, generation

    @classmethod
    def from_config(cls, config: PipelineConfig | str, device=None, dtype=None) -> "VideoQAPipeline":
        config = PipelineConfig.from_file(config) if not isinstance(config, PipelineConfig) else config
        config.check(cls.stage_checkpoints)
        motion, options = load_motion(config)
        pipe = cls(load_language_model(config), load_keyframe_tokenizer(config), motion, options, config.generation)
        return pipe.to(device or config.device, _dtype(dtype, config))

    def to(self, device=None, dtype=None) -> "VideoQAPipeline":
        self.lm.to(device, dtype)
        if device is not None:  # the tokenizers stay float32
            self.keyframe_tokenizer.to(device)
            self.motion_tokenizer.to(device)
        return self

    def read(self, video: str | os.PathLike, max_clips: int = DEFAULT_MAX_CLIPS):
        """The clips of ``video`` (``VideoDecodeError`` naming the file when none decodes): call it first to fail
        before any model work."""
        return read_clips(video, self.clip_options, max_clips)

    def check_keyframe_input(self, settings: GenerationSettings) -> None:
        """``"features"`` needs ``vit_proj`` as wide as the LM (ValueError suggesting ``"codes"`` otherwise)."""
        width, hidden = self.keyframe_tokenizer.config.llm_embed_dim, self.lm.model.config.hidden_size
        if settings.understanding_keyframes == "features" and width != hidden:
            raise ValueError(f"generation.understanding_keyframes 'features': the keyframe tokenizer's vit_proj gives "
                             f"{width}-wide features but the LM is {hidden} wide; use 'codes' (keyframe code ids as tokens) "
                             "for an LM trained on discrete keyframes, such as the demo's")

    @torch.no_grad()
    def features(self, clips, keyframes: str = "features") -> VideoFeatures:
        """``VideoClips`` -> per clip the keyframe's continuous features ``(n_k, hidden)`` (``"features"``) or code ids
        ``(n_k,)`` (``"codes"``), + ``(K, 135)`` motion ids."""
        device = next(self.keyframe_tokenizer.parameters()).device
        images = preprocess_keyframes(clips.keyframes, self.keyframe_tokenizer.config.img_size).to(device)
        encode = self.keyframe_tokenizer.encode_features if keyframes == "features" else self.keyframe_tokenizer.tokenize
        keyframes = encode(images, selection="deterministic")
        motion = self.motion_tokenizer.tokenize(clips.motion.to(next(self.motion_tokenizer.parameters()).device))
        return VideoFeatures([k.cpu() for k in keyframes], motion.cpu())

    @torch.no_grad()
    def __call__(self, video, questions: str | Sequence[str], max_clips: int = DEFAULT_MAX_CLIPS,
                 **generation_overrides: Any) -> VideoQAOutput:
        """Answer each question about ``video`` (a path or ``VideoClips``) greedily -> :class:`VideoQAOutput`."""
        from transformers import GenerationConfig, LogitsProcessorList

        from lavit.lm.processors import MediaGrammarLogitsProcessor

        # 1. check inputs, read the clips
        questions = check_questions(questions)
        settings = self.generation.replace(**generation_overrides)
        self.check_keyframe_input(settings)
        clips = self.read(video, max_clips) if isinstance(video, (str, os.PathLike)) else video
        # 2. media features and the Vicuna v1 prompt
        media = self.features(clips, settings.understanding_keyframes)
        model, vocab = self.lm.model, self.lm.vocab
        ids = [torch.tensor(tokenize_prompt(build_prompt(q, "video"), self.lm.tokenizer)) for q in questions]
        embed = model.get_input_embeddings()
        if settings.understanding_keyframes == "codes":  # all-discrete: [IMG] codes [/IMG] [MOV] codes [/MOV] per clip
            media = VideoSegment(list(media.keyframes), list(media.motion))
        else:
            media = VideoFeatures([k.to(embed.weight) for k in media.keyframes], media.motion.to(embed.weight.device))
        spliced = prepare_understanding_inputs(ids, embed, [media] * len(ids), vocab, padding_side="left", pad_id=vocab.unk_id,
                                               max_length=model.config.max_position_embeddings)
        # 3. greedy answer, text ids only
        config = GenerationConfig(max_new_tokens=settings.max_answer_tokens, do_sample=False, num_beams=1,
                                  eos_token_id=vocab.eos_id, pad_token_id=vocab.unk_id, use_cache=True)
        out = model.generate(inputs_embeds=spliced["inputs_embeds"], attention_mask=spliced["attention_mask"],
                             generation_config=config,
                             logits_processor=LogitsProcessorList([MediaGrammarLogitsProcessor(vocab, "text")]))
        answer_ids = []
        for row in out:
            stop = (row == vocab.eos_id).nonzero()
            answer_ids.append((row[: int(stop[0])] if len(stop) else row).cpu())
        answers = [postprocess_answer(self.lm.tokenizer.decode(a.tolist(), skip_special_tokens=True)) for a in answer_ids]
        return VideoQAOutput(answers=answers, answer_ids=answer_ids)
