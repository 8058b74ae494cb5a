"""``VideoDetokenizer``: trains the video detokenizer (``lavit.detokenizer.VideoDetokenizerModel``) with the EDM objective."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from lavit.detokenizer.autoencoder import PixelSpaceAutoencoder, encode_keyframes, encode_video
from lavit.detokenizer.components import load_scheduler, load_vae
from lavit.detokenizer.config import VideoDetokenizerConfig
from lavit.detokenizer.edm import edm_loss_weight
from lavit.detokenizer.model import VideoDetokenizerModel, noise_augment
from lavit.detokenizer.pipeline import VideoDetokenizerPipeline
from lavit.detokenizer.unet import MOTION_TOKENS
from lightning_modules.reconstructions import reconstruction_metrics, reconstruction_picture, write_side_by_side
from lightning_modules.schedules import adamw_warmup_cosine

SVD_SOURCE = "stabilityai/stable-video-diffusion-img2vid-xt"
FROZEN = ("vae", "motion_tokenizer")
"""Submodules re-created from the arguments: never trained, never written to checkpoints."""


def paper_trainable(name: str) -> bool:
    """The paper's trainable set: the motion encoder, ``conv_in`` and every cross-attention (``attn2``) layer."""
    return name.startswith(("motion_encoder.", "unet.conv_in.")) or ".attn2." in name


