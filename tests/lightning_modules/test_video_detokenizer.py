"""VideoDetokenizer through real Lightning runs: EMA, trainable sets, checkpoints, resume, DDP, bad input."""

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lavit.detokenizer import VideoDetokenizerConfig
from lavit.video.synthetic import Scene, Texture
from lightning_modules.video_detokenizer import VideoDetokenizer, paper_trainable
from tests.lightning_modules.callbacks import RecordLosses

ROOT = Path(__file__).resolve().parents[2]
FPS = 6


def render_clips(num_clips: int, size=(16, 16), frames: int = 24, seed: int = 0) -> list[dict]:
    """Camera pans over random textures: frames (T, 3, H, W) uint8 and the pan as a constant motion field
    (2, T, 20, 36) in px/frame (frame 0 has no motion, as the first frame of a clip)."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(num_clips):
        pan = rng.uniform(-12, 12, 2)
        scene = Scene(size[0], size[1], tuple(pan), Texture(seed * 1000 + i, min_wavelength=4, max_wavelength=16))
        video = np.stack([scene.render(t / FPS) for t in range(frames)])
        motion = torch.tensor(pan / FPS, dtype=torch.float32).view(2, 1, 1, 1).expand(2, frames, 20, 36).clone()
        motion[:, 0] = 0
        clips.append({"frames": torch.from_numpy(video).permute(0, 3, 1, 2).contiguous(), "motion": motion})
    return clips


class SyntheticClips(pl.LightningDataModule):
    """Batches ``{"frames": (N, T, 3, H, W) uint8, "motion": (N, 2, T, 20, 36)}`` of rendered pans (fixed order)."""

    def __init__(self, num_train: int = 4, num_val: int = 2, size: tuple[int, int] = (16, 16), batch_size: int = 2, frames: int = 24):
        super().__init__()
        self.train_set = render_clips(num_train, tuple(size), frames, seed=0)
        self.val_set = render_clips(num_val, tuple(size), frames, seed=1)
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)


def tiny_model(**kwargs) -> VideoDetokenizer:
    args = dict(detokenizer="demo", lr=1e-3, warmup_steps=0, ema_decay=0.9, val_sigmas=(0.5, 2.0), seed=0)
    return VideoDetokenizer(**{**args, **kwargs})


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    args = dict(accelerator="cpu", devices=1, max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                default_root_dir=tmp_path, limit_val_batches=1, num_sanity_val_steps=0)
    return pl.Trainer(**{**args, **kwargs})


def test_fit_loss_finite_and_ema_formula(tmp_path):
    pl.seed_everything(0)
    model = tiny_model()
    initial = {k: v.clone() for k, v in model.model.state_dict().items()}
    recorder = RecordLosses()
    t = trainer(tmp_path, max_steps=1, callbacks=[recorder])
    data = SyntheticClips()
    t.fit(model, datamodule=data)
    assert len(recorder.losses) == 1 and np.isfinite(recorder.losses[0][2])
    (metrics,) = t.validate(model, datamodule=data, verbose=False)
    assert {"val/loss", "val/loss_zero_motion", "val/loss_sigma_0.5", "val/loss_sigma_2"} <= set(metrics)
    assert metrics["val/loss"] == pytest.approx((metrics["val/loss_sigma_0.5"] + metrics["val/loss_sigma_2"]) / 2, rel=1e-5)
    trained, ema = model.model.state_dict(), model.ema.state_dict()
    moved = [k for k in trained if not torch.equal(trained[k], initial[k])]
    assert moved, "one step changed no weight"
    for k in moved:  # one step: ema = 0.9 * initial + 0.1 * trained
        torch.testing.assert_close(ema[k], 0.9 * initial[k] + 0.1 * trained[k], rtol=0, atol=1e-6)
        assert not torch.equal(ema[k], trained[k])
