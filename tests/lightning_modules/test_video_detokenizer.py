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

from lavit.video.pixels import to_rgb
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
    args = dict(detokenizer="demo", lr=1e-3, warmup_steps=0, ema_decay=0.9, val_sigmas=(0.5, 2.0), num_samples=0, seed=0)
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


def test_paper_trainable_set_trains_only_conv_in_attn2_and_motion_encoder(tmp_path):
    model = tiny_model(trainable="paper", ema_decay=None)
    initial = {k: v.clone() for k, v in model.model.named_parameters()}
    trainer(tmp_path, max_steps=2).fit(model, datamodule=SyntheticClips())
    after = dict(model.model.named_parameters())
    changed = {k for k in initial if not torch.equal(initial[k], after[k])}
    frozen = {k for k in initial if not paper_trainable(k)}
    assert frozen and not (changed & frozen)
    assert not any(after[k].requires_grad for k in frozen)
    for group in ("motion_encoder.", "unet.conv_in.", ".attn2."):
        assert any(group in "." + k for k in changed), group
    with pytest.raises(ValueError, match="match no parameter"):
        tiny_model(trainable=["unet.no_such_layer"])


def _tiny_svd_vae(folder: Path) -> Path:
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(0)
    AutoencoderKLTemporalDecoder(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                                 latent_channels=4).save_pretrained(folder / "vae")
    return folder


def test_checkpoint_with_svd_vae_holds_no_vae_keys_and_loads_back(tmp_path):
    svd = _tiny_svd_vae(tmp_path / "svd")
    model = tiny_model(detokenizer={**VideoDetokenizerConfig.from_name("tiny").to_dict(), "unet": {**VideoDetokenizerConfig.from_name("tiny").unet, "num_frames": 24}},
                       vae=str(svd))
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(model, datamodule=SyntheticClips(num_train=2, size=(64, 64)))
    path = t.checkpoint_callback.best_model_path
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    keys = set(ckpt["state_dict"])
    assert not any(k.startswith("vae.") for k in keys)
    assert any(k.startswith("model.unet.") for k in keys) and any(k.startswith("ema.motion_encoder.") for k in keys)
    assert ckpt["hyper_parameters"]["detokenizer"] == model.model.config.to_dict()
    reloaded = VideoDetokenizer.load_from_checkpoint(path)
    for name in ("model", "ema", "vae"):
        a, b = getattr(reloaded, name).state_dict(), getattr(model, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert not reloaded.vae.training
    import lavit  # the downstream loader reads the EMA weights of this checkpoint

    loaded = lavit.load_video_detokenizer(path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.ema.state_dict().items())


class Kill(pl.Callback):
    """Dies (as a killed job would) when training reaches ``step``, after the checkpoint of the previous epoch."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise SystemExit("killed")


def _losses(tmp_path, *callbacks, ckpt=None):
    pl.seed_everything(0)  # the same initial weights in the full and the killed run
    model = tiny_model(ema_decay=0.5)
    recorder = RecordLosses()
    t = trainer(tmp_path, max_steps=-1, max_epochs=2, limit_val_batches=0, callbacks=[recorder, *callbacks])
    t.fit(model, datamodule=SyntheticClips(num_train=4, batch_size=2), ckpt_path=ckpt)
    return recorder.losses, t, model


def test_kill_and_resume_reproduces_losses_and_ema(tmp_path):
    full, _, full_model = _losses(tmp_path / "full")
    with pytest.raises(SystemExit, match="killed"):
        _losses(tmp_path / "first", Kill(2))
    (ckpt,) = (tmp_path / "first" / "checkpoints").glob("*.ckpt")
    resumed, _, resumed_model = _losses(tmp_path / "resumed", ckpt=str(ckpt))
    assert len(full) == 4 and [l for _, _, l in resumed] == pytest.approx([l for _, _, l in full[2:]], abs=1e-6)
    for name in ("model", "ema"):
        a, b = getattr(full_model, name).state_dict(), getattr(resumed_model, name).state_dict()
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6, name


def test_bad_input_named():
    model = tiny_model()
    with pytest.raises(KeyError, match="frame_size"):
        model.training_step({"motion": torch.zeros(1, 2, 24, 20, 36), "keyframe": torch.zeros(1, 3, 224, 224)}, 0)
    with pytest.raises(ValueError, match=r"vae.*stable-video-diffusion-img2vid-xt"):
        VideoDetokenizer(detokenizer="paper", vae=None)
    with pytest.raises(FileNotFoundError, match="stable-video-diffusion-img2vid-xt"):
        VideoDetokenizer(detokenizer="tiny", vae="/no/such/svd")


class SaveWeights(pl.Callback):
    """Writes each rank's EMA weights and last validation loss to ``<folder>/rank<R>.pt`` when fitting ends."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_fit_end(self, trainer, pl_module):
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.ema.state_dict().items()}
        torch.save({"ema": state, "val_loss": trainer.callback_metrics["val/loss"].item()}, self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_ddp_two_processes_agree(tmp_path):
    out = tmp_path / "weights"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "lightning"), "fit", "--seed_everything=0",
           "--model=VideoDetokenizer", "--model.detokenizer=demo", "--model.warmup_steps=0", "--model.ema_decay=0.9",
           "--model.sample_steps=2",  # validation still samples (rank 0 alone, the others wait): 2 steps, not 25
           "--data=tests.lightning_modules.test_video_detokenizer.SyntheticClips", "--data.batch_size=1",
           "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_steps=2",
           "--trainer.limit_val_batches=1", "--trainer.val_check_interval=2", "--trainer.logger=false",
           "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
           "--trainer.callbacks+=tests.lightning_modules.test_video_detokenizer.SaveWeights", f"--trainer.callbacks.folder={out}"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(out / f"rank{k}.pt", weights_only=True) for k in (0, 1))
    assert a["val_loss"] == b["val_loss"] and np.isfinite(a["val_loss"])  # sync_dist: one value on both ranks
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_validation_writes_sampled_reconstructions(tmp_path, capsys):
    import av

    model = tiny_model(num_samples=2, sample_steps=2)
    t = trainer(tmp_path, max_steps=1, val_check_interval=1, callbacks=[])
    t.fit(model, datamodule=SyntheticClips(num_train=2, num_val=2))
    assert {"val/psnr", "val/ssim", "val/psnr_keyframe", "val/ssim_keyframe"} <= set(t.callback_metrics)
    assert model.last_video.parent == tmp_path / "reconstructions" and model.last_picture.is_file()
    with av.open(str(model.last_video)) as container:
        frames = [to_rgb(f) for f in container.decode(video=0)]
    assert len(frames) == 24 and frames[0].shape == (2 * 128, 2 * 128, 3)  # 2 clips x (truth | reconstruction), 16 px x 8
    printed = capsys.readouterr().out
    assert f"reconstruction video: {model.last_video}" in printed and f"reconstruction picture: {model.last_picture}" in printed


