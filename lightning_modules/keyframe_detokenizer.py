"""``KeyframeDetokenizer``: trains the SDXL-shaped U-Net of the keyframe detokenizer (code ids -> image) from scratch
with the DDPM epsilon objective, conditioned by a frozen keyframe tokenizer's code-to-feature decoder (the official
release has no training code for it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torchmetrics.functional.image import peak_signal_noise_ratio

from lavit.detokenizer.keyframe_checkpoint import (
    COMPONENTS_KEY,
    CONDITION_HEADS,
    DEFAULT_SCHEDULER,
    _pixel_space_or_vae,
    build_unet,
    load_keyframe_tokenizer_parts,
)
from lavit.detokenizer.keyframe_pipeline import NUM_TIME_IDS, KeyframeDetokenizerPipeline
from lavit.video.keyframes import CLIP_MEAN, CLIP_STD
from lightning_modules.schedules import adamw_warmup_cosine

IMAGE_KEYS = ("keyframe", "image")  # VideoTextDataModule, ImageTextDataModule


def keyframe_pixels(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """CLIP-normalised ``(B, 3, S, S)`` keyframes -> ``(B, 3, h, w)`` pixels in [-1, 1] at ``size = (h, w)``.

    The data modules squash the whole frame to S x S (no crop), so resizing back to the video's aspect (bicubic,
    antialiased) recovers the frame at ``(h, w) <= (S, S)``, without decoding the frames a second time."""
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
    unit = (images.float() * std + mean).clamp(0, 1)
    unit = F.interpolate(unit, size=tuple(size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    return unit * 2 - 1


@torch.no_grad()
def tokenize_keyframes(tokenizer, images: torch.Tensor) -> list[torch.Tensor]:
    """CLIP-normalised ``(B, 3, S, S)`` -> B ``(n_i,)`` code ids, deterministic selection; an image whose selection
    keeps nothing keeps its best-scoring patch (as ``KeyframeTokenizer`` training does: the decoder needs a code)."""
    features = tokenizer.encode_images(images).float()
    pred = tokenizer.selector_scores(features)
    keep = tokenizer.keep_policy(pred, "deterministic")
    empty = keep.sum(1) < 0.5
    if bool(empty.any()):
        best = F.one_hot(pred[..., 0].argmax(1), keep.shape[1]).to(keep.dtype)
        keep = torch.where(empty[:, None], torch.maximum(keep, best), keep)
    kept = keep > 0.5
    _, ids = tokenizer.quantize.tokenize(tokenizer.encode_task_layer(tokenizer.causal_encoder(features, keep)[kept]))
    return list(ids.split(kept.sum(1).tolist()))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, h, w)`` in [-1, 1] -> ``(B, h, w, 3)`` uint8 on the CPU."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()


def sample_grid(columns: Sequence[torch.Tensor], min_side: int = 96, gap: int = 4) -> np.ndarray:
    """One row per image, one column per ``(B, h, w, 3)`` uint8 batch (truth | sample | ...), enlarged (nearest) by an
    integer factor to at least ``min_side`` pixels; white gaps. Returns ``(rows, cols, 3)`` uint8."""
    h, w = columns[0].shape[1:3]
    scale = max(1, -(-min_side // min(h, w)))
    big = [c.repeat_interleave(scale, 1).repeat_interleave(scale, 2).numpy() for c in columns]
    white_v = np.full((h * scale, gap, 3), 255, np.uint8)
    rows = []
    for i in range(columns[0].shape[0]):
        parts = [p for c in big for p in (c[i], white_v)][:-1]
        rows += [np.concatenate(parts, axis=1), np.full((gap, sum(p.shape[1] for p in parts), 3), 255, np.uint8)]
    return np.concatenate(rows[:-1], axis=0)


class KeyframeDetokenizer(pl.LightningModule):
    """Keyframe detokenizer training: keyframes -> frozen tokenizer (:func:`tokenize_keyframes`) -> code ids -> frozen
    decoder ``decode_ids`` -> ``(prompt (B, n_q, P), pooled (B, Q))`` -> U-Net noise prediction of the keyframe at
    ``image_size`` (VAE latent, or pixels with ``vae: null``), DDPM epsilon MSE at uniform timesteps of a
    ``DDIMScheduler``. With probability ``condition_dropout`` an image's prompt and pooled are zeroed (the pipeline's
    unconditional branch), so classifier-free guidance works. SDXL time ids come from the pipeline's own helpers.

    Batches: ``{"keyframe": (B, 3, S, S)}`` CLIP-normalised at the tokenizer's ``img_size`` (``VideoTextDataModule``
    with ``keyframe_size``; ``{"image": ...}`` of ``ImageTextDataModule`` too). The U-Net target is the keyframe resized
    to ``image_size`` inside the module (:func:`keyframe_pixels`). Logged: ``train/loss``; ``val/loss_t<t>`` at fixed
    timesteps and noise, their mean ``val/loss`` and ``val/loss_uncond`` (conditioning zeroed: how much the codes
    help; also per timestep, ``val/loss_uncond_t<t>``); on the first validation batch, samples through the real :class:`KeyframeDetokenizerPipeline`:
    ``val/psnr`` (guided sample vs truth), ``val/psnr_uncond`` (unconditional sample vs truth) and
    ``val/psnr_sample_vs_uncond``, with a PNG grid truth | sample | unconditional in ``<log_dir>/samples/``.

    Checkpoints hold the U-Net only, and under ``"keyframe_detokenizer"`` the keyframe tokenizer checkpoint path, the
    resolved U-Net config, the VAE folder, the scheduler config and ``image_size`` (``self.components``), all that
    ``lavit.load_keyframe_detokenizer(ckpt)`` needs.

    Args:
        keyframe_tokenizer: a ``KeyframeTokenizer`` Lightning checkpoint (its tokenizer, codebook and decoder; frozen,
            not in this module's state dict).
        unet: ``diffusers.UNet2DConditionModel`` config (trained from scratch). ``cross_attention_dim`` and
            ``projection_class_embeddings_input_dim`` default to the decoder's prompt width and pooled + 6 x
            ``addition_time_embed_dim``, ``in_channels`` / ``out_channels`` to the VAE's latent channels;
            ``addition_embed_type`` is "text_time".
        vae: None = pixel space (``PixelSpaceAutoencoder``), or a local ``AutoencoderKL`` folder (frozen).
        image_size: ``(h, w)`` of the generated keyframes; multiples of the pipeline's ``spatial_multiple``.
        scheduler: ``DDIMScheduler`` fields over SDXL's (``DEFAULT_SCHEDULER``).
        condition_dropout: probability of zeroing an image's conditioning in training.
        train_condition_heads: also train the decoder's U-Net conditioning heads (``unet_proj_1``, ``unet_proj_2``,
            ``unet_attnpool``: features -> prompt / pooled), which ``KeyframeTokenizer`` training leaves at their
            initialisation (its objective does not reach them; at init_std 0.02 they give a near-constant ~1e-2
            conditioning); they are checkpointed as ``condition_heads.*`` and replace the tokenizer checkpoint's.
        lr, weight_decay, betas, warmup_steps, min_lr_ratio: AdamW, linear warm-up then cosine decay.
        val_timesteps: the fixed timesteps of the validation loss.
        num_samples, sample_steps, guidance: sampled images of the first validation batch (0 samples: none).
        seed: seeds timesteps, noise and dropout per (step, rank), the validation noise and the sampler.
    """

    def __init__(
        self,
        keyframe_tokenizer: str,
        unet: Mapping[str, Any],
        vae: str | None = None,
        image_size: Sequence[int] = (20, 36),
        scheduler: Mapping[str, Any] | None = None,
        condition_dropout: float = 0.1,
        train_condition_heads: bool = True,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        betas: Sequence[float] = (0.9, 0.999),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        val_timesteps: Sequence[int] = (100, 300, 500, 700, 900),
        num_samples: int = 4,
        sample_steps: int = 25,
        guidance: float = 3.0,
        seed: int = 0,
    ):
        super().__init__()
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must lie in [0, 1), got {condition_dropout}")
        if len(image_size) != 2 or min(int(s) for s in image_size) < 1:
            raise ValueError(f"image_size must be (h, w) positive integers, got {image_size!r}")
        tokenizer, decoder, codebook = load_keyframe_tokenizer_parts(keyframe_tokenizer)
        vae_model = _pixel_space_or_vae(vae)
        dc = decoder.config
        unet = dict(unet)
        unet.setdefault("addition_embed_type", "text_time")
        unet.setdefault("addition_time_embed_dim", 8)
        unet.setdefault("cross_attention_dim", dc.prompt_dim)
        unet.setdefault("projection_class_embeddings_input_dim", dc.pooled_dim + NUM_TIME_IDS * unet["addition_time_embed_dim"])
        unet.setdefault("in_channels", vae_model.config.latent_channels)
        unet.setdefault("out_channels", vae_model.config.latent_channels)
        scheduler = {**DEFAULT_SCHEDULER, **dict(scheduler or {})}
        if scheduler["prediction_type"] not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"scheduler.prediction_type must be 'epsilon', 'v_prediction' or 'sample', got {scheduler['prediction_type']!r}")
        self.save_hyperparameters()
        # What the checkpoint records for loading (LightningCLI stores the config's arguments as hparams, not these).
        self.components = dict(keyframe_tokenizer=str(keyframe_tokenizer), unet=unet, vae=vae, scheduler=scheduler,
                               image_size=[int(s) for s in image_size])
        self.image_size = tuple(self.components["image_size"])  # (h, w)
        self.unet = build_unet(unet)
        # shared with the frozen decoder: registered here, they are trained and checkpointed (condition_heads.*)
        self.condition_heads = torch.nn.ModuleDict({name: getattr(decoder, name) for name in CONDITION_HEADS}) \
            if train_condition_heads else None
        if self.condition_heads is not None:
            self.condition_heads.requires_grad_(True)
        self.noise_scheduler = DDIMScheduler.from_config(scheduler)
        # Frozen parts in a plain dict: out of the state dict, the optimiser and Lightning's train() calls.
        self._frozen: dict[str, Any] = dict(tokenizer=tokenizer, decoder=decoder, vae=vae_model)
        self._frozen_device = torch.device("cpu")
        # The sampler shares the U-Net, decoder and VAE objects; it raises here if they do not fit together.
        self.pipeline = KeyframeDetokenizerPipeline(decoder, codebook, self.unet, vae_model, DDIMScheduler.from_config(scheduler))
        self.pipeline.image_size = self.image_size
        self.pipeline.keyframe_tokenizer = tokenizer
        self.unet.train()  # the pipeline put it in eval mode; Lightning keeps the modes it finds
        multiple = self.pipeline.spatial_multiple
        if any(s % multiple for s in self.image_size):
            raise ValueError(f"image_size {self.image_size} must be multiples of {multiple} (the VAE factor "
                             f"x 2 ** (U-Net down blocks - 1))")
        self.last_picture: Path | None = None

    # ---- frozen parts ------------------------------------------------------------------------------
    def _placed(self) -> dict[str, Any]:
        """The frozen modules (and the pipeline's codebook), moved to this module's device on first use there, in
        eval mode."""
        if self._frozen_device != self.device:
            self.pipeline.to(self.device)
            self._frozen["tokenizer"].to(self.device)
            self._frozen_device = self.device
        for module in self._frozen.values():
            module.eval()
        return self._frozen

    def _generator(self, *keys: int) -> torch.Generator:
        """A CPU generator seeded from ``(seed, *keys)``: the same draws on resume, different per step and rank."""
        state = np.random.SeedSequence([int(self.hparams.seed), *[int(k) for k in keys]]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def _images(self, batch: Mapping[str, Any]) -> torch.Tensor:
        for key in IMAGE_KEYS:
            if key in batch:
                return batch[key]
        raise KeyError(f"a batch needs one of {IMAGE_KEYS} (B, 3, S, S) CLIP-normalised, got keys {sorted(batch)}")

    def encode(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` CLIP-normalised -> (code ids per image, prompt ``(B, n_q, P)``, pooled ``(B, Q)``, target
        latents ``(B, c, h', w')``, ``mode() x scaling_factor`` of the keyframe at ``image_size``). Only the
        conditioning heads (in training, ``train_condition_heads``) get gradients."""
        parts = self._placed()
        decoder = parts["decoder"]
        with torch.no_grad():
            ids = tokenize_keyframes(parts["tokenizer"], images)
            features = decoder.reconstruct_features(*decoder.codes_of(ids, self.pipeline.codebook))
            latents = self.pipeline.encode_image(keyframe_pixels(images, self.image_size))
        prompt, pooled = decoder.condition(features)  # the pipeline's decode_ids, split where the heads begin
        return ids, prompt, pooled, latents

    def noise_loss(self, latents: torch.Tensor, prompt: torch.Tensor, pooled: torch.Tensor, timesteps: torch.Tensor,
                   noise: torch.Tensor) -> torch.Tensor:
        """Per-image MSE ``(B,)`` of the U-Net at ``timesteps (B,)`` with ``noise`` like ``latents``, against the
        scheduler's ``prediction_type`` target: the noise (``"epsilon"``, the default), ``"v_prediction"``'s velocity
        or ``"sample"``'s clean latents (the pipeline's DDIM sampler follows the same config)."""
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        unet_prompt, added = self.pipeline._conditioning(prompt.to(self.pipeline.dtype), pooled.to(self.pipeline.dtype),
                                                         self.image_size)["cond"]
        pred = self.unet(noisy.to(self.pipeline.dtype), timesteps, encoder_hidden_states=unet_prompt, added_cond_kwargs=added).sample
        kind = self.noise_scheduler.config.prediction_type
        target = {"epsilon": noise, "sample": latents}.get(kind)
        target = self.noise_scheduler.get_velocity(latents, noise, timesteps) if kind == "v_prediction" else target
        return (pred.float() - target.float()).pow(2).flatten(1).mean(1)

    # ---- steps -------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int):
        images = self._images(batch)
        if images.shape[0] == 0:  # every video of this batch was unreadable
            return None
        _, prompt, pooled, latents = self.encode(images)
        b, g = latents.shape[0], self._generator(self.global_step, self.global_rank)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=g).to(self.device)
        noise = torch.randn(latents.shape, generator=g).to(latents)
        keep = (torch.rand(b, generator=g) >= self.hparams.condition_dropout).to(self.device)
        prompt = prompt * keep[:, None, None].to(prompt.dtype)
        pooled = pooled * keep[:, None].to(pooled.dtype)
        loss = self.noise_loss(latents, prompt, pooled, timesteps, noise).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        skipped = getattr(getattr(self.trainer, "datamodule", None), "skipped", None)
        if skipped is not None:
            self.log("data/skipped", float(len(skipped)), batch_size=b)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        images = self._images(batch)
        if images.shape[0] == 0:
            return
        ids, prompt, pooled, latents = self.encode(images)
        b, g = latents.shape[0], self._generator(batch_idx, 2**31)  # fixed per batch: the same noise at every validation
        noise = torch.randn(latents.shape, generator=g).to(latents)
        losses, uncond = {}, []
        for t in self.hparams.val_timesteps:
            timesteps = torch.full((b,), int(t), device=self.device, dtype=torch.long)
            losses[f"val/loss_t{int(t)}"] = self.noise_loss(latents, prompt, pooled, timesteps, noise).mean()
            uncond.append(self.noise_loss(latents, torch.zeros_like(prompt), torch.zeros_like(pooled), timesteps, noise).mean())
        losses["val/loss"] = torch.stack(list(losses.values())).mean()
        losses["val/loss_uncond"] = torch.stack(uncond).mean()
        losses.update({f"val/loss_uncond_t{int(t)}": u for t, u in zip(self.hparams.val_timesteps, uncond)})
        self.log_dict(losses, batch_size=b, sync_dist=True, on_epoch=True)
        if batch_idx == 0 and self.hparams.num_samples > 0 and not self.trainer.sanity_checking:
            self._samples(ids, latents)

    # ---- sampled images ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, code_ids: Sequence[torch.Tensor], guidance: float | None = None) -> torch.Tensor:
        """Code ids per image -> ``(B, 3, h, w)`` float pixels in [-1, 1] at ``image_size``, through the real pipeline
        (``sample_steps``, ``guidance`` (default the module's; 0 = the unconditional branch alone), ``seed``)."""
        h = self.hparams
        self._placed()
        out = self.pipeline.generate(list(code_ids), size=self.image_size, num_steps=h.sample_steps,
                                     guidance=h.guidance if guidance is None else guidance, seed=h.seed, output_type="pt")
        return out.images.clamp(-1, 1)

    def _samples(self, ids: list[torch.Tensor], latents: torch.Tensor) -> None:
        # every rank asks for the folder (trainer.log_dir is a broadcast under DDP), then rank 0 samples and writes
        self._samples_on_rank_zero(ids, latents, Path(self.trainer.log_dir or self.trainer.default_root_dir) / "samples")

    @rank_zero_only
    def _samples_on_rank_zero(self, ids: list[torch.Tensor], latents: torch.Tensor, folder: Path) -> None:
        k = self.hparams.num_samples
        truth = self.pipeline.decode_latents(latents[:k]).clamp(-1, 1)
        sample, uncond = self.sample(ids[:k]).to(truth), self.sample(ids[:k], guidance=0.0).to(truth)
        psnr = lambda a, b: peak_signal_noise_ratio(a.float(), b.float(), data_range=(-1.0, 1.0))  # noqa: E731
        self.log_dict({"val/psnr": psnr(sample, truth), "val/psnr_uncond": psnr(uncond, truth),
                       "val/psnr_sample_vs_uncond": psnr(sample, uncond)}, rank_zero_only=True, batch_size=len(truth))
        picture = sample_grid([to_uint8(truth), to_uint8(sample), to_uint8(uncond)])
        folder.mkdir(parents=True, exist_ok=True)
        self.last_picture = folder / f"step{self.global_step:06d}.png"
        Image.fromarray(picture).save(self.last_picture)
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image("val/truth_sample_uncond", picture, self.global_step, dataformats="HWC")
            elif hasattr(logger, "log_image"):  # Weights & Biases, Neptune, ...
                logger.log_image(key="val/truth_sample_uncond", images=[picture], step=self.global_step)

    # ---- checkpoints: the U-Net, and what lavit.load_keyframe_detokenizer needs besides ---------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[COMPONENTS_KEY] = self.components

    @rank_zero_only
    def on_fit_end(self) -> None:
        ckpt = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or getattr(self.trainer.checkpoint_callback, "best_model_path", "")
        if ckpt:
            print(f"checkpoint: {ckpt}")
        if self.last_picture is not None:
            print(f"samples (truth | sample | unconditional): {self.last_picture}")

    # ---- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self):
        return adamw_warmup_cosine(self, self.named_parameters())
