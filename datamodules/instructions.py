"""``InstructionDataModule``: stage-3 instruction tuning samples, a Vicuna v1 conversation + the image or video it needs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.clip_dataset import replacement_order
from datamodules.image_text import image_error_reason
from datamodules.skipped import NoUsableDataError, SkippedVideos
from lavit.lm.conversation import Conversation, encode_conversation, read_conversations
from lavit.lm.sequences import collate_padded
from lavit.lm.text_tokenizer import load_text_tokenizer
from lavit.video import VideoDecodeError, extract_clips, preprocess_keyframes
from lavit.video.defaults import CLIP_LEN, DEFAULT_FPS, DEFAULT_MAX_CLIPS, DEFAULT_MIN_FRAMES, FIELD_SIZE

UNDERSTANDING_PAD_ID = 0  # official understanding pad = unk


class NoUsableConversationsError(NoUsableDataError):
    """Every conversation of a set needs media that failed to load: nothing to train or evaluate on."""


class InstructionDataset(Dataset):
    """Item ``(index, epoch)`` -> ``{"sample": TokenSample (ids with placeholder ids, labels on answers), "media":
    None | {"kind": "image", "keyframe": (3, S, S)} | {"kind": "video", "keyframes": (N, 3, S, S), "motion":
    (N, 2, T, H, W)}, "conversation_id": str, "skipped": [(path, reason), ...]}``; images and keyframes are
    CLIP-normalised (``preprocess_keyframes``). A conversation whose media cannot be read is replaced by another
    one (its own media included) in the order of ``replacement_order`` (as ``VideoClipDataset``); with none readable
    the item is ``{"skipped": [...], "exhausted": True}``.

    Args:
        conversations: from ``read_conversations``.
        tokenizer: a fast transformers tokenizer (``load_text_tokenizer``).
        image_size: side of the square images / keyframes (the keyframe tokenizer's ``img_size``).
        extract_options: ``lavit.video.extract_clips`` options of the videos (fps, max_clips, ...).
    """

    def __init__(self, conversations: Sequence[Conversation], tokenizer, image_size: int = 224, seed: int = 0, **extract_options):
        self.conversations, self.tokenizer = list(conversations), tokenizer
        self.image_size, self.seed, self.extract_options = image_size, seed, extract_options
        self.bad: dict[int, tuple[str, str]] = {}  # index -> (path, reason), per worker process

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        skipped: list[tuple[str, str]] = []
        for candidate in replacement_order(index, len(self.conversations), self.seed, epoch):
            ok, media = self._media(candidate, skipped)
            if ok:
                conv = self.conversations[candidate]
                return {"sample": encode_conversation(conv, self.tokenizer), "media": media,
                        "conversation_id": conv.conversation_id, "skipped": skipped}
        return {"skipped": skipped, "exhausted": True}

    def _media(self, index: int, skipped: list[tuple[str, str]]) -> tuple[bool, dict | None]:
        conv = self.conversations[index]
        if conv.media is None:
            return True, None
        if index not in self.bad:
            try:
                return True, (self._image(conv.media) if conv.kind == "image" else self._video(conv.media))
            except VideoDecodeError as err:
                self.bad[index] = (err.path, err.reason)
            except (OSError, ValueError, Image.DecompressionBombError) as err:  # missing, truncated, not an image
                self.bad[index] = (str(conv.media), image_error_reason(err))
        skipped.append(self.bad[index])
        return False, None

    def _image(self, path: Path) -> dict:
        with Image.open(path) as img:
            rgb = np.array(img.convert("RGB"))
        return {"kind": "image", "keyframe": preprocess_keyframes(rgb[None], self.image_size)[0]}

    def _video(self, path: Path) -> dict:
        clips = extract_clips(path, **self.extract_options)
        return {"kind": "video", "keyframes": preprocess_keyframes(clips.keyframes, self.image_size), "motion": clips.motion}


def collate_instructions(items: list[dict], pad_id: int = UNDERSTANDING_PAD_ID) -> dict:
    """``{"input_ids": (B, L), "attention_mask": (B, L), "labels": (B, L)`` (right-padded, ``collate_padded``),
    ``"media": [None | dict] * B, "conversation_id": [str] * B, "skipped": [...]}``; or ``{"exhausted": True,
    "skipped": [...]}`` when the set has no usable conversation."""
    skipped = [s for item in items for s in item["skipped"]]
    if any(item.get("exhausted") for item in items):
        return {"exhausted": True, "skipped": skipped}
    batch = collate_padded([i["sample"] for i in items], pad_id)
    return {**batch, "media": [i["media"] for i in items], "conversation_id": [i["conversation_id"] for i in items],
            "skipped": skipped}


class InstructionDataModule(SkippedVideos):
    """Stage-3 batches (see :func:`collate_instructions`) from conversation JSONs (LLaVA or Video-ChatGPT style,
    ``lavit.lm.conversation.read_conversations``) and a media root. Conversations whose image / video is missing
    or unreadable are replaced (batches stay full), counted in ``self.skipped`` (path -> reason) and logged once
    each; a set with none usable raises ``NoUsableConversationsError``.

    Args:
        train, val, test: conversation JSON / JSONL files; without ``val``, ``val_fraction`` of ``train`` (at least
            one) is held out; ``test`` defaults to the validation set.
        tokenizer: the text tokenizer's folder (``load_text_tokenizer``) or a loaded fast tokenizer.
        media_root: folder relative media paths resolve against (default: each JSON's folder).
        image_size: side of the CLIP-normalised images and keyframes (224; the keyframe tokenizer's ``img_size``).
        batch_size, num_workers, seed: DataLoader settings, seed of shuffle and replacement choice.
        fps, max_clips, sampling, normalization, clip_len, field_size, min_frames: see ``lavit.video.extract_clips``
            (``max_clips`` 8: the official understanding runner's default).
    """

    item_kind = "media file"
    no_usable_error = NoUsableConversationsError
    collate_fn = staticmethod(collate_instructions)

    def __init__(
        self,
        train: str,
        tokenizer: Any,  # a folder path (CLI) or a loaded tokenizer
        val: str | None = None,
        test: str | None = None,
        media_root: str | None = None,
        image_size: int = 224,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        fps: float = DEFAULT_FPS,
        max_clips: int | None = DEFAULT_MAX_CLIPS,
        sampling: Literal["official", "dense"] = "official",
        normalization: Literal["official", "unit", "pixels"] = "official",
        clip_len: int = CLIP_LEN,
        field_size: tuple[int, int] = FIELD_SIZE,
        min_frames: int = DEFAULT_MIN_FRAMES,
    ):
        super().__init__()
        for source in (train, val, test):
            if source is not None and not Path(source).is_file():
                raise FileNotFoundError(f"conversation file not found: {source}")
        if batch_size < 1 or num_workers < 0 or image_size < 1 or not 0 <= val_fraction < 1:
            raise ValueError(f"need batch_size >= 1, num_workers >= 0, image_size >= 1, 0 <= val_fraction < 1; got "
                             f"{batch_size}, {num_workers}, {image_size}, {val_fraction}")
        path_given = isinstance(tokenizer, (str, os.PathLike))
        self.tokenizer = load_text_tokenizer(tokenizer) if path_given else tokenizer
        self.save_hyperparameters(ignore=None if path_given else ["tokenizer"])

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        train = read_conversations(h.train, h.media_root)
        if h.val is not None:
            splits = {"train": train, "val": read_conversations(h.val, h.media_root)}
        else:
            n_val = max(1, round(len(train) * h.val_fraction)) if h.val_fraction > 0 and len(train) > 1 else 0
            splits = {"train": train[n_val:], "val": train[:n_val]}
        splits["test"] = read_conversations(h.test, h.media_root) if h.test is not None else splits["val"]
        splits["predict"] = splits["test"]
        options = dict(fps=h.fps, max_clips=h.max_clips, sampling=h.sampling, normalization=h.normalization,
                       clip_len=h.clip_len, field_size=tuple(h.field_size), min_frames=h.min_frames)
        self.datasets = {name: InstructionDataset(convs, self.tokenizer, h.image_size, h.seed, **options)
                         for name, convs in splits.items()}
