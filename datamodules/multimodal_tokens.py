"""``MultimodalTokenDataModule``: stage-2 pre-training batches of text, keyframe codes and motion codes.

Sources, all held in memory as token ids (a clip is ~230 ids: small data sets and shard folders that fit in RAM):

- videos of manifests or the embedded demo, decoded with ``VideoClipDataset``'s extraction and tokenized once at
  ``setup`` with the frozen keyframe and motion tokenizers (optionally cached on disk, keyed by the tokenizers'
  SHA-256 and the extraction options);
- token shards written by ``lavit preprocess --stage tokens`` (``"keyframe_ids"`` / ``"motion_ids"`` per clip, or
  ``"text_ids"`` for text corpora), read with ``datamodules.streaming``'s reader;
- text: the text shards' documents, or the captions alone.

Each epoch draws ``samples_per_epoch`` samples: the kind from ``mix`` (video_text / image_text / text; image_text is
one clip's keyframe alone), the order from ``text_first_prob`` (text then media = generation, else media then text =
captioning), all a pure function of ``(seed, epoch, index)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.clip_dataset import EpochSampler, VideoClipDataset
from datamodules.manifest import VideoRecord, read_manifest
from datamodules.skipped import NoUsableDataError, SkippedVideos
from datamodules.video_text import VideoTextDataModule
from lavit.lm.sequences import IGNORE_INDEX, collate_padded, pretraining_sample
from lavit.lm.vocabulary import ImageSegment, MultimodalVocabulary, VideoSegment
from lavit.video.defaults import DEFAULT_MAX_CLIPS

log = logging.getLogger(__name__)

KINDS = ("video_text", "image_text", "text")
VOCABULARY_FIELDS = ("text_size", "visual_codes", "motion_codes", "motion_tokens_per_clip", "bos_id", "eos_id", "unk_id")


class CodebookSizesUnknownError(ValueError):
    """Token shards without tokenizer checkpoints and without ``visual_codes`` / ``motion_codes`` /
    ``motion_tokens_per_clip``: the vocabulary cannot be laid out (names what to pass)."""


class NoTrainingSamplesError(NoUsableDataError):
    """The training set holds nothing the mix can draw from (no readable video, no text)."""


@dataclass
class TokenizedVideo:
    """One video as code ids: ``keyframes[k]`` ``(n_k,)`` int64 keyframe codes and ``motion[k]``
    ``(motion_tokens_per_clip,)`` int64 motion codes of clip k; its caption and id. An image (``--images`` shards) is
    one keyframe and no motion."""

    video_id: str
    caption: str
    keyframes: list[torch.Tensor]
    motion: list[torch.Tensor]


class MixedTokenDataset(Dataset):
    """Item ``(index, epoch)`` -> ``{"sample": TokenSample, "kind": str, "caption": str, "video_id": str}``.

    The kind (weights ``mix`` over the kinds that have data), the video / text and the order are drawn from
    ``np.random.default_rng([seed, epoch, index])``; ``fixed_epoch`` pins the epoch (val / test: the same samples
    every time).
    """

    def __init__(self, vocab: MultimodalVocabulary, videos: Sequence[TokenizedVideo], texts: Sequence[tuple[str, torch.Tensor]],
                 caption_ids: Mapping[str, torch.Tensor], mix: Mapping[str, float], text_first_prob: float, length: int,
                 seed: int, max_length: int | None, max_clips: int | None, fixed_epoch: int | None = None):
        self.vocab, self.videos, self.texts, self.caption_ids = vocab, list(videos), list(texts), caption_ids
        self.text_first_prob, self.length, self.seed = text_first_prob, length, seed
        self.max_length, self.max_clips, self.fixed_epoch = max_length, max_clips, fixed_epoch
        self.clips = [v for v in self.videos if v.motion]  # videos; the rest are images
        weights = {k: float(mix.get(k, 0.0)) for k in KINDS}
        if not self.clips:
            weights["video_text"] = 0.0
        if not self.videos:
            weights["image_text"] = 0.0
        if not self.texts:
            weights["text"] = 0.0
        total = sum(weights.values())
        self.kinds = [k for k in KINDS if weights[k] > 0]
        self.probs = np.array([weights[k] / total for k in self.kinds]) if total > 0 else np.array([])

    def __len__(self) -> int:
        return self.length if self.kinds else 0

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        epoch = epoch if self.fixed_epoch is None else self.fixed_epoch
        rng = np.random.default_rng([self.seed, epoch, index])
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.probs))]
        order = "text_first" if rng.random() < self.text_first_prob else "media_first"
        if kind == "text":
            video_id, text_ids = self.texts[int(rng.integers(len(self.texts)))]
            sample = pretraining_sample(self.vocab, text_ids, None, max_length=self.max_length)
            return {"sample": sample, "kind": kind, "caption": "", "video_id": video_id}
        pool = self.videos if kind == "image_text" else self.clips  # images and videos' keyframes / videos
        video = pool[int(rng.integers(len(pool)))]
        if kind == "image_text":
            media = ImageSegment(video.keyframes[int(rng.integers(len(video.keyframes)))])
        else:
            n = len(video.keyframes) if self.max_clips is None else min(self.max_clips, len(video.keyframes))
            media = VideoSegment(video.keyframes[:n], video.motion[:n])
        sample = pretraining_sample(self.vocab, self.caption_ids[video.caption], media, order, self.max_length)
        return {"sample": sample, "kind": kind, "caption": video.caption, "video_id": video.video_id}


class PromptDataset(Dataset):
    """Item ``(index, epoch)`` -> ``{"text_ids": (n,) int64, "caption": str, "video_id": str}`` of held-out video ``index``."""

    def __init__(self, videos: Sequence[TokenizedVideo], caption_ids: Mapping[str, torch.Tensor]):
        self.videos, self.caption_ids = list(videos), caption_ids

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        video = self.videos[item[0] if isinstance(item, tuple) else item]
        return {"text_ids": self.caption_ids[video.caption], "caption": video.caption, "video_id": video.video_id}


class MultimodalTokenDataModule(SkippedVideos):
    """Stage-2 pre-training batches ``{"input_ids": (B, L), "attention_mask": (B, L), "labels": (B, L) (IGNORE_INDEX on
    padding), "kind": [str], "caption": [str], "video_id": [str]}`` (right-padded with ``pad_id``); the predict
    loader (and ``prompts_dataloader``) gives generation prompts of the held-out videos: ``{"input_ids": (B, L)``
    ``[bos] caption`` left-padded with ``pad_id``, ``"attention_mask"``, ``"text_ids": [(n,)]``, ``"caption"``,
    ``"video_id"}``.

    ``self.vocabulary`` (after ``setup``) is built from the tokenizers: ``text_size`` = len(text tokenizer),
    ``visual_codes`` / ``motion_codes`` = the keyframe / motion codebooks, ``motion_tokens_per_clip`` = the motion
    tokenizer's tokens; ``check_vocabulary(config)`` refuses a model config that disagrees.

    Args:
        motion_tokenizer, keyframe_tokenizer: checkpoints (``lavit.load_motion_tokenizer`` /
            ``lavit.load_keyframe_tokenizer``) to tokenize videos with; not needed with token shards only (then the
            sizes come from ``motion_codes`` / ``visual_codes`` / ``motion_tokens_per_clip``).
        text_tokenizer: a transformers tokenizer folder; None with the demo data trains one on the training captions
            into ``<demo_root>/text_tokenizer`` (``lavit.lm.text_tokenizer.train_text_tokenizer``).
        train_manifest, val_manifest, video_root: video manifests (no manifest and no shards: the embedded demo).
        train_shards, val_shards: ``lavit preprocess --stage tokens`` folders (clips and / or text corpora).
        use_captions_as_text: with no text shards, the captions alone are the text-only samples.
        mix: weights of ``video_text`` / ``image_text`` / ``text`` (kinds without data get none).
        text_first_prob: probability of text-then-media (generation) order.
        samples_per_epoch: training samples per epoch (None: one per training video, or per text without videos).
        max_length: the context (videos lose trailing clips to fit, see ``pretraining_sample``).
        max_clips: clips per video sample (and extracted per video).
        pad_id: padding id (the model config's ``pad_id``).
        cache_tokens: write the tokenized videos to ``<demo_root or manifest folder>/tokens_<key>.pt`` and reuse them.
        batch_size, num_workers, seed, demo_*, val_fraction: as ``VideoTextDataModule`` (demo default: 128 videos
            of 4 s at 6 fps, one 24-frame clip each).
        text_vocab_size: size of the text tokenizer trained for the demo.
        motion_codes, visual_codes, motion_tokens_per_clip: the sizes when no tokenizer checkpoint is given.
    """

    def __init__(
        self,
        motion_tokenizer: str | None = None,
        keyframe_tokenizer: str | None = None,
        text_tokenizer: str | None = None,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        video_root: str | None = None,
        train_shards: list[str] | None = None,
        val_shards: list[str] | None = None,
        use_captions_as_text: bool = True,
        mix: dict[str, float] | None = None,
        text_first_prob: float = 0.5,
        samples_per_epoch: int | None = None,
        max_length: int | None = 2048,
        max_clips: int | None = DEFAULT_MAX_CLIPS,
        pad_id: int = 0,
        cache_tokens: bool = True,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        demo_root: str = "outputs/demo_data_lm",
        demo_num_videos: int = 128,
        demo_duration: float = 4.0,
        demo_fps: float = 6.0,
        demo_size: tuple[int, int] = (192, 320),
        demo_max_speed: float = 30.0,
        demo_max_pan_speed: float | None = None,
        val_fraction: float = 0.125,
        text_vocab_size: int = 512,
        motion_codes: int | None = None,
        visual_codes: int | None = None,
        motion_tokens_per_clip: int | None = None,
    ):
        super().__init__()
        mix = {"video_text": 0.6, "image_text": 0.2, "text": 0.2} if mix is None else dict(mix)
        unknown = sorted(set(mix) - set(KINDS))
        if unknown or any(not w >= 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError(f"mix must give non-negative weights of {list(KINDS)} with a positive sum, got {mix}")
        if not 0.0 <= text_first_prob <= 1.0:
            raise ValueError(f"text_first_prob must lie in [0, 1], got {text_first_prob}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        for manifest in (train_manifest, val_manifest):
            if manifest is not None and not Path(manifest).is_file():
                raise FileNotFoundError(f"manifest not found: {manifest}")
        if (train_manifest is not None or not train_shards) and (motion_tokenizer is None or keyframe_tokenizer is None):
            raise ValueError("tokenizing videos needs both motion_tokenizer and keyframe_tokenizer checkpoints")
        self.save_hyperparameters()
        self.hparams["mix"] = mix
        self.vocabulary: MultimodalVocabulary | None = None
        self.text_tokenizer = None
        self.videos: dict[str, list[TokenizedVideo]] = {}
        self._models: tuple[Any, Any] | None = None

    # ---- sources ------------------------------------------------------------------------------
    @property
    def demo(self) -> bool:
        return self.hparams.train_manifest is None and not self.hparams.train_shards

    def _demo(self) -> VideoTextDataModule:
        h = self.hparams
        return VideoTextDataModule(demo_root=h.demo_root, demo_num_videos=h.demo_num_videos, demo_duration=h.demo_duration,
                                   demo_fps=h.demo_fps, demo_size=tuple(h.demo_size), demo_max_speed=h.demo_max_speed,
                                   demo_max_pan_speed=h.demo_max_pan_speed, val_fraction=h.val_fraction, seed=h.seed)

    def prepare_data(self) -> None:
        """Render the demo, then (once, on the first process of a node) tokenize the videos into the token cache and
        train the demo's text tokenizer, so that ``setup`` on every rank reads the same files instead of writing them
        concurrently."""
        h = self.hparams
        if self.demo:
            self._demo()._make_demo(progress=True)
        if not (self.demo or h.train_manifest is not None or h.val_manifest is not None):
            return
        records = self._records()
        train = self._tokenize_records(records.get("train", []), "train")
        self._tokenize_records(records.get("val", []), "val")
        if h.text_tokenizer is None and self.demo:
            self._text_tokenizer([v.caption for v in train])

    def _records(self) -> dict[str, list[VideoRecord]]:
        h = self.hparams
        if self.demo:
            return self._demo()._demo_splits()
        splits = {}
        for split in ("train", "val"):
            manifest = getattr(h, f"{split}_manifest")
            splits[split] = [] if manifest is None else read_manifest(manifest, video_root=h.video_root)
        return splits

    def _load_tokenizers(self):
        if self._models is None:
            from lavit import load_keyframe_tokenizer
            from lavit.tokenizers.loading import clip_options, read_motion_tokenizer_checkpoint
            from lavit.tokenizers.loading import load_motion_tokenizer

            saved = read_motion_tokenizer_checkpoint(self.hparams.motion_tokenizer)
            motion = load_motion_tokenizer(saved).eval()
            keyframe = load_keyframe_tokenizer(self.hparams.keyframe_tokenizer).eval()
            self._models = (keyframe, motion, clip_options(saved, motion.config, max_clips=self.hparams.max_clips))
        return self._models

    def _tokenize_records(self, records: list[VideoRecord], split: str) -> list[TokenizedVideo]:
        """Extract (``VideoClipDataset``'s extraction, bad videos counted in ``self.skipped``) and tokenize each video."""
        from lavit.pipelines.tokenize import keyframe_code_ids

        if not records:
            return []
        keyframe, motion, options = self._load_tokenizers()
        cache = self._cache_file(records, options)
        if cache is not None and cache.is_file():
            stored = torch.load(cache, weights_only=True)
            self.record_skipped([tuple(s) for s in stored["skipped"]])
            return [TokenizedVideo(**v) for v in stored["videos"]]
        extractor = VideoClipDataset(records, clips_per_video=None, **options)
        videos, skipped = [], []
        for index, record in enumerate(records):
            clips = extractor._extract(index, skipped)
            if clips is None:
                continue
            with torch.no_grad():
                motion_ids = torch.cat([motion.tokenize(m) for m in clips.motion.split(8)])
            codes = keyframe_code_ids(keyframe, clips.keyframes)
            videos.append(TokenizedVideo(record.video_id, record.caption, [torch.tensor(c, dtype=torch.long) for c in codes],
                                         list(motion_ids.long())))
        self.record_skipped(skipped)
        if cache is not None:  # written whole, then renamed: a reader never sees part of it
            partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
            torch.save({"videos": [v.__dict__ for v in videos], "skipped": skipped}, partial)
            os.replace(partial, cache)
        log.info("tokenized %d %s videos (%d skipped)", len(videos), split, len(skipped))
        return videos

    def _cache_file(self, records: list[VideoRecord], options: Mapping[str, Any]) -> Path | None:
        h = self.hparams
        if not h.cache_tokens:
            return None
        from lavit.weights import sha256_file

        key = json.dumps({"motion": sha256_file(h.motion_tokenizer), "keyframe": sha256_file(h.keyframe_tokenizer),
                          "options": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(options.items())},
                          "videos": [(str(r.path), r.video_id, r.caption) for r in records]}, sort_keys=True, default=str)
        folder = Path(h.demo_root) if self.demo else Path(h.train_manifest).parent
        return folder / f"tokens_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"

    def _read_shards(self, folders: Sequence[str]) -> tuple[list[TokenizedVideo], list[tuple[str, torch.Tensor]]]:
        """Clips of token shards grouped per video (in shard order), and the text-corpus documents ``(doc id, (n,)
        int64 ids)`` without the specials the text tokenizer adds (Llama's bos: ``pretraining_sample`` adds its own).

        Raises:
            ShardOptionsMismatchError: a folder's recorded tokenizer SHA-256 differs from the tokenizer file given here,
                or from another folder's (names the folder, the tokenizer and both hashes).
        """
        from litdata import StreamingDataset

        from datamodules.streaming import DecodeClip, read_shard_options

        clips: dict[str, dict[int, dict]] = defaultdict(dict)
        texts = []
        seen: dict[str, tuple[str, str]] = {}  # tokenizer -> (sha256, the first folder that recorded it)
        for folder in folders:
            options = read_shard_options(folder)
            if options.stage != "tokens":
                raise ValueError(f"{folder}: shards of stage {options.stage!r}, the LM reads `lavit preprocess --stage tokens` ones")
            self._check_shard_tokenizers(folder, options.tokenizers, seen)
            dataset = StreamingDataset(folder, shuffle=False, transform=DecodeClip(options))  # as StreamingClipDataModule
            for i in range(len(dataset)):
                s = dataset[i]
                if "text_ids" in s:
                    texts.append((s["video_id"], self._strip_added_specials(s["text_ids"].long())))
                elif "keyframe_ids" in s:
                    clips[s["video_id"]][len(clips[s["video_id"]])] = s
        videos = []
        for video_id, parts in clips.items():
            ordered = [parts[k] for k in sorted(parts)]
            keyframes = [c["keyframe_ids"].long() for c in ordered]
            if all("motion_ids" in c for c in ordered):
                videos.append(TokenizedVideo(video_id, ordered[0]["caption"], keyframes, [c["motion_ids"].long() for c in ordered]))
            elif not any("motion_ids" in c for c in ordered):  # an image-text pair (`--images` shards)
                videos.extend(TokenizedVideo(video_id, c["caption"], [k], []) for c, k in zip(ordered, keyframes))
        return videos, texts

    def _check_shard_tokenizers(self, folder: str, recorded: Mapping[str, str], seen: dict[str, tuple[str, str]]) -> None:
        """Compare the SHA-256 each shard folder recorded (``ShardOptions.tokenizers``) with the file given to this
        DataModule for that tokenizer, and with the other folders' (one vocabulary: one set of tokenizers)."""
        from lavit.shards.format import ShardOptionsMismatchError

        h = self.hparams
        given = {"keyframe": h.keyframe_tokenizer, "motion": h.motion_tokenizer, "text": h.text_tokenizer}
        diffs = []
        for name, digest in sorted(recorded.items()):
            if given.get(name) is not None and digest != self._tokenizer_hash(name, given[name]):
                diffs.append(f"{name}: shards {digest}, {name}_tokenizer {given[name]} {self._tokenizer_hash(name, given[name])}")
            elif name in seen and seen[name][0] != digest:
                diffs.append(f"{name}: shards {digest}, {seen[name][1]} {seen[name][0]}")
            seen.setdefault(name, (digest, folder))
        if diffs:
            raise ShardOptionsMismatchError(f"token shards in {folder} were made with other tokenizers ({'; '.join(diffs)}): "
                                            f"give the tokenizer files the shards were made with, or preprocess again")

    def _tokenizer_hash(self, name: str, path: str) -> str:
        cache = self.__dict__.setdefault("_hashes", {})
        if (name, path) not in cache:
            from lavit.shards.text import text_tokenizer_hash
            from lavit.weights import sha256_file

            cache[(name, path)] = text_tokenizer_hash(path) if name == "text" else sha256_file(path)
        return cache[(name, path)]

    def _strip_added_specials(self, ids: torch.Tensor) -> torch.Tensor:
        """``(n,)`` shard text ids (``tokenizer(text)``) -> the ids of ``tokenizer(text, add_special_tokens=False)``:
        the prefix / suffix the tokenizer adds to every text (found by tokenizing a probe both ways) removed."""
        if "_added_specials" not in self.__dict__:
            tok = self._text_tokenizer([])
            plain, full = tok("a", add_special_tokens=False)["input_ids"], tok("a")["input_ids"]
            starts = [k for k in range(len(full) - len(plain) + 1) if full[k:k + len(plain)] == plain]
            k = starts[0] if starts else 0
            self._added_specials = (full[:k], full[k + len(plain):]) if starts else ([], [])
        prefix, suffix = self._added_specials
        if prefix and ids[:len(prefix)].tolist() == prefix:
            ids = ids[len(prefix):]
        if suffix and ids[len(ids) - len(suffix):].tolist() == suffix:
            ids = ids[:len(ids) - len(suffix)]
        return ids

    def _text_tokenizer(self, train_captions: list[str]):
        h = self.hparams
        from lavit.lm.text_tokenizer import load_text_tokenizer

        if h.text_tokenizer is not None:
            return load_text_tokenizer(h.text_tokenizer)
        if not self.demo:
            raise ValueError("give text_tokenizer (a transformers tokenizer folder); only the demo data trains its own")
        folder = Path(h.demo_root) / "text_tokenizer"
        if (folder / "tokenizer.json").is_file() and len(load_text_tokenizer(folder)) == h.text_vocab_size:
            return load_text_tokenizer(folder)
        from lavit.lm.text_tokenizer import train_text_tokenizer

        return train_text_tokenizer(sorted(set(train_captions)), folder, h.text_vocab_size)

    # ---- setup --------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        texts: dict[str, list[tuple[str, torch.Tensor]]] = {"train": [], "val": []}
        records = self._records() if (self.demo or h.train_manifest is not None or h.val_manifest is not None) else {}
        for split in ("train", "val"):
            self.videos[split] = self._tokenize_records(records.get(split, []), split)
            shards = getattr(h, f"{split}_shards") or []
            if shards:
                videos, docs = self._read_shards(shards)
                self.videos[split] += videos
                texts[split] += docs
        train_captions = [v.caption for v in self.videos["train"]]
        self.text_tokenizer = tok = self._text_tokenizer(train_captions)
        self.vocabulary = self._vocabulary(len(tok))
        captions = {v.caption for split in self.videos.values() for v in split}
        caption_ids = {c: torch.tensor(tok(c, add_special_tokens=False)["input_ids"], dtype=torch.long) for c in sorted(captions)}
        for split in ("train", "val"):
            if not texts[split] and h.use_captions_as_text:
                texts[split] = [(v.video_id, caption_ids[v.caption]) for v in self.videos[split]]
            self._check_ids(self.videos[split], texts[split], split)
        n_train = h.samples_per_epoch or len(self.videos["train"]) or len(texts["train"])
        self.datasets["train"] = MixedTokenDataset(self.vocabulary, self.videos["train"], texts["train"], caption_ids, h.mix,
                                                   h.text_first_prob, n_train, h.seed, h.max_length, h.max_clips)
        if len(self.datasets["train"]) == 0:
            raise NoTrainingSamplesError(self._nothing_message())
        n_val = len(self.videos["val"]) or len(texts["val"])
        self.datasets["val"] = MixedTokenDataset(self.vocabulary, self.videos["val"], texts["val"], caption_ids, h.mix,
                                                 h.text_first_prob, n_val, h.seed, h.max_length, h.max_clips, fixed_epoch=0)
        self.datasets["test"] = self.datasets["val"]
        self.datasets["predict"] = PromptDataset([v for v in self.videos["val"] if v.motion], caption_ids)

    def _nothing_message(self) -> str:
        if self.skipped:
            return self.no_usable_videos("training set") + "; and no text-only samples"
        return "nothing to train on: the training set holds no video and no text (check the manifests / shard folders and mix)"

    def _vocabulary(self, text_size: int) -> MultimodalVocabulary:
        h = self.hparams
        given = dict(visual_codes=h.visual_codes, motion_codes=h.motion_codes, motion_tokens_per_clip=h.motion_tokens_per_clip)
        if h.motion_tokenizer is not None and h.keyframe_tokenizer is not None:
            keyframe, motion, _ = self._load_tokenizers()
            sizes = dict(visual_codes=keyframe_codebook_size(keyframe), motion_codes=int(motion.quantize.num_codes),
                         motion_tokens_per_clip=int(motion.num_tokens))
            wrong = [f"{k} {v} given, the tokenizers have {sizes[k]}" for k, v in given.items() if v is not None and v != sizes[k]]
            if wrong:
                raise ValueError(f"the sizes given disagree with the tokenizer checkpoints ({'; '.join(wrong)}): drop them or fix them")
        else:
            sizes = given
            missing = [k for k, v in sizes.items() if v is None]
            if missing:
                raise CodebookSizesUnknownError(
                    f"the token shards' codebook sizes are unknown: give {', '.join(missing)} (the sizes the shards were made "
                    f"with), or both tokenizer checkpoints (keyframe_tokenizer and motion_tokenizer)")
        tok = self.text_tokenizer
        special = {name: getattr(tok, f"{name}_token_id") for name in ("bos", "eos", "unk")}
        ids = {f"{k}_id": v for k, v in special.items() if v is not None}
        return MultimodalVocabulary(text_size=text_size, **sizes, **ids)

    def _check_ids(self, videos: Sequence[TokenizedVideo], texts, split: str) -> None:
        v = self.vocabulary
        for video in videos:
            for kf, mo in zip(video.keyframes, video.motion):
                if (kf.numel() and int(kf.max()) >= v.visual_codes) or int(mo.max()) >= v.motion_codes or len(mo) != v.motion_tokens_per_clip:
                    raise ValueError(f"{split} video {video.video_id}: codes outside the vocabulary ({v.visual_codes} visual "
                                     f"codes, {v.motion_codes} motion codes, {v.motion_tokens_per_clip} per clip)")
        for doc_id, ids in texts:
            if ids.numel() and int(ids.max()) >= v.text_size:
                raise ValueError(f"{split} text {doc_id}: text id {int(ids.max())} outside the text tokenizer's {v.text_size}")

    def check_vocabulary(self, config: Any) -> None:
        """Raise ValueError naming each field where ``config`` (a ``MultimodalLMConfig`` or anything with the
        vocabulary fields) disagrees with ``self.vocabulary``."""
        if self.vocabulary is None:
            raise RuntimeError("call setup() first: the vocabulary comes from the tokenizers")
        wrong = [f"{name}: model {getattr(config, name)!r}, data {getattr(self.vocabulary, name)!r}"
                 for name in VOCABULARY_FIELDS if getattr(config, name) != getattr(self.vocabulary, name)]
        if getattr(config, "pad_id", self.hparams.pad_id) != self.hparams.pad_id:
            wrong.append(f"pad_id: model {config.pad_id!r}, data {self.hparams.pad_id!r}")
        if wrong:
            raise ValueError("the model config does not match the data's vocabulary: " + "; ".join(wrong))

    # ---- loaders ------------------------------------------------------------------------------
    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate_padded([i["sample"] for i in items], self.hparams.pad_id, self.hparams.max_length)
        batch.update(kind=[i["kind"] for i in items], caption=[i["caption"] for i in items], video_id=[i["video_id"] for i in items])
        return batch

    def collate_prompts(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        prompts = [torch.cat([torch.tensor([self.vocabulary.bos_id]), i["text_ids"]]) for i in items]
        length = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), length), self.hparams.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, p in enumerate(prompts):  # left padding: generation continues every row at the same position
            ids[row, length - len(p):], mask[row, length - len(p):] = p, 1
        return {"input_ids": ids, "attention_mask": mask, "text_ids": [i["text_ids"] for i in items],
                "caption": [i["caption"] for i in items], "video_id": [i["video_id"] for i in items]}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset, h = self.datasets[split], self.hparams
        collate = self.collate_prompts if split == "predict" else self.collate
        return DataLoader(dataset, batch_size=h.batch_size, sampler=EpochSampler(dataset, shuffle=shuffle, seed=h.seed),
                          num_workers=h.num_workers, collate_fn=collate, persistent_workers=h.num_workers > 0)

    def prompts_dataloader(self) -> DataLoader:
        """Held-out captions as generation prompts (the predict loader)."""
        return self._loader("predict", shuffle=False)


def keyframe_codebook_size(tokenizer: Any) -> int:
    """Codes of a ``KeyframeTokenizer``'s quantiser."""
    return int(tokenizer.quantize.num_codes)


__all__ = ["CodebookSizesUnknownError", "IGNORE_INDEX", "MixedTokenDataset", "MultimodalTokenDataModule", "NoTrainingSamplesError", "PromptDataset",
           "TokenizedVideo"]
