"""Test-only callbacks, importable by the CLI in subprocesses (PYTHONPATH = repository root)."""

from pathlib import Path

import lightning.pytorch as pl
import torch


class RecordLosses(pl.Callback):
    """Keeps (epoch, step, loss) of every training step."""

    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append((trainer.current_epoch, trainer.global_step, float(loss)))


class SaveCodebook(pl.Callback):
    """Writes each rank's codebook to ``<folder>/codebook_rank<R>.pt`` when fitting ends."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_fit_end(self, trainer, pl_module):
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.tokenizer.quantize.codebook.detach().cpu().clone(), self.folder / f"codebook_rank{trainer.global_rank}.pt")
