"""``KeyframeTokenizer``: trains the LaVIT keyframe tokenizer (selector, merger, quantiser) and its code-to-feature
decoder against the frozen EVA-CLIP encoder (the official release has no training code)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from lavit.detokenizer.keyframe_checkpoint import tokenizer_decoder_config as decoder_config
from lavit.detokenizer.keyframe_decoder import KeyframeFeatureDecoder
from lavit.tokenizers.eva_loading import load_eva_encoder
from lavit.tokenizers.eva_vit import EVAVisionConfig, EVAVisionEncoder
from lavit.tokenizers.keyframe_config import KeyframeTokenizerConfig
from lavit.tokenizers.keyframe_loading import read_keyframe_tokenizer_checkpoint
from lavit.tokenizers.keyframe_tokenizer import KeyframeTokenizer as LavitKeyframeTokenizer
from lavit.tokenizers.quantizer import codebook_statistics
from lavit.weights import load_state_dict_strict
from lightning_modules.codebook_usage import CodebookUsageMixin
from lightning_modules.schedules import adamw_warmup_cosine

IMAGE_KEYS = ("image", "keyframe")  # ImageTextDataModule, VideoTextDataModule
# Parameters the objective does not reach (understanding projection, U-Net conditioning heads): frozen, so that
# the optimiser and DDP see only what is trained.
UNTRAINED = ("tokenizer.vit_proj.", "decoder.unet_proj_1.", "decoder.unet_proj_2.", "decoder.unet_attnpool.")


class KeyframeTokenizer(CodebookUsageMixin, pl.LightningModule):
    """Keyframe tokenizer training with the LaVIT objective.

    images (B, 3, S, S) -> frozen EVA -> features f (B, N, D) -> selector (Gumbel, straight-through, in training;
    deterministic at validation / test) -> merger -> kept tokens -> ``encode_task_layer`` -> EMA quantiser (commitment,
    dead-code restarts) -> decoder ``reconstruct_features`` -> f_hat (B, N, D). Loss:
    ``mean_patches(1 - cos(f_hat, f)) + keep_weight * mean_images(keep_rate - target_ratio)^2
    + topk_weight * CE(selector, its own top-k) + commitment``, k = round(target_ratio * N). The top-k term (the
    selector's cross-entropy towards keeping its k best-scored patches of each image, labels detached) makes the
    selector decisive, so that the deterministic selection (keep where p_keep > 0.5) keeps what the Gumbel draws keep
    in training, ~k patches: with the keep-ratio term alone the selector settles at p_keep ~ target_ratio everywhere
    and deterministic selection keeps (almost) nothing; an entropy penalty instead drives every patch to "drop".
    An image whose draw keeps nothing keeps its highest-scoring patch (the decoder needs one code).

    Batches: ``{"image": (B, 3, S, S)}`` (``ImageTextDataModule``) or ``{"keyframe": ...}`` (``VideoTextDataModule``),
    CLIP-normalised, S = the tokenizer's ``img_size``. Logged: loss terms, ``rec_cos`` (mean per-patch cosine),
    ``keep_ratio``, codebook ``usage`` / ``perplexity`` (per training batch; ``train/epoch_usage`` over the training
    epoch; validation / test: whole epoch, all ranks).

    Args:
        tokenizer: the ``lavit.tokenizers.KeyframeTokenizerConfig`` (preset name or fields); checkpoints store it as
            a mapping under ``hyper_parameters["tokenizer"]``, which ``lavit.load_keyframe_tokenizer`` reads.
        decoder: :class:`KeyframeDecoderConfig` fields over :func:`decoder_config`'s.
        eva_weights: the encoder's weights (``eva_vitg_psz14.bin``, a folder...); None: a random encoder drawn from
            ``encoder_seed`` (tests, the CPU demo: it learns to reconstruct the features of a fixed random encoder).
        init_weights: tokenizer weights to start from (official ``tokenizer_encoder.bin``, safetensors, a checkpoint
            of this module); strict per component; the encoder in them is ignored (``eva_weights`` decides).
        target_ratio, keep_weight: the keep-rate target (0.35 ~ 90 of 256 patches) and the weight of its term.
        topk_weight: weight of the top-k term.
        lr, weight_decay, betas, warmup_steps, min_lr_ratio: AdamW, linear warm-up then cosine decay.
        seed: seed of the training Gumbel draws (a function of seed, global step and rank, so resumes replay them).
    """

    def __init__(
        self,
        tokenizer: KeyframeTokenizerConfig | str | Mapping[str, Any] = "paper",
        decoder: Mapping[str, Any] | None = None,
        eva_weights: str | None = None,
        encoder_seed: int = 0,
        init_weights: str | None = None,
        target_ratio: float = 0.35,
        keep_weight: float = 1.0,
        topk_weight: float = 0.1,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        betas: Sequence[float] = (0.9, 0.99),
        warmup_steps: int = 1000,
        min_lr_ratio: float = 0.1,
        seed: int = 0,
    ):
        super().__init__()
        config = KeyframeTokenizerConfig.coerce(tokenizer)
        if config.encoder is None:
            raise ValueError("tokenizer.encoder is None: training needs the EVA encoder config (a preset or fields)")
        if not 0 < target_ratio <= 1:
            raise ValueError(f"target_ratio must lie in (0, 1], got {target_ratio}")
        tokenizer = config.to_dict()  # noqa: F841 -- save_hyperparameters reads the argument from this frame
        decoder = dict(decoder or {})  # noqa: F841
        self.save_hyperparameters()
        if eva_weights:
            encoder = load_eva_encoder(eva_weights, config.encoder)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(encoder_seed)
                encoder = EVAVisionEncoder(EVAVisionConfig.coerce(config.encoder)).freeze()
        self.tokenizer = LavitKeyframeTokenizer(config, encoder=encoder)
        self.decoder = KeyframeFeatureDecoder(decoder_config(config, self.hparams.decoder))
        if init_weights:
            state, _, where = read_keyframe_tokenizer_checkpoint(init_weights)
            for name in ("token_predictor", "causal_encoder", "quantize", "encode_task_layer", "vit_proj"):
                part = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
                if part or name != "vit_proj":
                    load_state_dict_strict(getattr(self.tokenizer, name), part, f"{where} [{name}]")
            self.tokenizer.quantize.initialized.fill_(True)
        for name, p in self.named_parameters():
            if name.startswith(UNTRAINED):
                p.requires_grad_(False)
        self._epoch_counts: torch.Tensor | None = None
        self._train_counts: torch.Tensor | None = None

    # ---- steps -----------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) CLIP-normalised -> B tensors (n_i,) int64 code ids, deterministic selection."""
        return self.tokenizer.tokenize(images, selection="deterministic")

    def _images(self, batch: Mapping[str, Any]) -> torch.Tensor:
        for key in IMAGE_KEYS:
            if key in batch:
                return batch[key]
        raise KeyError(f"a batch needs one of {IMAGE_KEYS} (B, 3, S, S), got keys {sorted(batch)}")

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor | None:
        images = self._images(batch)
        if images.shape[0] == 0:
            return None
        tok, h = self.tokenizer, self.hparams
        features = tok.encode_images(images).float()  # frozen encoder, no gradient
        pred = tok.selector_scores(features)
        if stage == "train":  # draws from (seed, step, rank): the same after a resume
            generator = torch.Generator(pred.device).manual_seed(h.seed * 1_000_003 + self.global_step * 1009 + self.global_rank)
            keep = tok.keep_policy(pred, "gumbel", generator)
        else:
            keep = tok.keep_policy(pred, "deterministic")
        empty = keep.detach().sum(1) < 0.5
        if bool(empty.any()):  # the decoder needs a code per image: keep the best-scoring patch
            best = F.one_hot(pred[..., 0].argmax(1), keep.shape[1]).to(keep.dtype)
            keep = torch.where(empty[:, None], torch.maximum(keep, best), keep)
        merged = tok.causal_encoder(features, keep)
        kept = keep.detach() > 0.5
        q = tok.quantize(tok.encode_task_layer(merged[kept]))
        rec = self.decoder.reconstruct_features(q.quantized, kept.sum(1)).float()
        cos = F.cosine_similarity(rec, features, dim=-1).mean()
        keep_rate = keep.mean(1)
        keep_loss = (keep_rate - h.target_ratio).pow(2).mean()
        k = max(1, round(h.target_ratio * pred.shape[1]))
        top = torch.zeros_like(pred[..., 0]).scatter_(1, pred[..., 0].detach().topk(k, dim=1).indices, 1.0)
        topk_loss = -(top * pred[..., 0] + (1 - top) * pred[..., 1]).mean()
        with torch.no_grad():
            p_keep = pred[..., 0].exp()
            entropy = -(p_keep * pred[..., 0] + (1 - p_keep) * pred[..., 1]).mean() / math.log(2)
        rec_loss = 1 - cos
        loss = rec_loss + h.keep_weight * keep_loss + h.topk_weight * topk_loss + q.loss
        n = images.shape[0]
        on_step = stage == "train"
        self.log_dict({f"{stage}/loss": loss, f"{stage}/rec_loss": rec_loss, f"{stage}/rec_cos": cos,
                       f"{stage}/keep_ratio": keep_rate.detach().mean(), f"{stage}/keep_loss": keep_loss,
                       f"{stage}/keep_entropy": entropy, f"{stage}/topk_loss": topk_loss, f"{stage}/commit_loss": q.loss},
                      batch_size=n, sync_dist=not on_step, on_step=on_step, on_epoch=True)
        if stage == "train":
            self.log_dict({"train/usage": q.usage, "train/perplexity": q.perplexity}, batch_size=n)
            self._train_counts = q.counts if self._train_counts is None else self._train_counts + q.counts
            self.log("cos", cos, prog_bar=True, batch_size=n, logger=False)
            skipped = getattr(getattr(self.trainer, "datamodule", None), "skipped", None)
            if skipped is not None:
                self.log("data/skipped", float(len(skipped)), batch_size=n)
        else:
            self._epoch_counts = q.counts if self._epoch_counts is None else self._epoch_counts + q.counts
        return loss

    def training_step(self, batch: dict, batch_idx: int):
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def on_train_epoch_start(self) -> None:
        self._train_counts = None

    def on_train_epoch_end(self) -> None:
        if self._train_counts is not None:  # training counts are already summed over ranks by the quantiser
            usage, perplexity = codebook_statistics(self._train_counts)
            self.log_dict({"train/epoch_usage": usage, "train/epoch_perplexity": perplexity}, rank_zero_only=True)

    def train(self, mode: bool = True) -> "KeyframeTokenizer":
        super().train(mode)
        self.tokenizer.train(mode)  # keeps the frozen encoder in eval mode
        return self

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        return adamw_warmup_cosine(self, self.named_parameters(), no_decay_suffixes=("pos_embed", "query_embed"))

    # ---- checkpoints: the quantiser's EMA / restart statistics live outside the state dict ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["quantizer_training_state"] = self.tokenizer.quantize.training_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("quantizer_training_state")
        if state is not None:
            self.tokenizer.quantize.load_training_state(state)
