"""The one torch.distributed helper: collectives that are no-ops outside a multi-process group.

Used by the quantiser's EMA sync and by the training modules' epoch statistics, so every rank sees the
same numbers whether or not the code runs under DDP.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (unchanged on a single process); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s copy (unchanged on a single process); returns it."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor
