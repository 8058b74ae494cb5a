"""The prompts of one sweep grid point for ``Trainer.predict``: each process gets a disjoint shard and
skips the items whose video is already written (resumable generation)."""

from __future__ import annotations

from typing import Callable, Iterator

import lightning as L
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lavit.distributed import is_distributed
from lavit.sweeps.prompts import PromptItem


class PromptDataset(Dataset):
    def __init__(self, items: list[PromptItem]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> PromptItem:
        return self.items[index]


class PendingShardSampler(DistributedSampler):
    """Rank r takes items r, r + W, r + 2W, ... whose ``done(item)`` is False, at most ``limit`` of them.

    Only rank r writes the items of its shard, so the pending set a rank computes cannot race another
    rank's writes. A DistributedSampler subclass, so Lightning keeps it under DDP (no padding, no repeats).
    """

    def __init__(self, dataset: PromptDataset, done: Callable[[PromptItem], bool], limit: int | None = None,
                 num_replicas: int | None = None, rank: int | None = None):
        if num_replicas is None and not is_distributed():
            num_replicas, rank = 1, 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        shard = range(self.rank, len(dataset), self.num_replicas)
        self.pending = [i for i in shard if not done(dataset[i])][:limit]

    def __iter__(self) -> Iterator[int]:
        return iter(self.pending)

    def __len__(self) -> int:
        return len(self.pending)


class PromptDataModule(L.LightningDataModule):
    """Batches (lists) of ``PromptItem`` for ``predict``; ``done`` says whether an item's video exists."""

    def __init__(self, items: list[PromptItem], done: Callable[[PromptItem], bool] = lambda item: False,
                 limit: int | None = None, batch_size: int = 1):
        super().__init__()
        self.items, self.done, self.limit, self.batch_size = items, done, limit, batch_size

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # prompts (frozen dataclasses) stay on the host; the generator places its own tensors

    def predict_dataloader(self) -> DataLoader:
        dataset = PromptDataset(self.items)
        sampler = PendingShardSampler(dataset, self.done, self.limit)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=list)
