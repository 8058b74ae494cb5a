"""``MultimodalLM``: stage-2 generative pre-training and stage-3 instruction tuning of the Llama over text, keyframe
codes and motion codes (the official release has no training code)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lavit.lm.config import MultimodalLMConfig
from lavit.lm.generation import SamplingSettings, generate_video
from lavit.lm.loss import MODALITIES, next_token_loss
from lightning_modules.schedules import adamw_warmup_cosine

Trainable = Literal["all", "embeddings", "lora"]


class MultimodalLM(pl.LightningModule):
    """Next-token training of a transformers ``LlamaForCausalLM`` over the multimodal vocabulary.

    Stage "pretrain" (stage 2): batches of ``{"input_ids", "attention_mask", "labels"}`` (B, L) from
    ``MultimodalTokenDataModule`` (image-text, video-text and text mixed; every token labelled). Stage "instruct"
    (stage 3): the same keys from ``InstructionDataModule``, labels on the answers only. The loss is logged whole and
    per modality of the predicted token (``train/loss_text``, ``_keyframe``, ``_motion``; same for ``val/``).

    Args:
        lm: the ``lavit.lm.MultimodalLMConfig`` (preset name or fields); checkpoints store its fields.
        stage: "pretrain" or "instruct" (what the logs call it; the labels come from the data).
        init_from: start from these weights (``lavit.load_multimodal_lm``: a Hugging Face Llama folder such as the
            official ``language_model`` or Llama-2-7B, a safetensors file, one of our checkpoints); None = random.
        trainable: "all"; "embeddings" = only the rows of the media ids (input and output embeddings; the text rows and
            every other weight stay fixed); "lora" = LoRA adapters (peft) on ``lora_target_modules`` plus the media rows.
        lora_rank, lora_alpha, lora_dropout, lora_target_modules: the LoRA adapters.
        lr, weight_decay, betas, warmup_steps, min_lr_ratio: AdamW with linear warm-up and cosine decay.
        gradient_checkpointing: recompute each decoder layer in the backward pass (transformers' checkpointing).
        attn_implementation: "sdpa" (default), "eager" or "flash_attention_2".
        keyframe_guidance, motion_guidance, unconditional, num_clips, top_k, temperature, motion_greedy,
            min_keyframe_tokens, max_keyframe_tokens: generation in ``predict`` and in the validation's generation check
            (``lavit.lm.generation.generate_video``).
        val_generate: captions of the validation prompts to generate a video for at each validation (0 = none). With a
            ``motion_tokenizer`` the generated motion is decoded and compared with the caption's camera pan
            (``val/pan_agreement``, the share whose mean horizontal motion has the caption's sign), over
            ``val_samples_per_caption`` sampled clips per caption (one draw per caption varies by +-8 % on 33 captions).
        max_answer_tokens: longest answer ``predict`` generates in stage "instruct" (greedy, text ids only).
        motion_tokenizer_ckpt: a motion tokenizer checkpoint (``lavit.load_motion_tokenizer``): decodes generated motion
            for that check, and tokenizes the motion of stage-3 videos (default: the DataModule's ``motion_tokenizer``;
            named apart from it so that Lightning's merged hparams do not clash).
        keyframe_tokenizer_ckpt: a keyframe tokenizer checkpoint (``lavit.load_keyframe_tokenizer``): stage 3's keyframes
            enter as its continuous ``encode_features`` (official understanding input; frozen here).

    Stage-3 batches (``InstructionDataModule``) also hold ``"media"``: per sample None, ``{"kind": "image", "keyframe":
    (3, S, S)}`` or ``{"kind": "video", "keyframes": (N, 3, S, S), "motion": (N, 2, 24, H, W)}``; they are spliced in at
    the ``<image>`` / ``<video>`` placeholders (``lavit.lm.prepare_understanding_inputs``).
    """

    def __init__(
        self,
        lm: MultimodalLMConfig | str | dict = "tiny",
        stage: Literal["pretrain", "instruct"] = "pretrain",
        init_from: str | None = None,
        trainable: Trainable = "all",
        lora_rank: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        gradient_checkpointing: bool = False,
        attn_implementation: str = "sdpa",
        keyframe_guidance: float = 4.0,
        motion_guidance: float = 7.0,
        unconditional: Literal["start", "empty_prompt"] = "start",
        num_clips: int = 1,
        top_k: int = 50,
        temperature: float = 1.0,
        motion_greedy: bool = False,
        min_keyframe_tokens: int = 1,
        max_keyframe_tokens: int = 200,
        val_generate: int = 0,
        val_samples_per_caption: int = 4,
        max_answer_tokens: int = 128,
        motion_tokenizer_ckpt: str | None = None,
        keyframe_tokenizer_ckpt: str | None = None,
    ):
        super().__init__()
        if stage not in ("pretrain", "instruct"):
            raise ValueError(f"stage must be 'pretrain' or 'instruct', got {stage!r}")
        if trainable not in ("all", "embeddings", "lora"):
            raise ValueError(f"trainable must be 'all', 'embeddings' or 'lora', got {trainable!r}")
        self.config = MultimodalLMConfig.coerce(lm)
        self.save_hyperparameters(ignore=["lm"])
        self.hparams["lm"] = self.config.to_dict()
        self.vocab = self.config.vocabulary
        if init_from is not None:
            from lavit.lm.loading import load_multimodal_lm

            # float32 master weights whatever the files hold (Llama-2 ships float16); precision= handles bf16
            self.lm = load_multimodal_lm(init_from, config=self.config, dtype=torch.float32,
                                         attn_implementation=attn_implementation).float()
        else:
            from transformers import LlamaForCausalLM

            self.lm = LlamaForCausalLM(self.config.llama_config(attn_implementation=attn_implementation))
        if gradient_checkpointing:
            self.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._media_rows_only = trainable in ("embeddings", "lora")
        if trainable == "lora":
            self.lm = self._with_lora(self.lm)
        elif trainable == "embeddings":
            for p in self.lm.parameters():
                p.requires_grad_(False)
            for p in self._embedding_weights():
                p.requires_grad_(True)
        if self._media_rows_only:
            for p in self._embedding_weights():
                p.register_hook(self._keep_text_rows)
        self._frozen: dict[str, torch.nn.Module] = {}  # tokenizers: a plain dict, so not in the state dict / optimiser

    # ---- what trains -------------------------------------------------------------------------------
    def _embedding_weights(self) -> list[torch.nn.Parameter]:
        weights = [self.lm.get_input_embeddings().weight, self.lm.get_output_embeddings().weight]
        return list({id(w): w for w in weights}.values())  # tied: one tensor

    def _keep_text_rows(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[: self.vocab.text_size] = 0
        return grad

    def _with_lora(self, model):
        from peft import LoraConfig, get_peft_model

        h = self.hparams
        config = LoraConfig(r=h.lora_rank, lora_alpha=h.lora_alpha, lora_dropout=h.lora_dropout,
                            target_modules=list(h.lora_target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
        for p in self._embedding_weights_of(model):
            p.requires_grad_(True)
        return model

    @staticmethod
    def _embedding_weights_of(model) -> list[torch.nn.Parameter]:
        weights = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
        return list({id(w): w for w in weights}.values())

    def configure_optimizers(self):
        return adamw_warmup_cosine(self, self.named_parameters(), no_decay_suffixes=("embed_tokens.weight", "lm_head.weight"))

    # ---- steps -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        check = getattr(datamodule, "check_vocabulary", None)
        if callable(check):
            check(self.config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, V)`` logits."""
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs).logits

    def _step(self, batch: dict[str, Any], split: str) -> torch.Tensor:
        ids, labels = batch["input_ids"], batch["labels"]
        if ids.shape[1] > self.config.max_position_embeddings:
            from lavit.lm.sequences import ContextLengthError

            raise ContextLengthError(f"a batch of {ids.shape[1]} tokens is longer than the context of "
                                     f"{self.config.max_position_embeddings}")
        if batch.get("media") is not None and any(m is not None for m in batch["media"]):
            spliced = self.understanding_inputs(batch)
            labels = spliced["labels"]
            logits = self.lm(inputs_embeds=spliced["inputs_embeds"], attention_mask=spliced["attention_mask"],
                             position_ids=spliced["position_ids"], use_cache=False).logits
        else:
            self.vocab.check_ids(ids[batch["attention_mask"].bool()] if "attention_mask" in batch else ids, "input ids")
            logits = self(ids, batch.get("attention_mask"))
        out = next_token_loss(logits, labels, self.vocab)
        n = logits.shape[0]
        self.log(f"{split}/loss", out.loss, prog_bar=True, batch_size=n, sync_dist=split != "train")
        for name in MODALITIES:
            if out.counts[name]:
                self.log(f"{split}/loss_{name}", out.per_modality[name], batch_size=out.counts[name], sync_dist=split != "train")
        return out.loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def keyframe_tokenizer(self):
        """The frozen keyframe tokenizer of ``keyframe_tokenizer_ckpt`` (loaded once), or None."""
        if "keyframe" not in self._frozen and self.hparams.keyframe_tokenizer_ckpt:
            from lavit import load_keyframe_tokenizer

            self._frozen["keyframe"] = load_keyframe_tokenizer(self.hparams.keyframe_tokenizer_ckpt).eval().requires_grad_(False)
        return self._frozen.get("keyframe")

    @torch.no_grad()
    def _media_features(self, media: dict | None):
        from lavit.lm.understanding import ImageFeatures, VideoFeatures

        if media is None:
            return None
        keyframes, motion = self.keyframe_tokenizer(), self.motion_tokenizer()
        if keyframes is None or (media["kind"] == "video" and motion is None):
            need = "keyframe_tokenizer_ckpt" if keyframes is None else "motion_tokenizer_ckpt"
            raise ValueError(f"a batch with {media['kind']} media needs the {need} checkpoint (MultimodalLM({need}=...))")
        keyframes.to(self.device)
        if media["kind"] == "image":
            return ImageFeatures(keyframes.encode_features(media["keyframe"][None].to(self.device))[0])
        motion.to(self.device)
        ids = motion.tokenize(media["motion"].to(self.device))
        return VideoFeatures(keyframes.encode_features(media["keyframes"].to(self.device)), ids)

    def understanding_inputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Stage-3 batch -> ``inputs_embeds`` / ``attention_mask`` / ``labels`` / ``position_ids`` (media spliced)."""
        from lavit.lm.understanding import prepare_understanding_inputs

        media = [self._media_features(m) for m in batch["media"]]
        return prepare_understanding_inputs(batch["input_ids"], self.lm.get_input_embeddings(), media, self.config,
                                            labels=batch["labels"], attention_mask=batch["attention_mask"])

    # ---- generation --------------------------------------------------------------------------------
    def generate_videos(self, prompts: Sequence[torch.Tensor], seed: int | None = None):
        """Prompt ids -> ``VideoSegment`` s with this module's generation settings (see ``lavit.lm.generate_video``)."""
        h = self.hparams
        keyframe = SamplingSettings(top_k=h.top_k, temperature=h.temperature)
        motion = SamplingSettings(do_sample=False) if h.motion_greedy else keyframe
        was_training = self.lm.training
        self.lm.eval()
        try:
            return generate_video(self.lm, self.vocab, prompts, num_clips=h.num_clips, keyframe_guidance=h.keyframe_guidance,
                                  motion_guidance=h.motion_guidance, unconditional=h.unconditional,
                                  keyframe_sampling=keyframe, motion_sampling=motion,
                                  min_keyframe_tokens=h.min_keyframe_tokens, max_keyframe_tokens=h.max_keyframe_tokens, seed=seed)
        finally:
            self.lm.train(was_training)

    @staticmethod
    def prompt_rows(batch: dict[str, Any]) -> list[torch.Tensor]:
        """A prompts batch -> per row its ids: ``"prompt_ids"`` (a list) or the unpadded rows of ``"input_ids"``
        (``MultimodalTokenDataModule``'s predict loader: ``[bos] caption``, left-padded)."""
        if "prompt_ids" in batch:
            return list(batch["prompt_ids"])
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        return [row[m.bool()] if mask is not None else row for row, m in zip(ids, mask if mask is not None else ids)]

    def answer_prompts(self, batch: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stage-3 batch -> per row (the conversation up to its last answer, that answer's ids): the last answer is
        the last run of labelled positions."""
        from lavit.lm.sequences import IGNORE_INDEX

        prompts, answers = [], []
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            ids, labels = ids[mask.bool()], labels[mask.bool()]
            labelled = (labels != IGNORE_INDEX).tolist()
            if not any(labelled):
                raise ValueError("a conversation without an answer to compare with (no labelled token)")
            start = max(i for i, flag in enumerate(labelled) if flag and (i == 0 or not labelled[i - 1]))
            prompts.append(ids[:start])
            answers.append(ids[start:][labels[start:] != IGNORE_INDEX])
        return prompts, answers

    @torch.no_grad()
    def generate_answers(self, batch: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stage-3 batch -> (generated answer ids, reference answer ids) per row: greedy, media spliced in, left
        padding, ``MediaGrammarLogitsProcessor(mode="text")`` (answers never emit a media id)."""
        from transformers import GenerationConfig, LogitsProcessorList

        from lavit.lm.processors import MediaGrammarLogitsProcessor
        from lavit.lm.understanding import prepare_understanding_inputs

        prompts, references = self.answer_prompts(batch)
        media = [self._media_features(m) for m in batch.get("media", [None] * len(prompts))]
        spliced = prepare_understanding_inputs(prompts, self.lm.get_input_embeddings(), media, self.config, padding_side="left")
        config = GenerationConfig(max_new_tokens=self.hparams.max_answer_tokens, do_sample=False, num_beams=1,
                                  eos_token_id=self.vocab.eos_id, pad_token_id=self.config.pad_id, use_cache=True)
        was_training = self.lm.training
        self.lm.eval()
        try:
            out = self.lm.generate(inputs_embeds=spliced["inputs_embeds"], attention_mask=spliced["attention_mask"],
                                   generation_config=config,
                                   logits_processor=LogitsProcessorList([MediaGrammarLogitsProcessor(self.vocab, "text")]))
        finally:
            self.lm.train(was_training)
        answers = []
        for row in out:
            stop = (row == self.vocab.eos_id).nonzero()
            answers.append(row[: int(stop[0])] if len(stop) else row)
        return answers, references

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        if self.hparams.stage == "instruct":
            return self._predict_answers(batch)
        return self._predict_videos(batch, batch_idx)

    def _predict_answers(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per conversation: ``conversation_id``, the generated ``answer`` and the ``reference`` (decoded by the
        DataModule's ``tokenizer`` and cut at the official stop keyword), and their ids."""
        from lavit.lm.conversation import postprocess_answer

        answers, references = self.generate_answers(batch)
        tokenizer = getattr(getattr(self.trainer, "datamodule", None), "tokenizer", None)
        records = []
        for i, (answer, reference) in enumerate(zip(answers, references)):
            record = {"conversation_id": batch["conversation_id"][i]} if "conversation_id" in batch else {}
            if tokenizer is not None:
                record["answer"] = postprocess_answer(tokenizer.decode(answer.tolist(), skip_special_tokens=True))
                record["reference"] = postprocess_answer(tokenizer.decode(reference.tolist(), skip_special_tokens=True))
            record["answer_ids"], record["reference_ids"] = answer.tolist(), reference.tolist()
            records.append(record)
        return records

    def _predict_videos(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """A prompts batch (:meth:`prompt_rows`, plus ``"caption"`` / ``"video_id"`` lists) -> one record per prompt:
        its caption / id and the generated ``keyframe_ids`` and ``motion_ids`` code lists (one per clip); with a
        ``motion_tokenizer`` and a caption that names a camera pan, also ``pan_agrees``."""
        prompts = self.prompt_rows(batch)
        videos = self.generate_videos(prompts, seed=batch_idx)
        signs = self._motion_signs(videos) if self.motion_tokenizer_path() else None
        records = []
        for i, video in enumerate(videos):
            record = {key: batch[key][i] for key in ("caption", "video_id") if key in batch}
            record["keyframe_ids"] = [k.tolist() for k in video.keyframes]
            record["motion_ids"] = [m.tolist() for m in video.motion]
            if signs is not None and "caption" in batch:
                from lavit.lm.motion_direction import caption_pan_direction

                wanted = caption_pan_direction(batch["caption"][i])
                if wanted is not None:
                    record["pan_agrees"] = int(signs[i]) == wanted
            records.append(record)
        return records

    def motion_tokenizer_path(self) -> str | None:
        """``motion_tokenizer_ckpt``, else the DataModule's (``MultimodalTokenDataModule`` tokenizes with it)."""
        if self.hparams.motion_tokenizer_ckpt:
            return self.hparams.motion_tokenizer_ckpt
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(getattr(datamodule, "hparams", None), "motion_tokenizer", None)

    def motion_tokenizer(self):
        """The frozen motion tokenizer of :meth:`motion_tokenizer_path` (loaded once), or None."""
        path = self.motion_tokenizer_path()
        if "motion" not in self._frozen and path:
            from lavit import load_motion_tokenizer

            self._frozen["motion"] = load_motion_tokenizer(path).eval().requires_grad_(False)
        return self._frozen.get("motion")

    def _motion_signs(self, videos) -> torch.Tensor:
        """Sign of the mean horizontal motion of each video's first clip, decoded by the motion tokenizer."""
        from lavit.lm.motion_direction import motion_horizontal_sign

        tokenizer = self.motion_tokenizer().to(self.device)
        codes = torch.stack([v.motion[0] for v in videos]).to(self.device)
        with torch.no_grad():
            return motion_horizontal_sign(tokenizer.detokenize(codes)).cpu()

    def pan_agreement(self, prompts: Sequence[torch.Tensor], captions: Sequence[str], seed: int = 0,
                      samples_per_caption: int = 1) -> tuple[float, int]:
        """Generate ``samples_per_caption`` clips per caption that names a horizontal camera pan, decode their motion,
        and return (the share whose mean horizontal motion has the caption's sign, how many clips were judged)."""
        from lavit.lm.motion_direction import caption_pan_direction

        if self.motion_tokenizer() is None:
            raise ValueError("pan_agreement needs a motion tokenizer to decode motion (motion_tokenizer_ckpt, or the DataModule's)")
        wanted = [caption_pan_direction(c) for c in captions]
        keep = [i for i, w in enumerate(wanted) if w is not None for _ in range(samples_per_caption)]
        if not keep:
            return float("nan"), 0
        signs = self._motion_signs(self.generate_videos([prompts[i] for i in keep], seed=seed))
        hits = sum(int(s) == wanted[i] for s, i in zip(signs.tolist(), keep))
        return hits / len(keep), len(keep)

    def on_validation_epoch_end(self) -> None:
        n = self.hparams.val_generate
        loader = getattr(getattr(self.trainer, "datamodule", None), "prompts_dataloader", None)
        if not n or loader is None or self.trainer.sanity_checking:
            return
        prompts, captions = [], []
        for batch in loader():
            prompts += self.prompt_rows(batch)
            captions += batch["caption"]
            if len(prompts) >= n:
                break
        agreement, count = self.pan_agreement(prompts[:n], captions[:n], samples_per_caption=self.hparams.val_samples_per_caption)
        if count:
            self.log("val/pan_agreement", agreement, batch_size=count)


class GenerationWriter(BasePredictionWriter):
    """Writes ``predict`` records as JSON lines to ``output`` (one file; with several processes
    ``<stem>.rank<k><suffix>`` per process, since each generates its own share of the prompts)."""

    def __init__(self, output: str = "outputs/generations.jsonl"):
        super().__init__(write_interval="batch")
        self.output = Path(output)

    def path(self, trainer: pl.Trainer) -> Path:
        if trainer.world_size > 1:
            return self.output.with_name(f"{self.output.stem}.rank{trainer.global_rank}{self.output.suffix}")
        return self.output

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        path = self.path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        with open(self.path(trainer), "a") as f:
            for record in prediction:
                f.write(json.dumps(record) + "\n")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        print(f"generations written to {self.path(trainer)}")
