"""Optimiser and learning-rate schedule shared by the stages."""

from __future__ import annotations

import functools
import math
from typing import Iterable, Sequence

import lightning.pytorch as pl
import torch


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate: linear warm-up from 0, then cosine decay to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw_warmup_cosine(
    module: pl.LightningModule,
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    no_decay_suffixes: Sequence[str] = (),
) -> dict:
    """``configure_optimizers`` of every stage: AdamW over the trainable parameters (no weight decay on biases, norms
    and names ending in ``no_decay_suffixes``), stepped per batch with :func:`warmup_cosine` to ``min_lr_ratio``.

    Reads ``lr``, ``weight_decay``, ``betas``, ``warmup_steps`` and ``min_lr_ratio`` from ``module.hparams``.
    """
    decay, no_decay = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            (no_decay if p.ndim < 2 or name.endswith(tuple(no_decay_suffixes)) else decay).append(p)
    h = module.hparams
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": h.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=h.lr, betas=tuple(h.betas)
    )
    total = max(1, int(module.trainer.estimated_stepping_batches)) if module._trainer is not None else 1
    schedule = functools.partial(warmup_cosine, warmup_steps=h.warmup_steps, total_steps=total, min_ratio=h.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
