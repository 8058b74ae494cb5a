"""``StreamingClipDataModule``: batches streamed from ``lavit preprocess`` shards (litdata), no video decoding."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from litdata import StreamingDataLoader, StreamingDataset

from lavit.shards.format import OPTIONS_FILE, ShardOptions, decode_sample, read_options
from lavit.video import preprocess_keyframes
from lavit.video.defaults import CLIP_LEN, DEFAULT_FPS, DEFAULT_MAX_CLIPS, DEFAULT_MIN_FRAMES, FIELD_SIZE

SPLITS = ("train", "val", "test")


def _is_url(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("local:")


def read_shard_options(folder: str) -> ShardOptions:
    """The :class:`ShardOptions` of a local shard folder or an object-store URL (``s3://``, ``gs://``, ...)."""
    if not _is_url(folder):
        return read_options(folder)
    from litdata.streaming.downloader import get_downloader

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / OPTIONS_FILE
        try:
            get_downloader(folder, tmp, []).download_file(f"{folder.rstrip('/')}/{OPTIONS_FILE}", str(local))
        except Exception as err:  # the downloaders raise their SDK's own errors
            raise FileNotFoundError(f"{folder}/{OPTIONS_FILE} could not be read ({err}): not a folder written by "
                                    f"`lavit preprocess`") from err
        return ShardOptions.from_dict(json.loads(local.read_text()))


class DecodeClip:
    """litdata transform (runs in the loader workers): raw shard sample -> one clip as the decoding DataModule gives it.

    Returns ``{"keyframe": (3, S, S) float32 CLIP-normalised, "motion": (2, T, h, w) float32, "caption": str,
    "video_id": str}`` plus ``"frames": (T, 3, H, W) uint8`` when ``frames`` and the sample has them; token samples
    give ``"keyframe_ids": (n,) int64`` and ``"motion_ids": (135,) int64`` (image-text samples: keyframe ids only;
    text-corpus samples: ``"text_ids": (n,) int64`` only).
    """

    def __init__(self, options: ShardOptions, keyframe_size: int = 224, frames: bool = False):
        self.options = options
        self.keyframe_size = keyframe_size
        self.frames = frames

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if not self.frames:
            sample = {k: v for k, v in sample.items() if k != "frames"}
        raw = decode_sample(sample, self.options)
        clip: dict[str, Any] = {"caption": raw["caption"], "video_id": raw["video_id"]}
        if "keyframe" in raw:
            clip["keyframe"] = preprocess_keyframes(raw["keyframe"][None].copy(), self.keyframe_size)[0]
        if "motion" in raw:
            clip["motion"] = torch.from_numpy(raw["motion"])
        if "frames" in raw:
            clip["frames"] = torch.as_tensor(raw["frames"])
        for key in ("keyframe_ids", "motion_ids", "text_ids"):
            if key in raw:
                clip[key] = torch.from_numpy(raw[key])
        return clip


def collate_streamed(clips: list[dict[str, Any]]) -> dict[str, Any]:
    """Clips from :class:`DecodeClip` -> one batch, keys and dtypes as ``datamodules.collate_clips`` (without
    ``"skipped"``: shards hold only readable clips).

    Returns:
        ``{"keyframe": (N, 3, S, S), "motion": (N, 2, T, h, w), "caption": [str] * N, "video_id": [str] * N}``,
        ``"frames": (N, T, 3, H, W) uint8`` when present; token shards: ``"motion_ids": (N, 135) int64`` and
        ``"keyframe_ids"``: a list of N (n_i,) int64 tensors (the keyframe token count varies per image); text shards:
        ``"text_ids"``, a list of N (n_i,) int64 tensors.
    """
    batch: dict[str, Any] = {}
    for key in ("keyframe", "motion", "frames", "motion_ids"):
        if key in clips[0]:
            batch[key] = torch.stack([c[key] for c in clips])
    for key in ("keyframe_ids", "text_ids"):
        if key in clips[0]:
            batch[key] = [c[key] for c in clips]
    batch["caption"] = [c["caption"] for c in clips]
    batch["video_id"] = [c["video_id"] for c in clips]
    return batch


class StreamingClipDataModule(L.LightningDataModule):
    """Batches of preprocessed clips streamed from ``lavit preprocess`` shard folders, as ``VideoTextDataModule``
    gives them: ``{"keyframe": (N, 3, 224, 224), "motion": (N, 2, 24, 20, 36) float32, "caption": [str],
    "video_id": [str]}``, with ``frame_size`` also ``"frames": (N, 24, 3, H, W)`` uint8; token shards give
    ``"keyframe_ids"`` / ``"motion_ids"`` instead (see :func:`collate_streamed`). N = ``batch_size`` clips.

    Each folder's ``lavit_preprocess.json`` must match the clip options given here (else
    ``ShardOptionsMismatchError`` naming the folder and each differing option), so a config swaps
    ``VideoTextDataModule`` for this class by replacing the manifests with shard folders. Folders may be local
    paths or object-store URLs (``s3://``, ``gs://``, ... passed on to litdata).

    Training order is a pure function of ``seed`` and the epoch (litdata's shuffle); under DDP litdata gives each
    rank its own part of the samples. The train loader's position is saved in Lightning checkpoints
    (``state_dict``): ``fit(ckpt_path=...)`` resumes mid-epoch with the batches an uninterrupted run would have
    seen next (same ``batch_size``, ``num_workers`` and world size).

    Args:
        train_dir, val_dir, test_dir: shard folders (val / test optional; test defaults to val).
        batch_size: clips per batch.
        num_workers: loader worker processes (each decodes PNG / JPEG keyframes).
        seed: of the shuffle.
        shuffle: shuffle the training samples (val / test are never shuffled).
        drop_last: drop the last incomplete training batch (and samples so every rank gets as many).
        fps, max_clips, sampling, normalization, clip_len, field_size, min_frames, frame_size: as
            ``VideoTextDataModule``; checked against the shards' options (frame_size None: frames not read).
        keyframe_size: side of the CLIP-normalised keyframe (applied when reading).
        cache_dir: litdata's local cache for remote folders (None: litdata's default).
        max_cache_size: litdata's cache limit, e.g. ``"100GB"``.
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        test_dir: str | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        fps: float = DEFAULT_FPS,
        max_clips: int | None = DEFAULT_MAX_CLIPS,
        sampling: Literal["official", "dense"] = "official",
        normalization: Literal["official", "unit", "pixels"] = "official",
        clip_len: int = CLIP_LEN,
        field_size: tuple[int, int] = FIELD_SIZE,
        min_frames: int = DEFAULT_MIN_FRAMES,
        frame_size: tuple[int, int] | None = None,
        keyframe_size: int = 224,
        cache_dir: str | None = None,
        max_cache_size: str = "100GB",
    ):
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.save_hyperparameters()
        self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir or val_dir}
        self.options: dict[str, ShardOptions] = {}
        self.loaders: dict[str, StreamingDataLoader] = {}
        self._train_state: dict[str, Any] | None = None

    def _expected(self) -> dict[str, Any]:
        h = self.hparams
        expected = dict(fps=h.fps, max_clips=h.max_clips, sampling=h.sampling, normalization=h.normalization,
                        clip_len=h.clip_len, field_size=tuple(h.field_size), min_frames=h.min_frames)
        if h.frame_size is not None:
            expected["frame_size"] = tuple(h.frame_size)
        return expected

    def setup(self, stage: str | None = None) -> None:
        for split, folder in self.dirs.items():
            if folder is not None and split not in self.options:
                options = read_shard_options(folder)
                options.check_compatible(folder, **self._expected())
                self.options[split] = options

    def _loader(self, split: str, train: bool) -> StreamingDataLoader:
        h = self.hparams
        if self.dirs[split] is None:
            return []  # Lightning skips a split with no batches
        self.setup()
        dataset = StreamingDataset(
            self.dirs[split], cache_dir=h.cache_dir, max_cache_size=h.max_cache_size,
            shuffle=h.shuffle and train, drop_last=h.drop_last if train else False, seed=h.seed,
            transform=DecodeClip(self.options[split], h.keyframe_size, frames=h.frame_size is not None),
        )
        loader = StreamingDataLoader(dataset, batch_size=h.batch_size, num_workers=h.num_workers,
                                     collate_fn=collate_streamed, drop_last=h.drop_last if train else False,
                                     persistent_workers=False)
        self.loaders[split] = loader
        return loader

    def train_dataloader(self) -> StreamingDataLoader:
        loader = self._loader("train", train=True)
        if self._train_state is not None:
            loader.load_state_dict(self._train_state)
            self._train_state = None
        return loader

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def predict_dataloader(self):
        return self._loader("test", train=False)

    def state_dict(self) -> dict[str, Any]:
        """``{"train_loader": litdata's StreamingDataLoader state}`` once training has started (saved in checkpoints)."""
        loader = self.loaders.get("train")
        return {} if loader is None else {"train_loader": loader.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the loader state of a checkpoint; the next ``train_dataloader()`` resumes from it."""
        self._train_state = state_dict.get("train_loader")
