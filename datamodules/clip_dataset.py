"""Map-style dataset of keyframe + motion clips over a video manifest; bad files are replaced, never empty."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from datamodules.manifest import VideoRecord
from lavit.distributed import is_distributed
from lavit.video import VideoDecodeError, extract_clips, preprocess_keyframes


class VideoClipDataset(Dataset):
    """Item ``(index, epoch)`` -> the clips of video ``index`` chosen for ``epoch``, or of a stand-in.

    Each item is a dict ``{"clips": [clip, ...], "skipped": [(path, reason), ...]}`` where every clip is
    ``{"keyframe": (3, 224, 224) float32, "motion": (2, T, H, W) float32, "caption": str,
    "video_id": str}``, plus ``"frames": (T, 3, H', W') uint8`` RGB (frame t is the picture of motion t)
    when ``extract_options`` has a ``frame_size`` (H', W'). A video that cannot be decoded is replaced by the first readable video of a
    scan over the whole set that starts at a random place; the bad files met on the way are listed
    under ``"skipped"`` for the caller to count. So an item is never empty, every item of an epoch is
    used and every DDP rank still gets the same number of full batches. If no video of the set is
    readable the item is ``{"clips": [], "skipped": [...], "exhausted": True}``.

    The stand-in and which clips of a video are used are pure functions of ``(seed, index, epoch)``:
    the same in every worker, process and resumed run.

    Args:
        records: the manifest rows.
        clips_per_video: clips drawn per video per epoch (None = every sampled clip).
        seed: base seed of the clip and stand-in choice.
        keyframe_size: side of the preprocessed keyframe.
        cache: keep each video's extracted clips in memory (per worker process) after the first read;
            for small data sets read many epochs (the demo), not for WebVid-scale data.
        extract_options: passed to ``lavit.video.extract_clips`` (fps, max_clips, sampling, frame_size, ...).
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
        self.bad: dict[int, tuple[str, str]] = {}  # index -> (path, reason), per worker process

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        skipped: list[tuple[str, str]] = []
        for candidate in replacement_order(index, len(self.records), self.seed, epoch):
            clips = self._extract(candidate, skipped)
            if clips is not None:
                break
        else:
            return {"clips": [], "skipped": skipped, "exhausted": True}
        record = self.records[candidate]
        chosen = np.arange(len(clips))
        if self.clips_per_video is not None and len(clips) > self.clips_per_video:
            rng = np.random.default_rng([self.seed, index, epoch])
            chosen = np.sort(rng.choice(len(clips), self.clips_per_video, replace=False))
        keyframes = preprocess_keyframes(clips.keyframes[chosen], self.keyframe_size)
        items = []
        for j, k in enumerate(chosen):
            clip = {"keyframe": keyframes[j], "motion": clips.motion[k], "caption": record.caption, "video_id": record.video_id}
            if clips.frames is not None:
                clip["frames"] = clips.frames[k]
            items.append(clip)
        return {"clips": items, "skipped": skipped}

    def _extract(self, index: int, skipped: list[tuple[str, str]]):
        """The clips of video ``index``, or None (appending ``(path, reason)`` to ``skipped``) if unreadable."""
        if index not in self.bad:
            if self.cache is not None and index in self.cache:
                return self.cache[index]
            try:
                clips = extract_clips(self.records[index].path, **self.extract_options)
            except VideoDecodeError as err:
                self.bad[index] = (err.path, err.reason)
            else:
                if self.cache is not None:
                    self.cache[index] = clips
                return clips
        skipped.append(self.bad[index])
        return None


def replacement_order(index: int, n: int, seed: int, epoch: int) -> Iterator[int]:
    """``index``, then every other index of ``range(n)`` once, from a start drawn from ``(seed, index, epoch)``: the
    order in which the datasets look for a readable replacement of an unreadable item."""
    yield index
    start = int(np.random.default_rng([seed, index, epoch, 1]).integers(n))
    for j in range(n):
        if (start + j) % n != index:
            yield (start + j) % n


def collate_clips(items: list[dict]) -> dict:
    """Flatten per-video items into one batch of clips.

    Returns:
        ``{"keyframe": (N, 3, 224, 224), "motion": (N, 2, T, H, W), "caption": [str] * N,
        "video_id": [str] * N, "skipped": [(path, reason), ...]}`` with N >= 1, plus ``"frames":
        (N, T, 3, H', W') uint8`` when the clips carry frames; or
        ``{"exhausted": True, "skipped": [...]}`` when the set has no readable video.
    """
    skipped = [s for item in items for s in item["skipped"]]
    if any(item.get("exhausted") for item in items):
        return {"exhausted": True, "skipped": skipped}
    clips = [c for item in items for c in item["clips"]]
    batch = {
        "keyframe": torch.stack([c["keyframe"] for c in clips]),
        "motion": torch.stack([c["motion"] for c in clips]),
        "caption": [c["caption"] for c in clips],
        "video_id": [c["video_id"] for c in clips],
        "skipped": skipped,
    }
    if "frames" in clips[0]:
        batch["frames"] = torch.stack([c["frames"] for c in clips])
    return batch


class EpochSampler(DistributedSampler):
    """DistributedSampler that yields ``(index, epoch)`` so workers know the epoch without shared state.

    Lightning leaves a DistributedSampler in place under DDP and calls ``set_epoch`` every epoch; outside
    DDP it runs as a single replica. Shuffling is seeded by ``seed + epoch`` as in DistributedSampler.
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        distributed = is_distributed()
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
