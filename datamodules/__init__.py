"""LightningDataModules over compressed video, and the embedded demo dataset."""

from datamodules.clip_dataset import EpochSampler, VideoClipDataset, collate_clips
from datamodules.demo_data import make_demo_dataset
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
    "make_demo_dataset",
    "read_manifest",
]