class VideoDetokenizer(pl.LightningModule):
    """Video detokenizer training: EDM denoising loss of VAE latents given the keyframe and the motion.

    Batches are ``{"frames": (N, T, 3, H, W) uint8, "motion": (N, 2, T, 20, 36), ...}`` (``VideoTextDataModule``
    with ``frame_size``). Frames go to [-1, 1]; the keyframe (frame 0, noise-augmented) is encoded unscaled, the
    clip with ``scaling_factor`` (training targets); motion is resized to latent size. The frozen VAE (and motion
    tokenizer) stay in eval mode and out of checkpoints. Logged: ``train/loss``; ``val/loss_sigma_<s>`` at each
    fixed ``val_sigmas`` noise level (fixed noise), their mean ``val/loss`` and ``val/loss_zero_motion`` (motion
    channels and motion features zeroed: how much the model uses motion; also per noise level).

    Args:
        detokenizer: the ``lavit.detokenizer.VideoDetokenizerConfig``, whole: a preset name ("paper", "tiny",
            "demo") or its fields. Checkpoints store it as a plain mapping under ``hyper_parameters["detokenizer"]``.
        vae: local folder of SVD's VAE (``stabilityai/stable-video-diffusion-img2vid-xt`` or its ``vae/``); None =
            pixel space (``PixelSpaceAutoencoder``), only for ``latent_channels == 3``.
        init_unet: SVD img2vid-xt U-Net weights (folder or file) to start the U-Net from; ``conv_in`` (10 input
            channels) and ``attn2`` (motion cross-attention) stay at initialisation.
        init_weights: a video detokenizer checkpoint to start from (official ``video_3d_unet.bin``, ours).
        trainable: ``"all"``, ``"paper"`` (motion encoder, ``conv_in``, every ``attn2``; the rest frozen) or a
            list of parameter-name prefixes of ``VideoDetokenizerModel`` (``"unet.conv_in"``, ``"motion_encoder"``).
        motion_source: ``"vectors"`` (the clip's motion vectors) or ``"tokenizer"`` (tokenized and decoded by the
            frozen ``motion_tokenizer`` checkpoint: what generation sees).
        lr, weight_decay, betas: AdamW (no decay on biases and norms).
        warmup_steps, min_lr_ratio: linear warm-up then cosine decay to ``lr * min_lr_ratio``.
        ema_decay: EMA of the weights updated every optimizer step (``self.ema``, checkpointed; validation and
            sampling use it); None disables it.
        gradient_checkpointing: recompute U-Net activations in the backward pass.
        val_sigmas: fixed noise levels of the validation loss.
        num_samples, sample_steps, min_guidance, max_guidance: sampled reconstructions of the first validation batch.
        i3d_weights: I3D weights for FVD of the sampled clips (None: no FVD).
        seed: seeds the per-step generator (noise levels, noise, condition dropout) with the global step and rank.
    """

    def __init__(
        self,
        detokenizer: VideoDetokenizerConfig | str | Mapping[str, Any] = "paper",
        vae: str | None = None,
        init_unet: str | None = None,
        init_weights: str | None = None,
        trainable: Literal["all", "paper"] | Sequence[str] = "all",
        motion_source: Literal["vectors", "tokenizer"] = "vectors",
        motion_tokenizer: str | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        betas: Sequence[float] = (0.9, 0.999),
        warmup_steps: int = 500,
        min_lr_ratio: float = 0.1,
        ema_decay: float | None = 0.999,
        gradient_checkpointing: bool = False,
        val_sigmas: Sequence[float] = (0.25, 1.0, 4.0),
        num_samples: int = 2,
        sample_steps: int = 25,
        min_guidance: float = 1.0,
        max_guidance: float = 3.0,
        i3d_weights: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        config = VideoDetokenizerConfig.coerce(detokenizer)  # also a mapping, as load_from_checkpoint passes it
        detokenizer = config.to_dict()  # noqa: F841 -- save_hyperparameters reads the argument from this frame: store plain values
        self.save_hyperparameters()
        if motion_source not in ("vectors", "tokenizer"):
            raise ValueError(f"motion_source must be 'vectors' or 'tokenizer', got {motion_source!r}")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay}")
        if vae is None and config.latent_channels != 3:
            raise ValueError(
                f"vae=None trains in pixel space, which needs latent_channels 3; this detokenizer has latent_channels "
                f"{config.latent_channels}: give `vae`, the local folder of {SVD_SOURCE} (its vae/ subfolder; download it "
                f"from https://huggingface.co/{SVD_SOURCE})"
            )
        self.vae = PixelSpaceAutoencoder() if vae is None else load_vae(vae)
        if self.vae.config.latent_channels != config.latent_channels:
            raise ValueError(f"the VAE in {vae} has {self.vae.config.latent_channels} latent channels, the detokenizer "
                             f"expects latent_channels {config.latent_channels}")
        self.motion_tokenizer = None
        if motion_source == "tokenizer":
            if motion_tokenizer is None:
                raise ValueError("motion_source='tokenizer' needs motion_tokenizer: a MotionVQVAE checkpoint or motion_tokenizer.bin")
            from lavit.tokenizers.loading import load_motion_tokenizer

            self.motion_tokenizer = load_motion_tokenizer(motion_tokenizer)
        for module in (self.vae, self.motion_tokenizer):
            if module is not None:
                module.eval().requires_grad_(False)

        self.model = VideoDetokenizerModel(config)
        if init_unet:
            from lavit.detokenizer.loading import load_svd_unet_weights

            load_svd_unet_weights(self.model.unet, init_unet)
        if init_weights:
            from lavit.detokenizer.loading import load_video_detokenizer

            self.model.load_state_dict(load_video_detokenizer(init_weights).state_dict())
        self._set_trainable(trainable)
        if gradient_checkpointing:
            self.model.unet.enable_gradient_checkpointing()
        self.ema = None if ema_decay is None else copy.deepcopy(self.model).requires_grad_(False).eval()
        self.last_video: Path | None = None
        self.last_picture: Path | None = None

    def _set_trainable(self, trainable: str | Sequence[str]) -> None:
        names = [name for name, _ in self.model.named_parameters()]
        if trainable == "all":
            chosen = set(names)
        elif trainable == "paper":
            chosen = {n for n in names if paper_trainable(n)}
        elif isinstance(trainable, str):
            raise ValueError(f"trainable must be 'all', 'paper' or a list of parameter-name prefixes, got {trainable!r}")
        else:
            prefixes = list(trainable)
            unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
            if unmatched or not prefixes:
                raise ValueError(f"trainable prefixes {unmatched or prefixes} match no parameter of the detokenizer "
                                 f"(names start with 'unet.' or 'motion_encoder.', e.g. 'unet.conv_in')")
            chosen = {n for n in names if n.startswith(tuple(prefixes))}
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in chosen)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in (self.vae, self.motion_tokenizer, self.ema):  # frozen: no dropout / norm-statistics updates
            if module is not None:
                module.eval()
        return self

    # ---- batches -> model inputs -------------------------------------------------------------------
    def _generator(self, *keys: int) -> torch.Generator:
        """A CPU generator seeded from ``(seed, *keys)``: the same draws on resume, different per step and rank."""
        state = np.random.SeedSequence([int(self.hparams.seed), *[int(k) for k in keys]]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    @torch.no_grad()
    def _inputs(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """-> (latents (N, T, c, h, w), keyframe latent (N, c, h, w), motion (N, 2, T, h, w) at latent size)."""
        if "frames" not in batch:
            raise KeyError(f"the batch has no 'frames' (keys: {sorted(batch)}): set the data module's frame_size option "
                           "(VideoTextDataModule(frame_size=(H, W)), YAML data.init_args.frame_size) so batches carry the clip frames")
        frames, motion = batch["frames"], batch["motion"]
        if frames.shape[0] == 0:  # every video of this batch was unreadable
            return None
        if frames.ndim != 5 or frames.shape[2] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"batch['frames'] must be uint8 (N, T, 3, H, W), got {tuple(frames.shape)} {frames.dtype}")
        if motion.shape[0] != frames.shape[0] or motion.shape[2] != frames.shape[1]:
            raise ValueError(f"batch['motion'] {tuple(motion.shape)} must be (N, 2, T, h, w) for frames {tuple(frames.shape)}")
        pixels = frames.float() / 127.5 - 1.0
        keyframe = noise_augment(pixels[:, 0], self.model.config.noise_aug_strength, generator)
        keyframe_latent = encode_keyframes(self.vae, keyframe)
        latents = encode_video(self.vae, pixels)
        if self.motion_tokenizer is not None:
            motion = self.motion_tokenizer.detokenize(self.motion_tokenizer.tokenize(motion.float()))
        return latents, keyframe_latent, self.model.motion_condition(motion, latents.shape[-2:])

    # ---- steps -------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int):
        generator = self._generator(self.global_step, self.global_rank)
        inputs = self._inputs(batch, generator)
        if inputs is None:
            return None
        latents, keyframe_latent, motion = inputs
        loss = self.model.loss(latents, keyframe_latent, motion, generator=generator).loss.mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=latents.shape[0])
        skipped = getattr(getattr(self.trainer, "datamodule", None), "skipped", None)
        if skipped is not None:
            self.log("data/skipped", float(len(skipped)), batch_size=latents.shape[0])
        return loss

    @property
    def eval_model(self) -> VideoDetokenizerModel:
        """The weights validation and sampling use: the EMA when there is one."""
        return self.ema if self.ema is not None else self.model

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        generator = self._generator(batch_idx, 2**31)  # fixed per batch: the same noise at every validation
        inputs = self._inputs(batch, generator)
        if inputs is None:
            return
        latents, keyframe_latent, motion = inputs
        model, b = self.eval_model, latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        zero_motion = torch.zeros_like(motion)
        zero_features = torch.zeros(b, motion.shape[2], MOTION_TOKENS, model.config.motion_encoder.out_channels, device=latents.device)
        losses, zero_losses = {}, {}
        for s in self.hparams.val_sigmas:
            sigma = torch.full((b,), float(s), device=latents.device)
            losses[f"val/loss_sigma_{s:g}"] = model.loss(latents, keyframe_latent, motion, sigma=sigma, noise=noise, drop_conditions=False).loss.mean()
            noisy = latents + float(s) * noise
            denoised = model.denoise(noisy, sigma, keyframe_latent, zero_motion, zero_features, anchor=latents[:, 0])
            zero_losses[f"val/loss_zero_motion_sigma_{s:g}"] = (edm_loss_weight(sigma) * (denoised.float() - latents.float()).pow(2).flatten(1).mean(1)).mean()
        losses["val/loss"] = torch.stack(list(losses.values())).mean()
        losses["val/loss_zero_motion"] = torch.stack(list(zero_losses.values())).mean()
        losses.update(zero_losses)
        self.log_dict(losses, batch_size=b, sync_dist=True, on_epoch=True)
        if batch_idx == 0 and self.hparams.num_samples > 0 and not self.trainer.sanity_checking:
            self._reconstruct(batch)

    # ---- sampled reconstructions -------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, frames: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Keyframe (frame 0 of ``frames`` (N, T, 3, H, W) uint8) + motion (N, 2, T, H', W') -> (N, T, 3, H, W) float in
        [-1, 1], sampled with the EMA weights (``sample_steps``, guidance ``min_guidance`` .. ``max_guidance``, ``seed``)."""
        h = self.hparams
        pipe = VideoDetokenizerPipeline(self.eval_model, self.vae, load_scheduler(), self.motion_tokenizer)
        keyframe = frames[:, 0].float() / 127.5 - 1.0
        source = {"motion_tokens": self.motion_tokenizer.tokenize(motion.float())} if self.motion_tokenizer is not None else {"motion": motion}
        out = pipe.generate(keyframe, **source, num_frames=frames.shape[1], num_steps=h.sample_steps, min_guidance=h.min_guidance,
                            max_guidance=h.max_guidance, seed=h.seed, output_type="pt")
        return out.frames.clamp(-1, 1)

    def _reconstruct(self, batch: dict) -> None:
        """PSNR / SSIM of sampled clips and of the repeated-keyframe baseline; mp4 and picture to the log dir and logger.

        Every rank asks for the folder (``trainer.log_dir`` is a broadcast under DDP: rank 0 alone would hang), then
        rank 0 samples and writes."""
        self._reconstruct_on_rank_zero(batch, Path(self.trainer.log_dir or self.trainer.default_root_dir) / "reconstructions")

    @rank_zero_only
    def _reconstruct_on_rank_zero(self, batch: dict, folder: Path) -> None:
        k = self.hparams.num_samples
        frames, motion = batch["frames"][:k], batch["motion"][:k]
        truth = frames.float() / 127.5 - 1.0
        reconstruction = self.sample(frames, motion).to(truth)
        metrics = reconstruction_metrics(reconstruction, truth)
        if self.hparams.i3d_weights:
            from metrics.fvd import FVD

            fvd = FVD(weights=self.hparams.i3d_weights, value_range=(-1.0, 1.0)).to(truth.device)
            fvd.update(truth, real=True)
            fvd.update(reconstruction, real=False)
            metrics["val/fvd"] = fvd.compute().float()
        self.log_dict(metrics, rank_zero_only=True, batch_size=k)
        to_uint8 = lambda x: ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()  # noqa: E731
        self.last_video = write_side_by_side(to_uint8(truth), to_uint8(reconstruction), folder / f"step{self.global_step:06d}.mp4")
        picture = reconstruction_picture(to_uint8(truth), to_uint8(reconstruction))
        self.last_picture = folder / f"step{self.global_step:06d}.png"
        Image.fromarray(picture).save(self.last_picture)
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image("val/truth_vs_reconstruction", picture, self.global_step, dataformats="HWC")
            elif hasattr(logger, "log_image"):  # Weights & Biases, Neptune, ...
                logger.log_image(key="val/truth_vs_reconstruction", images=[picture], step=self.global_step)

    # ---- EMA ---------------------------------------------------------------------------------------
    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``ema = decay * ema + (1 - decay) * model`` for the trained parameters (frozen ones stay equal)."""
        if self.ema is None:
            return
        weight = 1.0 - self.hparams.ema_decay
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            if p.requires_grad:
                e.lerp_(p.detach().to(e.dtype), weight)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    # ---- checkpoints: frozen modules come from the arguments, not the file -------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(tuple(f"{m}." for m in FROZEN))]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for name in FROZEN:
            module = getattr(self, name)
            if module is not None:
                state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})

    @rank_zero_only
    def on_fit_end(self) -> None:
        ckpt = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or getattr(self.trainer.checkpoint_callback, "best_model_path", "")
        if ckpt:
            print(f"checkpoint: {ckpt}")
        if self.last_video is not None:
            print(f"reconstruction video: {self.last_video}")
        if self.last_picture is not None:
            print(f"reconstruction picture: {self.last_picture}")

    # ---- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self):
        return adamw_warmup_cosine(self, self.model.named_parameters())
