"""LightningDataModules over compressed video and images."""

from datamodules.image_text import ImageDataset, ImageRecord, ImageTextDataModule, collate_images, read_image_manifest
from datamodules.clip_dataset import EpochSampler, VideoClipDataset, collate_clips
from datamodules.instructions import InstructionDataModule
from datamodules.manifest import VideoRecord, read_manifest
from datamodules.multimodal_tokens import MultimodalTokenDataModule, NoTrainingSamplesError
from datamodules.streaming import StreamingClipDataModule, collate_streamed
from datamodules.video_folder import VideoFolderDataModule
from datamodules.video_text import VideoTextDataModule

__all__ = [
    "EpochSampler",
    "ImageDataset",
    "ImageRecord",
    "ImageTextDataModule",
    "InstructionDataModule",
    "MultimodalTokenDataModule",
    "NoTrainingSamplesError",
    "StreamingClipDataModule",
    "VideoClipDataset",
    "VideoFolderDataModule",
    "VideoRecord",
    "VideoTextDataModule",
    "collate_clips",
    "collate_images",
    "collate_streamed",
    "read_image_manifest",
    "read_manifest",
]
