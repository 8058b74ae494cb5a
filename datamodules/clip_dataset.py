"""Map-style dataset of keyframe + motion clips over a video manifest, skipping bad files."""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from datamodules.manifest import VideoRecord
from lavit.video import VideoDecodeError, extract_clips, preprocess_keyframes

log = logging.getLogger(__name__)


class VideoClipDataset(Dataset):
    """Item ``(index, epoch)`` -> the clips of video ``index`` chosen for ``epoch``.

    Each item is a dict ``{"clips": [clip, ...], "skipped": None}`` where every clip is
    ``{"keyframe": (3, 224, 224) float32, "motion": (2, T, H, W) float32, "caption": str,
    "video_id": str}``; a video that cannot be decoded gives ``{"clips": [], "skipped": (path, reason)}``
    so the loader keeps going and the caller counts it. Which clips of a video are used is a pure
    function of ``(seed, index, epoch)``: the same in every worker, process and resumed run.

    Args:
        records: the manifest rows.
        clips_per_video: clips drawn per video per epoch (None = every sampled clip).
        seed: base seed of the clip choice.
        keyframe_size: side of the preprocessed keyframe.
        cache: keep each video's extracted clips in memory (per worker process) after the first read;
            for small data sets read many epochs (the demo), not for WebVid-scale data.
        extract_options: passed to ``lavit.video.extract_clips`` (fps, max_clips, sampling, ...).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        clips_per_video: int | None = 1,
        seed: int = 0,
        keyframe_size: int = 224,
        cache: bool = False,
        **extract_options: Any,
    ):
        self.records = list(records)
        self.clips_per_video = clips_per_video
        self.seed = seed
        self.keyframe_size = keyframe_size
        self.extract_options = extract_options
        self.cache: dict[int, Any] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        record = self.records[index]
        try:
            clips = self._extract(index)
        except VideoDecodeError as err:
            return {"clips": [], "skipped": (err.path, err.reason)}
        chosen = np.arange(len(clips))
        if self.clips_per_video is not None and len(clips) > self.clips_per_video:
            rng = np.random.default_rng([self.seed, index, epoch])
            chosen = np.sort(rng.choice(len(clips), self.clips_per_video, replace=False))
        keyframes = preprocess_keyframes(clips.keyframes[chosen], self.keyframe_size)
        return {
            "clips": [
                {"keyframe": keyframes[j], "motion": clips.motion[k], "caption": record.caption, "video_id": record.video_id}
                for j, k in enumerate(chosen)
            ],
            "skipped": None,
        }


    def _extract(self, index: int):
        if self.cache is None:
            return extract_clips(self.records[index].path, **self.extract_options)
        if index not in self.cache:
            try:
                self.cache[index] = extract_clips(self.records[index].path, **self.extract_options)
            except VideoDecodeError as err:
                self.cache[index] = err
        if isinstance(self.cache[index], VideoDecodeError):
            raise self.cache[index]
        return self.cache[index]


def collate_clips(items: list[dict]) -> dict:
    """Flatten per-video items into one batch of clips.

    Returns:
        ``{"keyframe": (N, 3, 224, 224), "motion": (N, 2, T, H, W), "caption": [str] * N,
        "video_id": [str] * N, "skipped": [(path, reason), ...]}``; N may be 0 when every video of
        the batch was bad.
    """
    clips = [c for item in items for c in item["clips"]]
    skipped = [item["skipped"] for item in items if item["skipped"] is not None]
    if not clips:
        return {"keyframe": torch.empty(0, 3, 0, 0), "motion": torch.empty(0, 2, 0, 0, 0), "caption": [], "video_id": [], "skipped": skipped}
    return {
        "keyframe": torch.stack([c["keyframe"] for c in clips]),
        "motion": torch.stack([c["motion"] for c in clips]),
        "caption": [c["caption"] for c in clips],
        "video_id": [c["video_id"] for c in clips],
        "skipped": skipped,
    }


class EpochSampler(DistributedSampler):
    """DistributedSampler that yields ``(index, epoch)`` so workers know the epoch without shared state.

    Lightning leaves a DistributedSampler in place under DDP and calls ``set_epoch`` every epoch; outside
    DDP it runs as a single replica. Shuffling is seeded by ``seed + epoch`` as in DistributedSampler.
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        super().__init__(
            dataset,
            num_replicas=None if distributed else 1,
            rank=None if distributed else 0,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((int(i), epoch) for i in super().__iter__())
