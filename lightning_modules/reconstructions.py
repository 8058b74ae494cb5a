"""Sampled-video reconstructions: PSNR / SSIM against the truth and a repeated-keyframe baseline, mp4 and picture."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from lavit.video.pixels import from_rgb


def reconstruction_metrics(reconstruction: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR (dB) and SSIM over frames 1..T-1 of ``(N, T, 3, H, W)`` videos in [-1, 1]; ``*_keyframe`` = the baseline
    that repeats frame 0 (what a model that ignores motion and keeps the picture still would score)."""
    target = truth[:, 1:].flatten(0, 1).float()
    baseline = truth[:, :1].expand_as(truth)[:, 1:].flatten(0, 1).float()
    kernel = min(11, (min(truth.shape[-2:]) - 1) // 2 * 2 + 1)  # SSIM's Gaussian window must fit the frame
    out = {}
    for name, pred in (("", reconstruction[:, 1:].flatten(0, 1).float()), ("_keyframe", baseline)):
        out[f"val/psnr{name}"] = peak_signal_noise_ratio(pred, target, data_range=(-1.0, 1.0))
        out[f"val/ssim{name}"] = structural_similarity_index_measure(pred, target, data_range=(-1.0, 1.0), kernel_size=kernel)
    return out


def _display(videos: torch.Tensor, min_side: int = 128) -> np.ndarray:
    """(N, T, 3, H, W) uint8 -> (N, T, H', W', 3), enlarged by an integer factor (nearest) to at least ``min_side``."""
    scale = max(1, -(-min_side // min(videos.shape[-2:])))
    return videos.permute(0, 1, 3, 4, 2).repeat_interleave(scale, 2).repeat_interleave(scale, 3).numpy()


def write_side_by_side(truth: torch.Tensor, reconstruction: torch.Tensor, path: str | Path, fps: int = 6) -> Path:
    """One H.264 mp4 of ``truth | reconstruction`` (clips stacked vertically), from ``(N, T, 3, H, W)`` uint8."""
    frames = np.concatenate([_display(truth), _display(reconstruction)], axis=3)  # (N, T, H, 2W, 3)
    frames = np.concatenate(list(frames), axis=1)  # (T, N*H, 2W, 3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.height, stream.width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(from_rgb(frame[: stream.height, : stream.width], stream.pix_fmt)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def reconstruction_picture(truth: torch.Tensor, reconstruction: torch.Tensor, num_frames: int = 6, gap: int = 4) -> np.ndarray:
    """(rows, cols, 3) uint8: per clip, ``num_frames`` evenly spaced truth frames | the same reconstructed frames."""
    t = truth.shape[1]
    index = torch.linspace(0, t - 1, min(num_frames, t)).round().long()
    rows = []
    for a, b in zip(_display(truth[:, index]), _display(reconstruction[:, index])):
        white = np.full((a.shape[1], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([*a, white, white, *b], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)
