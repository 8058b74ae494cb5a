"""Kill-and-resume check shared by the stage tests: two epochs straight vs one epoch, then resumed from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from lightning_modules.cli import lightning_cli
from tests.lightning_modules.callbacks import RecordLosses


def fit_losses(args: list[str], ckpt: str | None = None):
    """Fit through ``LightningCLI`` ``args``; -> ([(epoch, step, loss)] per training step, trainer)."""
    cli = lightning_cli(args, run=False)
    recorder = RecordLosses()
    cli.trainer.callbacks.append(recorder)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    return recorder.losses, cli.trainer


def assert_resume_reproduces_epoch_two(cli_args: Callable[..., list[str]], tmp_path: Path, atol: float = 1e-6) -> None:
    """``cli_args(folder, *extra)`` -> CLI arguments of a small run. Epoch 2 after resuming from the end of epoch 1 equals
    epoch 2 of an uninterrupted run, loss for loss (and epoch 1 of both agrees)."""
    two = ("--trainer.max_steps=-1", "--trainer.max_epochs=2", "--trainer.limit_val_batches=0")
    full, _ = fit_losses(cli_args(tmp_path / "full", *two))
    first, trainer = fit_losses(cli_args(tmp_path / "first", *two, "--trainer.max_epochs=1"))
    ckpt = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    resumed, _ = fit_losses(cli_args(tmp_path / "resumed", *two), ckpt=ckpt)
    epoch2 = [l for e, _, l in full if e == 1]
    assert len(epoch2) > 0 and [l for e, _, l in resumed if e == 1] == pytest.approx(epoch2, abs=atol)
    assert [l for e, _, l in first] == pytest.approx([l for e, _, l in full if e == 0], abs=atol)
