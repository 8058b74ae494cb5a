"""Videos back from keyframe + motion through the video detokenizer (``lavit reconstruct``).

Each clip's keyframe (its I-frame, resized and centre-cropped to ``size``) and its motion (the motion vectors, or
their motion tokens decoded by a motion tokenizer: what generation sees) are turned back into frames by
``VideoDetokenizerPipeline``. Per video, ``<output_dir>/<output_folder_name(video)>/`` receives ``clip_{k}.mp4``
(the reconstruction), ``clip_{k}_side_by_side.mp4`` (ground truth | reconstruction), ``comparison.png`` (rows:
ground truth, reconstruction per clip) and ``metrics.json`` (PSNR against the ground truth, and of the
repeated-keyframe baseline that every frame equals the keyframe).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from lavit.detokenizer.autoencoder import PixelSpaceAutoencoder
from lavit.detokenizer.components import MissingComponentError, load_scheduler, load_vae
from lavit.detokenizer.loading import load_video_detokenizer
from lavit.detokenizer.pipeline import VideoDetokenizerPipeline
from lavit.pipelines.extract import ExtractReport, iter_video_clips, output_folder_name
from lavit.tokenizers.loading import clip_options, load_motion_tokenizer, read_motion_tokenizer_checkpoint
from lavit.video.writer import comparison_picture, write_frames
from lavit.weights import read_checkpoint

OFFICIAL_SIZE = (320, 576)
"""(H, W) of the official reconstruction notebook."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape (peak 255)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _training_settings(detokenizer: str | os.PathLike) -> dict[str, Any]:
    """``vae`` and ``frame_size`` a ``VideoDetokenizer`` Lightning checkpoint was trained with ({} for other files)."""
    path = Path(detokenizer)
    if path.suffix != ".ckpt" or not path.is_file():
        return {}
    raw = read_checkpoint(path)
    hparams: Mapping[str, Any] = raw.get("hyper_parameters") or {}
    data: Mapping[str, Any] = raw.get("datamodule_hyper_parameters") or {}
    settings = {}
    if "vae" in hparams:
        settings["vae"] = hparams["vae"]
    if data.get("frame_size") is not None:
        settings["frame_size"] = tuple(data["frame_size"])
    return settings


def build_pipeline(
    detokenizer: str | os.PathLike,
    vae: str | os.PathLike | None = None,
    scheduler: str | os.PathLike | None = None,
    motion_tokenizer: str | os.PathLike | None = None,
    device: str = "cpu",
) -> tuple[VideoDetokenizerPipeline, dict[str, Any]]:
    """The pipeline for a detokenizer file and the training settings found in it.

    ``vae``: a diffusers VAE folder (or an SVD / Video-LaVIT root with ``vae/``); default: the one a ``VideoDetokenizer``
    checkpoint was trained with, else pixel space for 3-channel (pixel-space) models. ``scheduler``: a folder, default
    SVD's Euler EDM config.

    Raises:
        MissingComponentError: no VAE given for a latent-space model, or a missing file (names it and its source).
    """
    model = load_video_detokenizer(detokenizer)
    settings = _training_settings(detokenizer)
    vae = vae if vae is not None else settings.get("vae")
    if vae is not None:
        autoencoder = load_vae(vae)
    elif model.config.latent_channels == 3:
        autoencoder = PixelSpaceAutoencoder()
    else:
        raise MissingComponentError("--vae", "the SVD VAE folder (vae/) this latent-space detokenizer decodes with")
    tokenizer = None
    if motion_tokenizer is not None:
        saved = read_motion_tokenizer_checkpoint(motion_tokenizer)
        tokenizer = load_motion_tokenizer(saved).eval()
        settings["clip_options"] = clip_options(saved, tokenizer.config)
    pipeline = VideoDetokenizerPipeline(model, autoencoder, load_scheduler(scheduler), tokenizer).to(device)
    return pipeline, settings


def reconstruct_videos(
    videos: Iterable[str | os.PathLike],
    detokenizer: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    motion_tokenizer: str | os.PathLike | None = None,
    vae: str | os.PathLike | None = None,
    scheduler: str | os.PathLike | None = None,
    size: Sequence[int] | None = None,
    num_steps: int = 25,
    min_guidance: float = 1.0,
    max_guidance: float = 3.0,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    **options: Any,
) -> ExtractReport:
    """Reconstruct every clip of ``videos`` (files or folders); see the module docstring for what is written.

    Args:
        detokenizer: ``video_3d_unet.bin``, a safetensors file, a ``unet/`` folder or a ``VideoDetokenizer`` checkpoint.
        motion_tokenizer: a motion tokenizer file: the motion is tokenized and decoded before conditioning (the
            clip settings then follow the tokenizer).
        size: (H, W) of the output, multiples of the pipeline's ``spatial_multiple``; default: the checkpoint's
            training frame size, else 320 x 576.
        num_steps, min_guidance, max_guidance, seed: sampling (official notebook: 25 steps, guidance 1 -> 3).
        options: ``extract_clips`` settings (fps, max_clips, ...), None values ignored.
    """
    pipeline, settings = build_pipeline(detokenizer, vae, scheduler, motion_tokenizer, device)
    size = tuple(size) if size is not None else settings.get("frame_size", OFFICIAL_SIZE)
    multiple = pipeline.spatial_multiple
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(f"size {size[0]}x{size[1]} (HxW) must be a multiple of {multiple} for this detokenizer and VAE")
    extract = {**settings.get("clip_options", {}), **{k: v for k, v in options.items() if v is not None}, "frame_size": size}
    root = Path(output_dir)
    report = ExtractReport()
    for path, clips in iter_video_clips(videos, report, progress, "reconstruct", **extract):
        folder = root / output_folder_name(path)
        folder.mkdir(parents=True, exist_ok=True)
        rows, metrics = [], []
        for k in range(len(clips)):
            truth = clips.frames[k].permute(0, 2, 3, 1).contiguous()  # (T, H, W, 3) uint8
            motion = clips.motion[k : k + 1]
            kwargs: dict[str, Any] = {"motion": motion}
            if pipeline.motion_tokenizer is not None:
                tokenizer_device = next(pipeline.motion_tokenizer.parameters()).device
                with torch.no_grad():
                    kwargs = {"motion_tokens": pipeline.motion_tokenizer.tokenize(motion.to(tokenizer_device))}
            video = pipeline.generate(truth[:1], num_steps=num_steps, min_guidance=min_guidance, max_guidance=max_guidance,
                                      seed=seed + k, **kwargs).frames[0].cpu()
            truth_np, video_np = truth.numpy(), video.numpy()
            write_frames(video_np, folder / f"clip_{k:02d}.mp4", fps=clips.fps)
            write_frames(np.concatenate([truth_np, video_np], axis=2), folder / f"clip_{k:02d}_side_by_side.mp4", fps=clips.fps)
            rows += [truth_np, video_np]
            metrics.append({
                "clip": k, "start": clips.starts[k], "psnr": psnr(video_np, truth_np),
                "psnr_repeated_keyframe": psnr(np.broadcast_to(truth_np[:1], truth_np.shape), truth_np),
            })
        Image.fromarray(comparison_picture(rows)).save(folder / "comparison.png")
        (folder / "metrics.json").write_text(json.dumps({"video": str(path), "size": list(size), "clips": metrics}, indent=2))
    return report
