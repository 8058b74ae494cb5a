"""Skip-and-count of unreadable videos, shared by the DataModules."""

from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger(__name__)


class SkippedVideos(L.LightningDataModule):
    """Collects the ``"skipped"`` entries of each batch into ``self.skipped`` (path -> reason).

    Collate functions put ``[(path, reason), ...]`` under ``batch["skipped"]``; the entry is removed
    before the batch reaches the model, each path is counted once and logged the first time.
    """

    def __init__(self):
        super().__init__()
        self.skipped: dict[str, str] = {}

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        self.record_skipped(batch.pop("skipped", []))
        return batch

    def record_skipped(self, skipped: list[tuple[str, str]]) -> None:
        """Count bad videos (once per path) and log each the first time it is seen."""
        for path, reason in skipped:
            if path not in self.skipped:
                self.skipped[path] = reason
                log.warning("skipped unreadable video %s: %s (%d skipped so far)", path, reason, len(self.skipped))
