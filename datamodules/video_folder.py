"""Generated and real videos for evaluation: decoded frames, no transcoding.

``VideoFolderDataModule`` serves two sets to ``lightning test``: dataloader 0 is the generated
("fake") set, dataloader 1 the real set (optional). Each set is a folder searched recursively for
video files, or a manifest (CSV / JSONL, see ``datamodules.manifest``) that also gives captions.
Items: ``{"video": (T, 3, S, S) uint8, "index": int, "video_id": str, "caption": str}``.

Under DDP each rank reads a disjoint shard with no padding (a DistributedSampler pads by repeating
samples, which would count them twice in a metric); unreadable or too-short videos are left out
(not replaced: a stand-in would be counted twice too), counted in ``datamodule.skipped`` and logged.
Batches are never empty; a set with no readable video raises ``NoUsableVideosError``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from datamodules.manifest import MANIFEST_SUFFIXES, VideoRecord, read_manifest
from datamodules.skipped import NoUsableVideosError, SkippedVideos, no_usable_videos_message
from lavit.distributed import is_distributed
from lavit.pipelines.extract import find_videos
from lavit.video.errors import VideoDecodeError
from lavit.video.frames import read_frames


def read_video_set(source: str | os.PathLike, captions: str | os.PathLike | None = None) -> list[VideoRecord]:
    """Records of a folder of videos or a manifest; ``captions`` (a manifest) adds captions by video id."""
    path = Path(source)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        records = read_manifest(path)
    elif path.exists():
        records = [VideoRecord(p, "", p.stem) for p in find_videos([path])]
    else:
        raise FileNotFoundError(f"video set {str(path)!r} does not exist (give a folder of videos or a CSV/JSONL manifest)")
    if captions is not None:
        by_id = {r.video_id: r.caption for r in read_manifest(captions)}
        records = [VideoRecord(r.path, by_id.get(r.video_id, r.caption), r.video_id) for r in records]
    if not records:
        raise ValueError(f"no videos found in {str(path)!r}")
    return records


class VideoSetDataset(Dataset):
    """Indexable video set; a bad file gives ``{"skipped": (path, reason), "index": i}``.
    ``source`` names the set (its folder or manifest) in errors."""

    def __init__(self, records: list[VideoRecord], num_frames: int = 16, where: str = "first", size: int | None = 224,
                 source: str = "video set"):
        self.records, self.num_frames, self.where, self.size, self.source = records, num_frames, where, size, source

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        try:
            video = read_frames(r.path, self.num_frames, self.where, self.size)
        except VideoDecodeError as err:
            return {"skipped": (err.path, err.reason), "index": index}
        return {"video": video, "index": index, "video_id": r.video_id, "caption": r.caption}


def collate_videos(items: list[dict]) -> dict:
    """``{"video": (B, T, 3, S, S) uint8, "index": (B,), "video_id", "caption", "skipped"}``; B may be 0
    (``NonEmptyLoader`` drops such batches)."""
    good = [i for i in items if "video" in i]
    skipped = [i["skipped"] for i in items if "skipped" in i]
    return {
        "video": torch.stack([i["video"] for i in good]) if good else torch.empty(0, 0, 3, 0, 0, dtype=torch.uint8),
        "index": torch.tensor([i["index"] for i in good], dtype=torch.long),
        "video_id": [i["video_id"] for i in good],
        "caption": [i["caption"] for i in good],
        "skipped": skipped,
    }


class NonEmptyLoader(DataLoader):
    """A DataLoader of ``collate_videos`` batches that never yields an empty one.

    The ``"skipped"`` records of a batch whose videos were all unreadable move to the next batch (or,
    after the last, to the one before), so ``SkippedVideos`` still counts them. If this process read
    no video at all it raises ``NoUsableVideosError``; under DDP a rank whose shard was all bad yields
    nothing and logs its skips (the metrics then see only the other ranks' videos).
    """

    def __iter__(self):
        pending: list[tuple[str, str]] = []
        held = None  # one batch of look-ahead: trailing skips join the last batch
        for batch in super().__iter__():
            if len(batch["index"]) == 0:
                (held["skipped"] if held is not None else pending).extend(batch["skipped"])
                continue
            if held is not None:
                yield held
            batch["skipped"] = pending + batch["skipped"]
            pending, held = [], batch
        if held is not None:
            yield held
        elif pending:
            message = no_usable_videos_message(dict(pending), f"{len(self.dataset)} videos of {self.dataset.source}")
            if getattr(self.sampler, "num_replicas", 1) == 1:
                raise NoUsableVideosError(message)
            log.warning("this rank's shard: %s", message)


class ShardSampler(DistributedSampler):
    """Rank r reads indices r, r + W, r + 2W, ... in order: disjoint shards, no padding, no shuffle.

    A DistributedSampler subclass, so Lightning keeps it under DDP instead of installing its own
    (padding) sampler; outside DDP it is one replica reading everything.
    """

    def __init__(self, dataset: Dataset):
        distributed = is_distributed()
        super().__init__(dataset, num_replicas=None if distributed else 1, rank=None if distributed else 0, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class VideoFolderDataModule(SkippedVideos):
    """Generated (dataloader 0) and real (dataloader 1) videos for ``lightning test``.

    Args:
        fake: folder of generated videos, or a manifest of them (with captions for CLIPSIM).
        real: folder or manifest of real videos; None when only fake-side metrics run (IS, CLIPSIM).
        captions: optional manifest giving captions of the fake videos by video id.
        num_frames: frames decoded per video (the protocol's: 16).
        frames: ``"first"`` or ``"center"`` frames.
        resolution: square frame side after resizing (None: decoded size; then all videos of a
            set must share one size).
        batch_size, num_workers: DataLoader settings.
    """

    def __init__(self, fake: str, real: str | None = None, captions: str | None = None, num_frames: int = 16,
                 frames: str = "first", resolution: int | None = 224, batch_size: int = 4, num_workers: int = 0):
        super().__init__()
        if frames not in ("first", "center"):
            raise ValueError(f"frames must be 'first' or 'center', got {frames!r}")
        self.fake, self.real, self.captions = fake, real, captions
        self.num_frames, self.frames, self.resolution = num_frames, frames, resolution
        self.batch_size, self.num_workers = batch_size, num_workers
        self.sets: dict[str, VideoSetDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        self.sets = {"fake": self._dataset(self.fake, self.captions)}
        if self.real is not None:
            self.sets["real"] = self._dataset(self.real, None)

    def _dataset(self, source: str, captions: str | None) -> VideoSetDataset:
        return VideoSetDataset(read_video_set(source, captions), self.num_frames, self.frames, self.resolution, source)

    def _loader(self, dataset: VideoSetDataset) -> DataLoader:
        return NonEmptyLoader(dataset, batch_size=self.batch_size, sampler=ShardSampler(dataset), num_workers=self.num_workers,
                              collate_fn=collate_videos, persistent_workers=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.sets[name]) for name in ("fake", "real") if name in self.sets]
