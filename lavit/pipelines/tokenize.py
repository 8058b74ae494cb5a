"""Motion tokens and reconstructed motion for videos (``lavit tokenize``, ``lavit reconstruct-motion``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image

from lavit.pipelines.extract import ExtractReport, iter_video_clips, unique_name
from lavit.tokenizers.loading import load_motion_tokenizer
from lavit.video.flow_image import motion_comparison_picture


def tokenize_videos(
    videos: Iterable[str | os.PathLike],
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    device: str = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    tokenizer_config: dict[str, Any] | None = None,
    **options: Any,
) -> ExtractReport:
    """Write one JSON line per video to ``output``: ``{"video", "starts", "tokens": [[135 ids] per clip]}``.

    ``checkpoint`` is the official ``motion_tokenizer.bin``, a safetensors file or one of our
    MotionVQVAE checkpoints; ``options`` go to ``extract_clips`` (use the normalisation it was trained on).
    """
    model = load_motion_tokenizer(checkpoint, **(tokenizer_config or {})).to(device)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    with open(out, "w") as f:
        for path, clips in iter_video_clips(videos, report, progress, "tokenize", **options):
            tokens = torch.cat([model.tokenize(m.to(device)) for m in clips.motion.split(batch_size)])
            f.write(json.dumps({"video": str(path), "starts": clips.starts, "tokens": tokens.cpu().tolist()}) + "\n")
    return report


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
    """Per video, ``<output_dir>/<stem>/``: ``motion_rec_{k}.npy`` (2, 24, 20, 36) decoded from the
    tokens and ``motion_rec.png`` (input above reconstruction, per clip)."""
    model = load_motion_tokenizer(checkpoint, **(tokenizer_config or {})).to(device)
    root = Path(output_dir)
    used: set[str] = set()
    report = ExtractReport()
    for path, clips in iter_video_clips(videos, report, progress, "reconstruct", **options):
        rec = torch.cat([model.reconstruct(m.to(device)).float().cpu() for m in clips.motion.split(batch_size)])
        folder = root / unique_name(path.stem, used)
        folder.mkdir(parents=True, exist_ok=True)
        for k, clip in enumerate(rec):
            np.save(folder / f"motion_rec_{k:02d}.npy", clip.numpy())
        Image.fromarray(motion_comparison_picture(clips.motion.numpy(), rec.numpy())).save(folder / "motion_rec.png")
    return report
