"""``MotionVQVAE``: trains the motion tokenizer (``lavit.tokenizers.MotionTokenizer``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from lavit.tokenizers.loading import is_legacy_hyperparameters, read_motion_tokenizer_checkpoint
from lavit.tokenizers.motion_config import MotionTokenizerConfig
from lavit.tokenizers.motion_tokenizer import MotionTokenizer
from lavit.video.fields import OFFICIAL_MOTION_STD, OFFICIAL_TOKENIZER_SCALE
from lavit.video.flow_image import motion_comparison_picture
from lavit.weights import load_state_dict_strict
from lightning_modules.codebook_usage import CodebookUsageMixin
from lightning_modules.schedules import adamw_warmup_cosine


class MotionVQVAE(CodebookUsageMixin, pl.LightningModule):
    """Motion VQ-VAE training: MSE reconstruction + commitment, EMA codebook, AdamW with warm-up + cosine.

    Batches are ``{"motion": (N, 2, 24, 20, 36), ...}`` (``VideoTextDataModule``). Logged: total,
    reconstruction and commitment losses; endpoint error (EPE, mean L2 norm of the per-cell motion
    error) in tokenizer units and in pixels of a ``pixel_frame_size`` frame; codebook usage and
    perplexity (validation/test: over the whole epoch and all ranks). Each validation epoch writes a
    picture of input vs reconstructed motion to ``<log_dir>/reconstructions/`` and to the logger.

    Args:
        tokenizer: the ``lavit.tokenizers.MotionTokenizerConfig``, whole: a preset name (``"paper"``,
            ``"demo"``, ``"tiny"``) or the fields (YAML ``tokenizer: {dim: 32, ...}``). Checkpoints store
            it as a plain mapping under ``hyper_parameters["tokenizer"]``.
        lr, weight_decay, betas: AdamW (no decay on biases, norms and position embeddings).
        warmup_steps, min_lr_ratio: linear warm-up then cosine decay to ``lr * min_lr_ratio``.
        normalization: how the data module normalised motion ("official" / "unit" / "pixels"),
            used to express EPE in pixels.
        pixel_frame_size: (H, W) of the frame EPE in pixels refers to (the 20 x 36 grid ~ 320 x 576).
        init_weights: optional tokenizer weights to start from (official ``motion_tokenizer.bin``,
            safetensors, or a checkpoint of this module); keys and shapes must match ``tokenizer``.
        num_pictures: clips shown in the validation picture.
    """

    def __init__(
        self,
        tokenizer: MotionTokenizerConfig | str = "paper",
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        betas: Sequence[float] = (0.9, 0.99),
        warmup_steps: int = 1000,
        min_lr_ratio: float = 0.1,
        normalization: Literal["official", "unit", "pixels"] = "official",
        pixel_frame_size: Sequence[int] = (320, 576),
        init_weights: str | None = None,
        num_pictures: int = 2,
    ):
        super().__init__()
        config = MotionTokenizerConfig.coerce(tokenizer)  # also a mapping, as load_from_checkpoint passes it
        tokenizer = config.to_dict()  # noqa: F841 -- save_hyperparameters reads the argument from this frame: store plain values
        self.save_hyperparameters()
        self.tokenizer = MotionTokenizer(config)
        if init_weights:
            checkpoint = read_motion_tokenizer_checkpoint(init_weights)
            load_state_dict_strict(self.tokenizer, checkpoint.state, checkpoint.source)
            self.tokenizer.quantize.initialized.fill_(True)
        h, w = pixel_frame_size
        unit_to_px = torch.tensor([float(w), float(h)])
        if normalization == "official":
            unit_to_px = unit_to_px * torch.tensor(OFFICIAL_MOTION_STD) / OFFICIAL_TOKENIZER_SCALE
        elif normalization == "pixels":
            unit_to_px = torch.ones(2)
        self.register_buffer("to_pixels", unit_to_px.view(1, 2, 1, 1, 1), persistent=False)
        self._epoch_counts: torch.Tensor | None = None
        self.last_picture: Path | None = None

    # ---- steps -----------------------------------------------------------------------------
    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, 2, 24, 20, 36) -> (B, 135) token ids."""
        return self.tokenizer.tokenize(motion)

    def _shared_step(self, batch: dict, stage: str) -> dict[str, torch.Tensor] | None:
        motion = batch["motion"]
        if motion.shape[0] == 0:  # every video of this batch was unreadable
            return None
        rec, q = self.tokenizer(motion)
        rec = rec.float()
        rec_loss = F.mse_loss(rec, motion)
        loss = rec_loss + q.loss
        err = rec.detach() - motion
        epe = err.norm(dim=1).mean()
        epe_px = (err * self.to_pixels).norm(dim=1).mean()
        n = motion.shape[0]
        sync = stage != "train"
        self.log_dict(
            {f"{stage}/loss": loss, f"{stage}/rec_loss": rec_loss, f"{stage}/commit_loss": q.loss, f"{stage}/epe": epe, f"{stage}/epe_px": epe_px},
            prog_bar=False, batch_size=n, sync_dist=sync, on_step=stage == "train", on_epoch=True,
        )
        if stage == "train":
            self.log_dict({"train/usage": q.usage, "train/perplexity": q.perplexity}, batch_size=n)
            self.log("epe", epe, prog_bar=True, batch_size=n, logger=False)
            skipped = getattr(getattr(self.trainer, "datamodule", None), "skipped", None)
            if skipped is not None:
                self.log("data/skipped", float(len(skipped)), batch_size=n)
        else:
            self._epoch_counts = q.counts if self._epoch_counts is None else self._epoch_counts + q.counts
        return {"loss": loss, "rec": rec.detach(), "motion": motion}

    def training_step(self, batch: dict, batch_idx: int):
        out = self._shared_step(batch, "train")
        return None if out is None else out["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self._shared_step(batch, "val")
        if out is not None and batch_idx == 0 and not self.trainer.sanity_checking:
            k = self.hparams.num_pictures
            # every rank asks for the folder: trainer.log_dir is a broadcast under DDP (rank 0 alone would hang)
            folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "reconstructions"
            self._write_picture(out["motion"][:k].float().cpu().numpy(), out["rec"][:k].cpu().numpy(), folder)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    # ---- pictures ----------------------------------------------------------------------------
    @rank_zero_only
    def _write_picture(self, inputs: np.ndarray, recs: np.ndarray, folder: Path) -> None:
        picture = motion_comparison_picture(inputs, recs)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch{self.current_epoch:03d}.png"
        Image.fromarray(picture).save(path)
        self.last_picture = path
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image("val/motion_input_vs_reconstruction", picture, self.global_step, dataformats="HWC")
            elif hasattr(logger, "log_image"):  # Weights & Biases, Neptune, ...
                logger.log_image(key="val/motion_input_vs_reconstruction", images=[picture], step=self.global_step)

    @rank_zero_only
    def on_fit_end(self) -> None:
        ckpt = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or getattr(self.trainer.checkpoint_callback, "best_model_path", "")
        if ckpt:
            print(f"checkpoint: {ckpt}")
        if self.last_picture is not None:
            print(f"reconstruction picture: {self.last_picture}")

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        return adamw_warmup_cosine(self, self.tokenizer.named_parameters(), no_decay_suffixes=("pos_embed", "temp_pos"))

    # ---- checkpoints: the quantiser's EMA / restart statistics live outside the state dict ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["quantizer_training_state"] = self.tokenizer.quantize.training_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, Mapping) and is_legacy_hyperparameters(hparams):
            raise ValueError(
                "this MotionVQVAE checkpoint holds the tokenizer arguments flat (written before the config was "
                "nested); convert it once with `python -m lavit.tokenizers.convert_checkpoint OLD.ckpt NEW.ckpt` "
                "(lavit.load_motion_tokenizer reads it as it is)"
            )
        state = checkpoint.get("quantizer_training_state")
        if state is not None:
            self.tokenizer.quantize.load_training_state(state)