def test_reconstruction_metrics_against_hand_values():
    from lightning_modules.reconstructions import reconstruction_metrics

    levels = torch.tensor([0.0, 0.1, 0.2, 0.3]).view(1, 4, 1, 1, 1)
    truth = levels.expand(1, 4, 3, 16, 16).clone()
    metrics = reconstruction_metrics(truth + 0.05, truth)
    assert metrics["val/psnr"].item() == pytest.approx(10 * np.log10(4 / 0.05**2), abs=1e-3)  # data range 2
    baseline_mse = np.mean([0.1**2, 0.2**2, 0.3**2])  # frame 0 repeated, frames 1..3 scored
    assert metrics["val/psnr_keyframe"].item() == pytest.approx(10 * np.log10(4 / baseline_mse), abs=1e-3)
    c1 = (0.01 * 2) ** 2  # flat frames: SSIM = its luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    ssim = np.mean([(2 * m * (m + 0.05) + c1) / (m**2 + (m + 0.05) ** 2 + c1) for m in (0.1, 0.2, 0.3)])
    assert metrics["val/ssim"].item() == pytest.approx(ssim, abs=1e-4)


def _run_demo(tmp_path, *overrides):
    """Validate the demo config's initial model, fit, validate again; returns (initial, final, cli, seconds)."""
    import time

    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_modules.cli import lightning_cli

    def demo_cli():
        cli = lightning_cli(["-c", str(ROOT / "configs" / "video_detokenizer" / "demo.yaml"), f"--data.init_args.demo_root={tmp_path / 'data'}",
                             f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                             *overrides], run=False)
        for callback in cli.trainer.callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.dirpath = str(tmp_path)
        return cli

    start = demo_cli()  # seeded like the run below, so this is the run's initial model
    (initial,) = start.trainer.validate(start.model, datamodule=start.datamodule, verbose=False)
    cli = demo_cli()
    t0 = time.time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.time() - t0
    (final,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    print(f"val EDM loss {initial['val/loss']:.4f} at initialisation -> {final['val/loss']:.4f} after {cli.trainer.global_step} steps "
          f"({1 - final['val/loss'] / initial['val/loss']:.1%} lower, {seconds:.0f} s); motion zeroed {final['val/loss_zero_motion']:.4f} "
          f"(sigma 4: {final['val/loss_sigma_4']:.4f} vs {final['val/loss_zero_motion_sigma_4']:.4f}, sigma 16: "
          f"{final['val/loss_sigma_16']:.4f} vs {final['val/loss_zero_motion_sigma_16']:.4f}); "
          f"sampled PSNR {final['val/psnr']:.2f} dB vs repeated keyframe {final['val/psnr_keyframe']:.2f} dB; video {cli.model.last_video}")
    return initial, final, cli


@pytest.mark.slow
def test_demo_config_learns_in_100_steps(tmp_path):
    """CI's learning proof: the demo config cut to 100 of its 1000 steps already lowers validation EDM loss by 30%
    (measured 42.1%, 0.523 -> 0.303, 42 s of fit on 2 cores) and writes its reconstruction video (the full run is
    test_demo_config_learns_and_uses_motion, marked demo)."""
    initial, final, cli = _run_demo(tmp_path, "--trainer.max_steps=100")
    assert cli.model.last_video is not None and cli.model.last_video.is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()  # what configs/pipelines/demo.yaml reads
    assert final["val/loss"] <= 0.7 * initial["val/loss"]


@pytest.mark.slow
@pytest.mark.demo
def test_demo_config_learns_and_uses_motion(tmp_path):
    """The README's demo, as configured: validation EDM loss at the end vs at initialisation (same seed), and
    with the true motion vs with motion zeroed."""
    initial, final, cli = _run_demo(tmp_path)
    assert cli.model.last_video is not None and cli.model.last_video.is_file()
    assert final["val/loss"] <= 0.7 * initial["val/loss"]
    assert final["val/loss"] < final["val/loss_zero_motion"]
    # Clearly lower where only the motion tells where the block is (at sigma 0.25 the noisy clip shows it): measured
    # +40% / +48% with the motion zeroed at sigma 4 / 16 in the README's CLI run, +27% / +33% here (0.0491 vs 0.0512
    # overall: this run draws other random numbers, e.g. for the validation before fit)
    for s in (4, 16):
        assert final[f"val/loss_sigma_{s}"] <= 0.85 * final[f"val/loss_zero_motion_sigma_{s}"]
    assert final["val/psnr"] > final["val/psnr_keyframe"] + 1.0  # measured 20.9 vs 18.7 dB


def test_tokenizer_motion_source_conditions_on_decoded_tokens(tmp_path):
    """motion_source="tokenizer": the model sees the frozen tokenizer's tokenize -> detokenize of the batch motion,
    and the tokenizer is neither trained nor saved."""
    from lavit.tokenizers import MotionTokenizer, MotionTokenizerConfig
    from lavit.tokenizers.loading import save_motion_tokenizer

    torch.manual_seed(0)
    tokenizer = MotionTokenizer(MotionTokenizerConfig.from_name("tiny")).eval()
    path = save_motion_tokenizer(tokenizer, tmp_path / "tokenizer.safetensors")
    with pytest.raises(ValueError, match="motion_tokenizer"):
        tiny_model(motion_source="tokenizer")
    model = tiny_model(motion_source="tokenizer", motion_tokenizer=str(path))
    batch = SyntheticClips(num_train=2).train_set
    frames, motion = torch.stack([c["frames"] for c in batch]), torch.stack([c["motion"] for c in batch])
    _, _, conditioned = model._inputs({"frames": frames, "motion": motion}, torch.Generator().manual_seed(0))
    decoded = tokenizer.detokenize(tokenizer.tokenize(motion))
    torch.testing.assert_close(conditioned, model.model.motion_condition(decoded, (16, 16)))
    assert not any(p.requires_grad for p in model.motion_tokenizer.parameters())
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(model, datamodule=SyntheticClips(num_train=2))
    ckpt = torch.load(t.checkpoint_callback.best_model_path, map_location="cpu", weights_only=True)
    assert not any(k.startswith("motion_tokenizer.") for k in ckpt["state_dict"])


def test_validation_fvd_matches_metrics_fvd_on_the_sampled_clips(tmp_path):
    """With ``i3d_weights``, validation logs FVD of the sampled clips against their ground truth in [-1, 1]: the
    value metrics.FVD gives on the same clips (re-sampled here with the same seed and EMA weights)."""
    from metrics.fvd import FVD
    from metrics.networks import InceptionI3d

    torch.manual_seed(0)
    i3d = InceptionI3d(num_classes=400).eval()
    torch.save(i3d.state_dict(), tmp_path / "rgb_imagenet.pt")
    model = tiny_model(num_samples=2, sample_steps=2, i3d_weights=str(tmp_path / "rgb_imagenet.pt"))
    data = SyntheticClips(num_train=2, num_val=2)
    t = trainer(tmp_path, max_steps=1, val_check_interval=1)
    t.fit(model, datamodule=data)
    batch = next(iter(data.val_dataloader()))
    truth = batch["frames"].float() / 127.5 - 1.0
    fvd = FVD(network=i3d, value_range=(-1.0, 1.0))
    fvd.update(truth, real=True)
    fvd.update(model.sample(batch["frames"], batch["motion"]), real=False)
    expected = fvd.compute().item()
    assert expected > 0
    assert t.callback_metrics["val/fvd"].item() == pytest.approx(expected, rel=1e-4)
