"""The shard format: what one litdata sample holds per stage, and the options file beside the chunks.

One sample = one clip (one image for image-text manifests). Keys and types, as written by ``lavit preprocess``:

- every stage: ``"video"`` (str, the path as the manifest gave it), ``"video_id"`` (str), ``"caption"`` (str),
  ``"clip"`` (int, index among the video's sampled clips), ``"start"`` (int, the keyframe's frame index at ``fps``);
- ``motion`` and ``detokenizer``: ``"keyframe"`` (bytes: the keyframe at transcode resolution, encoded as
  ``keyframe_format``), ``"motion"`` (np.float16 (2, clip_len, *field_size), normalised as ``normalization``);
- ``detokenizer`` also: ``"frames"`` (bytes: the clip's ``clip_len`` frames at ``frame_size``, encoded as
  ``frames_format``);
- ``tokens``: ``"keyframe_ids"`` (np.int32 (n,), keyframe codebook ids, deterministic selection) and
  ``"motion_ids"`` (np.int32 (num_motion_tokens,)); image-text samples have ``"keyframe_ids"`` only; text-corpus
  samples (``lavit.shards.text``) have ``"text_ids"`` (np.int32 (n,), the LM text tokenizer's ids) only, with
  ``"video"`` the corpus, ``"video_id"`` the document id, ``"caption"`` ``""`` and ``"clip"`` the line index.

``<output>/lavit_preprocess.json`` (:class:`ShardOptions`) records the stage and every option the samples depend on
(and the SHA-256 of the tokenizer checkpoints for ``tokens``, of the text tokenizer's files for text corpora); a reader compares it with its own settings and
refuses shards made otherwise (:meth:`ShardOptions.check_compatible`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
from PIL import Image

STAGES = ("motion", "detokenizer", "tokens")
OPTIONS_FILE = "lavit_preprocess.json"
FORMAT_VERSION = 1

Stage = Literal["motion", "detokenizer", "tokens"]


class ShardOptionsMismatchError(ValueError):
    """Shards were made with options other than the reader's (names the folder and each differing option)."""


@dataclass(frozen=True)
class ShardOptions:
    """Everything the samples of one shard folder depend on.

    Args:
        stage: ``"motion"``, ``"detokenizer"`` or ``"tokens"``.
        fps, max_clips, sampling, normalization, clip_len, field_size, min_frames: ``lavit.video.extract_clips``.
        frame_size: (H, W) of ``"frames"`` (``detokenizer`` only, else None).
        keyframe_format: ``"png"`` (lossless) or ``"jpeg"`` (``keyframe_quality``) for ``"keyframe"``.
        frames_format: how ``"frames"`` are encoded (``detokenizer``), e.g. ``"mp4"`` or ``"jpeg"``.
        tokenizers: ``{"keyframe": sha256, "motion": sha256}`` of the checkpoints, or ``{"text": sha256}`` of the
            text tokenizer folder (``lavit.shards.text.text_tokenizer_hash``) for text corpora (``tokens`` only).
        format_version: of this layout.
    """

    stage: Stage
    fps: float
    max_clips: int | None
    sampling: str
    normalization: str
    clip_len: int
    field_size: tuple[int, int]
    min_frames: int
    frame_size: tuple[int, int] | None = None
    keyframe_format: str = "png"
    keyframe_quality: int = 95
    frames_format: str | None = None
    tokenizers: Mapping[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        object.__setattr__(self, "field_size", tuple(int(s) for s in self.field_size))
        if self.frame_size is not None:
            object.__setattr__(self, "frame_size", tuple(int(s) for s in self.frame_size))
        object.__setattr__(self, "tokenizers", dict(self.tokenizers))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["field_size"] = list(self.field_size)
        out["frame_size"] = None if self.frame_size is None else list(self.frame_size)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ShardOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown shard options {unknown}; known: {sorted(known)}")
        return cls(**data)

    def check_compatible(self, folder: str | os.PathLike, **expected: Any) -> None:
        """Raise :class:`ShardOptionsMismatchError` naming every option in ``expected`` that differs from the shards'.

        Sequences compare as tuples (YAML gives lists). Options not given are not checked."""
        mine = self.to_dict()
        diffs = []
        for name, want in expected.items():
            if name not in mine:
                raise ValueError(f"{name!r} is not a shard option; known: {sorted(mine)}")
            have = mine[name]
            norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
            if norm(have) != norm(want):
                diffs.append(f"{name}: shards {have!r}, requested {want!r}")
        if diffs:
            raise ShardOptionsMismatchError(
                f"shards in {folder} were made with other options ({'; '.join(diffs)}): preprocess again with these "
                f"options (lavit preprocess ... -o NEW_FOLDER) or set the DataModule's options to the shards'"
            )


def write_options(folder: str | os.PathLike, options: ShardOptions) -> Path:
    """Write ``<folder>/lavit_preprocess.json``."""
    path = Path(folder) / OPTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(options.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_options(folder: str | os.PathLike) -> ShardOptions:
    """Read ``<folder>/lavit_preprocess.json``; FileNotFoundError naming it when the folder holds no lavit shards."""
    path = Path(folder) / OPTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a folder written by `lavit preprocess` (or the run has not finished)")
    return ShardOptions.from_dict(json.loads(path.read_text()))


def encode_image(rgb: np.ndarray, image_format: str = "png", quality: int = 95) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG (lossless) or JPEG (``quality``, 4:4:4) bytes."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    buffer = io.BytesIO()
    if image_format == "png":
        Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    elif image_format == "jpeg":
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, subsampling=0)
    else:
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """PNG / JPEG bytes -> (H, W, 3) uint8 RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def decode_sample(sample: Mapping[str, Any], options: ShardOptions) -> dict[str, Any]:
    """A raw litdata sample -> arrays: ``"keyframe"`` (H, W, 3) uint8, ``"motion"`` float32, ``"frames"`` (T, 3, H, W) uint8
    (via ``lavit.shards.frames.decode_frames`` of ``options.frames_format``), ids as int64; other keys unchanged."""
    out = dict(sample)
    if "keyframe" in out:
        out["keyframe"] = decode_image(out["keyframe"])
    if "motion" in out:
        out["motion"] = np.asarray(out["motion"], dtype=np.float32)
    if "frames" in out:
        from lavit.shards.frames import decode_frames

        out["frames"] = decode_frames(out["frames"], options)
    for key in ("keyframe_ids", "motion_ids", "text_ids"):
        if key in out:
            out[key] = np.asarray(out[key], dtype=np.int64)
    return out
