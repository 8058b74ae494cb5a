"""LightningDataModules over compressed video."""

from datamodules.clip_dataset import EpochSampler, VideoClipDataset, collate_clips
from datamodules.manifest import VideoRecord, read_manifest
from datamodules.video_folder import VideoFolderDataModule
from datamodules.video_text import VideoTextDataModule

__all__ = [
    "EpochSampler",
    "VideoClipDataset",
    "VideoFolderDataModule",
    "VideoRecord",
    "VideoTextDataModule",
    "collate_clips",
    "read_manifest",
]
