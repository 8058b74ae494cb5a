"""``ImageTextDataModule``: CLIP-normalised images (+ captions) from a folder or an image-text manifest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from datamodules.clip_dataset import replacement_order
from datamodules.manifest import CAPTION_COLUMNS, ID_COLUMNS, _find, _read_rows
from datamodules.skipped import NoUsableImagesError, SkippedVideos
from lavit.video.keyframes import preprocess_keyframes

IMAGE_COLUMNS = ("image", "image_path", "img", "path", "file", "filename", "file_name")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageRecord:
    """One image: where it is, its caption ("" when none) and a stable id (default: the file stem)."""

    path: Path
    caption: str
    image_id: str


def read_image_manifest(source: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[ImageRecord]:
    """Images of a folder (recursive, sorted; a caption from ``<stem>.txt`` beside an image when present) or of a
    manifest (``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json``, see ``datamodules.manifest``) with an image column (one of
    ``IMAGE_COLUMNS``) and optionally a caption (``CAPTION_COLUMNS``) and id column; relative paths resolve against
    ``image_root`` (default: the manifest's folder).

    Raises:
        FileNotFoundError: no such folder or file.
        ValueError: a folder without images, a manifest without rows or without an image column (the columns found
            named), a row without an image path.
    """
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise ValueError(f"{source}: no images (files ending in {', '.join(IMAGE_SUFFIXES)})")
        return [ImageRecord(p, p.with_suffix(".txt").read_text(encoding="utf-8").strip() if p.with_suffix(".txt").is_file() else "",
                            str(p.relative_to(source).with_suffix(""))) for p in paths]
    if not source.is_file():
        raise FileNotFoundError(f"image folder or manifest not found: {source}")
    rows = _read_rows(source)
    if not rows:
        raise ValueError(f"{source}: the manifest has no rows (an empty file, or a header only)")
    columns = list(rows[0].keys())
    icol, ccol, idcol = _find(columns, IMAGE_COLUMNS), _find(columns, CAPTION_COLUMNS), _find(columns, ID_COLUMNS)
    if icol is None:
        raise ValueError(f"{source}: need an image column (one of {IMAGE_COLUMNS}); found columns {columns}")
    root = Path(image_root) if image_root is not None else source.parent
    records = []
    for line, row in enumerate(rows, start=2):
        if row.get(icol) in (None, ""):
            raise ValueError(f"{source}: row {line} has no value in column {icol!r}")
        rel = Path(str(row[icol]))
        image_id = str(row[idcol]) if idcol and row.get(idcol) not in (None, "") else rel.stem
        records.append(ImageRecord(rel if rel.is_absolute() else root / rel, str(row.get(ccol) or "") if ccol else "", image_id))
    return records


class ImageDataset(Dataset):
    """Item ``(index, epoch)`` -> ``{"image": (3, size, size) float32 CLIP-normalised, "caption", "image_id",
    "skipped": [(path, reason), ...]}``. An unreadable image is replaced by the first readable one of a scan over the
    set from a place drawn from ``(seed, index, epoch)`` (as ``VideoClipDataset``), so an item is never empty; with
    no readable image at all the item is ``{"skipped": [...], "exhausted": True}``. Images are resized to a square
    without keeping the aspect (bicubic, the official ``LaVITImageProcessor``)."""

    def __init__(self, records: Sequence[ImageRecord], size: int = 224, seed: int = 0):
        self.records, self.size, self.seed = list(records), size, seed
        self.bad: dict[int, tuple[str, str]] = {}  # index -> (path, reason), per worker process

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        skipped: list[tuple[str, str]] = []
        for candidate in replacement_order(index, len(self.records), self.seed, epoch):
            image = self._read(candidate, skipped)
            if image is not None:
                record = self.records[candidate]
                return {"image": image, "caption": record.caption, "image_id": record.image_id, "skipped": skipped}
        return {"skipped": skipped, "exhausted": True}

    def _read(self, index: int, skipped: list[tuple[str, str]]) -> torch.Tensor | None:
        if index not in self.bad:
            path = self.records[index].path
            try:
                with Image.open(path) as img:
                    rgb = np.array(img.convert("RGB"))
                return preprocess_keyframes(rgb[None], self.size)[0]
            except (OSError, ValueError, Image.DecompressionBombError) as err:  # missing, truncated, not an image
                self.bad[index] = (str(path), image_error_reason(err))
        skipped.append(self.bad[index])
        return None


def image_error_reason(err: Exception) -> str:
    """A short reason without the path (so that the skip summary can count reasons)."""
    if isinstance(err, FileNotFoundError):
        return "missing file"
    if isinstance(err, UnidentifiedImageError):
        return "not an image (no known image format)"
    if isinstance(err, Image.DecompressionBombError):
        return "too many pixels (PIL's decompression-bomb limit)"
    text = str(err).splitlines()[0] if str(err) else ""
    return f"truncated or corrupt image ({type(err).__name__}: {text})"


def collate_images(items: list[dict]) -> dict:
    """``{"image": (N, 3, S, S), "caption": [str], "image_id": [str], "skipped": [...]}`` (N >= 1), or
    ``{"exhausted": True, "skipped": [...]}`` when the set has no readable image."""
    skipped = [s for item in items for s in item["skipped"]]
    if any(item.get("exhausted") for item in items):
        return {"exhausted": True, "skipped": skipped}
    return {"image": torch.stack([i["image"] for i in items]), "caption": [i["caption"] for i in items],
            "image_id": [i["image_id"] for i in items], "skipped": skipped}


class ImageTextDataModule(SkippedVideos):
    """Batches ``{"image": (N, 3, image_size, image_size), "caption": [str], "image_id": [str]}`` for the keyframe
    tokenizer. Unreadable images are replaced (batches stay full), counted in ``self.skipped`` (path -> reason) and
    logged once each; a set with no readable image raises ``NoUsableImagesError``.

    Args:
        train, val, test: a folder of images or a manifest (see :func:`read_image_manifest`); without ``val``,
            ``val_fraction`` of ``train`` (at least one image) is held out; ``test`` defaults to the validation set.
        image_root: folder relative manifest paths resolve against.
        image_size: side of the square, CLIP-normalised images (224; the tokenizer's ``img_size``).
        batch_size, num_workers, seed: DataLoader settings, the seed of shuffle and stand-in choice.
    """

    item_kind = "image"
    no_usable_error = NoUsableImagesError
    collate_fn = staticmethod(collate_images)

    def __init__(self, train: str, val: str | None = None, test: str | None = None, image_root: str | None = None,
                 image_size: int = 224, batch_size: int = 16, num_workers: int = 0, seed: int = 0, val_fraction: float = 0.1):
        super().__init__()
        for source in (train, val, test):
            if source is not None and not Path(source).exists():
                raise FileNotFoundError(f"image folder or manifest not found: {source}")
        if batch_size < 1 or num_workers < 0 or image_size < 1 or not 0 <= val_fraction < 1:
            raise ValueError(f"need batch_size >= 1, num_workers >= 0, image_size >= 1, 0 <= val_fraction < 1; got "
                             f"{batch_size}, {num_workers}, {image_size}, {val_fraction}")
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        train = read_image_manifest(h.train, h.image_root)
        if h.val is not None:
            splits = {"train": train, "val": read_image_manifest(h.val, h.image_root)}
        else:
            n_val = max(1, round(len(train) * h.val_fraction)) if h.val_fraction > 0 and len(train) > 1 else 0
            splits = {"train": train[n_val:], "val": train[:n_val]}
        splits["test"] = read_image_manifest(h.test, h.image_root) if h.test is not None else splits["val"]
        splits["predict"] = splits["test"]
        self.datasets = {name: ImageDataset(records, h.image_size, h.seed) for name, records in splits.items()}
