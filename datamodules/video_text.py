"""``VideoTextDataModule``: keyframe + motion clips with captions from video manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from datamodules.clip_dataset import VideoClipDataset, collate_clips
from lavit.video.defaults import CLIP_LEN, DEFAULT_FPS, DEFAULT_MAX_CLIPS, DEFAULT_MIN_FRAMES, FIELD_SIZE
from lavit.video.demo_data import make_demo_dataset
from datamodules.manifest import VideoRecord, read_manifest
from datamodules.skipped import SkippedVideos


class VideoTextDataModule(SkippedVideos):
    """Batches ``{"keyframe": (N, 3, 224, 224), "motion": (N, 2, 24, 20, 36), "caption": [str],
    "video_id": [str]}`` from video manifests (CSV / JSONL / WebVid CSV, see ``read_manifest``); with
    ``frame_size`` (H, W) batches also hold ``"frames": (N, 24, 3, H, W)`` uint8 RGB, the clips' frames
    decoded from the same MPEG-4 stream as the motion (frame t <-> motion t; detokenizer training).

    With no ``train_manifest``, the embedded demo dataset is rendered into ``demo_root`` (no download)
    and split into train / val by ``val_fraction``. Videos that fail to decode are replaced by readable
    ones (``VideoClipDataset``: batches stay full, every rank gets as many), counted in ``self.skipped``
    (path -> reason) and logged once each; a set with no readable video raises ``NoUsableVideosError``.

    Args:
        train_manifest, val_manifest, test_manifest: manifest files (val/test default to the demo split).
        video_root: folder relative video paths resolve against (default: each manifest's folder).
        batch_size: videos per batch (a batch holds ``batch_size * clips_per_video`` clips at most).
        num_workers: DataLoader worker processes (decoding is CPU-bound: use as many as cores allow).
        clips_per_video: clips drawn per video per epoch (None = all sampled clips).
        seed: seed of the shuffle and the per-epoch clip choice.
        fps, max_clips, sampling, normalization, clip_len, field_size, min_frames, frame_size: see
            ``lavit.video.extract_clips`` (frame_size None, the default: no frames, no RGB conversion).
        cache_clips: keep decoded clips in memory across epochs (small data sets only).
        demo_root, demo_num_videos, demo_duration, demo_fps, demo_size, demo_max_speed, demo_max_pan_speed,
            val_fraction: the embedded dataset (number of videos; seconds, frame rate, rendered (H, W), largest
            object speed and camera pan speed in px/s of each: pan default = object, 0 = still camera) and its split.
    """

    collate_fn = staticmethod(collate_clips)

    def __init__(
        self,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        video_root: str | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        clips_per_video: int | None = 1,
        seed: int = 0,
        fps: float = DEFAULT_FPS,
        max_clips: int | None = DEFAULT_MAX_CLIPS,
        sampling: Literal["official", "dense"] = "official",
        normalization: Literal["official", "unit", "pixels"] = "official",
        clip_len: int = CLIP_LEN,
        field_size: tuple[int, int] = FIELD_SIZE,
        min_frames: int = DEFAULT_MIN_FRAMES,
        frame_size: tuple[int, int] | None = None,
        keyframe_size: int = 224,
        cache_clips: bool = False,
        demo_root: str = "outputs/demo_data",
        demo_num_videos: int = 16,
        demo_duration: float = 8.0,
        demo_fps: float = 12.0,
        demo_size: tuple[int, int] = (192, 320),
        demo_max_speed: float = 30.0,
        demo_max_pan_speed: float | None = None,
        val_fraction: float = 0.25,
    ):
        super().__init__()
        for manifest in (train_manifest, val_manifest, test_manifest):
            if manifest is not None and not Path(manifest).is_file():
                raise FileNotFoundError(f"manifest not found: {manifest}")
        if batch_size < 1 or num_workers < 0 or (clips_per_video is not None and clips_per_video < 1):
            raise ValueError(f"need batch_size >= 1, num_workers >= 0, clips_per_video >= 1 or None; got "
                             f"{batch_size}, {num_workers}, {clips_per_video}")
        self.save_hyperparameters()

    def prepare_data(self) -> None:
        if self.hparams.train_manifest is None:
            self._make_demo(progress=True)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        splits = self._demo_splits() if h.train_manifest is None else {"train": self._read(h.train_manifest)}
        for name in ("val", "test"):
            manifest = getattr(h, f"{name}_manifest")
            if manifest is not None:
                splits[name] = self._read(manifest)
        splits.setdefault("val", [])
        splits.setdefault("test", splits["val"])
        splits["predict"] = splits["test"]
        options = dict(
            fps=h.fps, max_clips=h.max_clips, sampling=h.sampling, normalization=h.normalization,
            clip_len=h.clip_len, field_size=tuple(h.field_size), min_frames=h.min_frames,
            frame_size=None if h.frame_size is None else tuple(h.frame_size),
        )
        for name, records in splits.items():
            per_video = h.clips_per_video if name == "train" else None
            self.datasets[name] = VideoClipDataset(
                records, clips_per_video=per_video, seed=h.seed, keyframe_size=h.keyframe_size, cache=h.cache_clips, **options
            )

    def _read(self, manifest: str) -> list[VideoRecord]:
        return read_manifest(manifest, video_root=self.hparams.video_root)

    def _make_demo(self, progress: bool = False) -> Path:
        h = self.hparams
        height, width = h.demo_size
        return make_demo_dataset(h.demo_root, num_videos=h.demo_num_videos, seed=h.seed, duration=h.demo_duration, fps=h.demo_fps,
                                 height=height, width=width, max_speed=h.demo_max_speed, max_pan_speed=h.demo_max_pan_speed, progress=progress)

    def _demo_splits(self) -> dict[str, list[VideoRecord]]:
        manifest = self._make_demo()
        records = read_manifest(manifest)
        n_val = max(1, round(len(records) * self.hparams.val_fraction)) if len(records) > 1 else 0
        return {"train": records[n_val:], "val": records[:n_val]}
