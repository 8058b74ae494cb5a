"""Skip-and-count of unreadable videos, shared by the DataModules."""

from __future__ import annotations

import logging
from collections import Counter

import lightning as L

log = logging.getLogger(__name__)


class NoUsableVideosError(ValueError):
    """Every video of a set failed to decode: nothing to train or evaluate on."""


class SkippedVideos(L.LightningDataModule):
    """Collects the ``"skipped"`` entries of each batch into ``self.skipped`` (path -> reason).

    Collate functions run in the DataLoader workers, so they put ``[(path, reason), ...]`` under
    ``batch["skipped"]``; here, in the main process, the entry is removed before the batch reaches the
    model, each path is counted once and logged the first time. A batch marked ``"exhausted"`` (its
    dataset found no readable video at all) raises ``NoUsableVideosError`` with the counts.
    """

    def __init__(self):
        super().__init__()
        self.skipped: dict[str, str] = {}

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        self.record_skipped(batch.pop("skipped", []))
        if batch.pop("exhausted", None):
            raise NoUsableVideosError(self.no_usable_videos())
        return batch

    def record_skipped(self, skipped: list[tuple[str, str]]) -> None:
        """Count bad videos (once per path) and log each the first time it is seen."""
        for path, reason in skipped:
            if path not in self.skipped:
                self.skipped[path] = reason
                log.warning("skipped unreadable video %s: %s (%d skipped so far)", path, reason, len(self.skipped))

    def no_usable_videos(self, what: str = "set") -> str:
        return no_usable_videos_message(self.skipped, what)


def no_usable_videos_message(skipped: dict[str, str], what: str = "set") -> str:
    """One line: no readable video, with the skip count and the commonest reasons (``skipped``: path -> reason)."""
    reasons = Counter(skipped.values()).most_common()
    summary = "; ".join(f"{n} x {reason}" for reason, n in reasons[:3])
    if len(reasons) > 3:
        summary += f"; {sum(n for _, n in reasons[3:])} with other reasons"
    return f"no usable video in the {what}: {len(skipped)} videos skipped as unreadable ({summary})"
