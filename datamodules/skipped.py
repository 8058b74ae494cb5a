"""Skip-and-count of unreadable videos (and images), shared by the DataModules."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

import lightning as L
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


class NoUsableDataError(ValueError):
    """Every file of a set failed to decode: nothing to train or evaluate on."""


class NoUsableVideosError(NoUsableDataError):
    """Every video of a set failed to decode: nothing to train or evaluate on."""


class NoUsableImagesError(NoUsableDataError):
    """Every image of a set failed to decode: nothing to train or evaluate on."""


class SkippedVideos(L.LightningDataModule):
    """Collects the ``"skipped"`` entries of each batch into ``self.skipped`` (path -> reason).

    Collate functions run in the DataLoader workers, so they put ``[(path, reason), ...]`` under
    ``batch["skipped"]``; here, in the main process, the entry is removed before the batch reaches the
    model, each path is counted once and logged the first time. A batch marked ``"exhausted"`` (its
    dataset found no readable video at all) raises ``NoUsableVideosError`` with the counts. Subclasses over
    other files set ``item_kind`` (the word in messages) and ``no_usable_error``.

    The split loaders are shared too: ``setup`` fills ``self.datasets`` (split name -> dataset of ``(index, epoch)``
    items), the subclass names its ``collate_fn``; hyper-parameters ``batch_size``, ``num_workers`` and ``seed``.
    """

    item_kind = "video"
    no_usable_error: type[NoUsableDataError] = NoUsableVideosError
    collate_fn: Callable[[list[dict]], dict]

    def __init__(self):
        super().__init__()
        self.skipped: dict[str, str] = {}
        self.datasets: dict[str, Dataset] = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        from datamodules.clip_dataset import EpochSampler

        dataset, h = self.datasets[split], self.hparams
        return DataLoader(dataset, batch_size=h.batch_size, sampler=EpochSampler(dataset, shuffle=shuffle, seed=h.seed),
                          num_workers=h.num_workers, collate_fn=type(self).collate_fn, persistent_workers=h.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        self.record_skipped(batch.pop("skipped", []))
        if batch.pop("exhausted", None):
            raise self.no_usable_error(self.no_usable_videos())
        return batch

    def record_skipped(self, skipped: list[tuple[str, str]]) -> None:
        """Count bad videos (once per path) and log each the first time it is seen."""
        for path, reason in skipped:
            if path not in self.skipped:
                self.skipped[path] = reason
                log.warning("skipped unreadable %s %s: %s (%d skipped so far)", self.item_kind, path, reason, len(self.skipped))

    def no_usable_videos(self, what: str = "set") -> str:
        return no_usable_videos_message(self.skipped, what, self.item_kind)


def no_usable_videos_message(skipped: dict[str, str], what: str = "set", kind: str = "video") -> str:
    """One line: no readable video (``kind``), with the skip count and the commonest reasons (``skipped``: path -> reason)."""
    reasons = Counter(skipped.values()).most_common()
    summary = "; ".join(f"{n} x {reason}" for reason, n in reasons[:3])
    if len(reasons) > 3:
        summary += f"; {sum(n for _, n in reasons[3:])} with other reasons"
    return f"no usable {kind} in the {what}: {len(skipped)} {kind}s skipped as unreadable ({summary})"
