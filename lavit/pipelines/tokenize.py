"""Motion (and keyframe) tokens and reconstructed motion for videos (``lavit tokenize``, ``lavit reconstruct-motion``).

Clips are extracted with the settings the tokenizer was trained on, read from its checkpoint (field
size and clip length from its config; fps, sampling and normalisation from the data module's saved
settings; the paper's for official weights); explicit ``options`` override them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image

from lavit.pipelines.extract import ExtractReport, iter_video_clips, output_folder_name
from lavit.tokenizers.keyframe_loading import load_keyframe_tokenizer
from lavit.tokenizers.keyframe_tokenizer import KeyframeTokenizer
from lavit.tokenizers.loading import clip_options, load_motion_tokenizer, read_motion_tokenizer_checkpoint
from lavit.tokenizers.motion_tokenizer import MotionTokenizer
from lavit.video.flow_image import motion_comparison_picture
from lavit.video.keyframes import preprocess_keyframes


def tokenize_videos(
    videos: Iterable[str | os.PathLike],
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    device: str = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    tokenizer_config: dict[str, Any] | None = None,
    keyframe_tokenizer: str | os.PathLike | None = None,
    **options: Any,
) -> ExtractReport:
    """Write one JSON line per clip to ``output``: ``{"video", "clip", "start", ["keyframe_ids",] "motion_ids"}``.

    ``clip`` is the clip's index in its video, ``start`` the frame index (at the extraction fps) of its keyframe
    (``VideoClips.starts``), ``motion_ids`` its ``num_tokens`` motion token ids. ``keyframe_ids`` (only with
    ``keyframe_tokenizer``) are the keyframe tokenizer's codebook ids (0..n_code-1, 16383 at most for the paper's;
    not LM ids: ``KeyframeTokenizer.to_lm_ids`` adds the offset), selected deterministically so they are reproducible.
    The keyframe reaches the tokenizer as the training data does: ``lavit.video.preprocess_keyframes`` to its
    ``img_size``, CLIP-normalised.

    ``checkpoint`` is the official ``motion_tokenizer.bin``, a safetensors file or one of our
    MotionVQVAE checkpoints; ``tokenizer_config`` holds config overrides (``num_heads`` for files
    without config); ``keyframe_tokenizer`` is anything ``lavit.load_keyframe_tokenizer`` takes;
    ``options`` go to ``extract_clips`` and override the checkpoint's settings (None values are ignored).

    Raises:
        ValueError: a ``field_size`` or ``clip_len`` the tokenizer cannot take; see also
            ``load_motion_tokenizer`` and ``lavit.load_keyframe_tokenizer``.
    """
    model, options = _tokenizer_and_options(checkpoint, device, tokenizer_config, options)
    keyframes = None if keyframe_tokenizer is None else load_keyframe_tokenizer(keyframe_tokenizer).to(device)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    with open(out, "w") as f:
        for path, clips in iter_video_clips(videos, report, progress, "tokenize", **options):
            motion = torch.cat([model.tokenize(m.to(device)) for m in clips.motion.split(batch_size)]).cpu().tolist()
            codes = None if keyframes is None else keyframe_code_ids(keyframes, clips.keyframes, device, batch_size)
            for k, start in enumerate(clips.starts):
                line = {"video": str(path), "clip": k, "start": int(start)}
                if codes is not None:
                    line["keyframe_ids"] = codes[k]
                f.write(json.dumps({**line, "motion_ids": motion[k]}) + "\n")
    return report


@torch.no_grad()
def keyframe_code_ids(tokenizer: KeyframeTokenizer, keyframes: np.ndarray, device: str = "cpu", batch_size: int = 8) -> list[list[int]]:
    """(N, H, W, 3) uint8 RGB keyframes -> N lists of codebook ids, deterministic selection (kept tokens in raster order)."""
    images = preprocess_keyframes(keyframes, tokenizer.config.img_size)
    return [ids.tolist() for x in images.split(batch_size) for ids in tokenizer.tokenize(x.to(device), selection="deterministic")]


def reconstruct_motion_videos(
    videos: Iterable[str | os.PathLike],
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    device: str = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    tokenizer_config: dict[str, Any] | None = None,
    **options: Any,
) -> ExtractReport:
    """Per video, ``<output_dir>/<stem>_<hash>/`` (``output_folder_name``): ``motion_rec_{k}.npy`` (2, T, H, W: the tokenizer's input
    shape, (2, 24, 20, 36) for the paper's) decoded from the tokens and ``motion_rec.png`` (input above
    reconstruction, per clip). Arguments as ``tokenize_videos``."""
    model, options = _tokenizer_and_options(checkpoint, device, tokenizer_config, options)
    root = Path(output_dir)
    report = ExtractReport()
    for path, clips in iter_video_clips(videos, report, progress, "reconstruct", **options):
        rec = torch.cat([model.reconstruct(m.to(device)).float().cpu() for m in clips.motion.split(batch_size)])
        folder = root / output_folder_name(path)
        folder.mkdir(parents=True, exist_ok=True)
        for k, clip in enumerate(rec):
            np.save(folder / f"motion_rec_{k:02d}.npy", clip.numpy())
        Image.fromarray(motion_comparison_picture(clips.motion.numpy(), rec.numpy())).save(folder / "motion_rec.png")
    return report


def _tokenizer_and_options(checkpoint, device, tokenizer_config, options) -> tuple[MotionTokenizer, dict[str, Any]]:
    """The loaded tokenizer and the ``extract_clips`` options for it (the checkpoint's, then ``options``)."""
    saved = read_motion_tokenizer_checkpoint(checkpoint)
    model = load_motion_tokenizer(saved, **(tokenizer_config or {}))
    return model.to(device), clip_options(saved, model.config, **options)
