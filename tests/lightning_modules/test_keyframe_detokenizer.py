"""KeyframeDetokenizer through real Lightning runs: CLI fit -> checkpoint -> lavit.load_keyframe_detokenizer ->
KeyframeDetokenizerPipeline images; the target resize; learning on a few pictures; missing / unusable tokenizers."""

import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import lavit
from lavit.detokenizer import MissingComponentError, PixelSpaceAutoencoder
from lavit.video.keyframes import preprocess_keyframes
from lightning_modules.cli import lightning_cli
from lightning_modules.keyframe_detokenizer import KeyframeDetokenizer, keyframe_pixels, tokenize_keyframes
from tests.lm.tokenizer_fixtures import save_random_keyframe_tokenizer

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "keyframe_detokenizer" / "tiny.yaml"
UNET = dict(down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"], up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
            block_out_channels=[16, 32], layers_per_block=1, attention_head_dim=2, norm_num_groups=8,
            addition_time_embed_dim=8, use_linear_projection=True)


def save_keyframe_tokenizer_checkpoint(path: Path, seed: int = 0) -> Path:
    """A random ``tiny`` KeyframeTokenizer LightningModule (decoder prompt 8 + 8, pooled 8; PyTorch's fan-in init, as
    the 0.02 init makes the conditioning of a random decoder nearly the same for every image) in the layout Lightning
    checkpoints have (``state_dict``, ``hyper_parameters``)."""
    from lightning_modules.keyframe_tokenizer import KeyframeTokenizer

    torch.manual_seed(seed)
    model = KeyframeTokenizer("tiny", decoder=dict(unet_proj_dims=[8, 8], pooled_dim=8, init_std=None))
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def tokenizer_ckpt(tmp_path_factory) -> Path:
    return save_keyframe_tokenizer_checkpoint(tmp_path_factory.mktemp("kft") / "keyframe_tokenizer.ckpt")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from lavit.video.demo_data import make_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, num_videos=4, progress=False)
    return root


def pictures(n: int = 4, size=(40, 72)) -> torch.Tensor:
    """``(n, H, W, 3)`` uint8: two-colour pictures (left / right halves), a different pair per picture."""
    rng = np.random.default_rng(0)
    out = np.zeros((n, *size, 3), np.uint8)
    for i in range(n):
        out[i, :, : size[1] // 2] = rng.integers(0, 256, 3)
        out[i, :, size[1] // 2 :] = rng.integers(0, 256, 3)
    return torch.from_numpy(out)


def test_keyframe_pixels_recovers_the_frame_at_its_aspect():
    """The 56 x 56 squashed keyframe, resized back, equals the frame resized straight to (20, 36) (no crop lost)."""
    frame = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (1, 8, 12, 3), dtype=np.uint8))
    frame = F.interpolate(frame.permute(0, 3, 1, 2).float(), size=(192, 320), mode="bilinear").round().to(torch.uint8)
    truth = F.interpolate(frame.float() / 127.5 - 1, size=(20, 36), mode="bicubic", antialias=True).clamp(-1, 1)
    got = keyframe_pixels(preprocess_keyframes(frame.permute(0, 2, 3, 1).numpy(), 56), (20, 36))
    assert got.shape == (1, 3, 20, 36)
    assert (got - truth).abs().mean() < 0.03  # two resamplings vs one, in [-1, 1]
    assert (got - truth).abs().mean() < 0.2 * (truth - truth.mean()).abs().mean()


def test_cli_fit_checkpoint_loads_as_pipeline_and_samples_deterministically(tmp_path, demo_root, tokenizer_ckpt):
    cli = lightning_cli(["fit", "-c", str(TINY), f"--model.init_args.keyframe_tokenizer={tokenizer_ckpt}",
                         f"--data.init_args.demo_root={demo_root}", f"--trainer.default_root_dir={tmp_path}",
                         "--trainer.enable_progress_bar=false"])
    ckpt = Path(cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path)
    assert ckpt.is_file()
    metrics = cli.trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/loss_uncond", "val/psnr", "val/psnr_uncond", "val/psnr_sample_vs_uncond"} <= set(metrics)
    assert list((Path(cli.trainer.log_dir) / "samples").glob("step*.png"))
    stored = torch.load(ckpt, weights_only=True)
    assert {k.split(".")[0] for k in stored["state_dict"]} == {"unet", "condition_heads"}  # frozen tokenizer / decoder not stored

    pipe = lavit.load_keyframe_detokenizer(ckpt)
    assert pipe.image_size == (20, 36) and isinstance(pipe.vae, PixelSpaceAutoencoder)
    trained = cli.model.unet.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in pipe.unet.state_dict().items())
    heads = cli.model.condition_heads.state_dict()
    assert all(torch.equal(v, heads[f"unet_proj_1.{k}"]) for k, v in pipe.decoder.unet_proj_1.state_dict().items())
    initial = torch.load(tokenizer_ckpt, weights_only=True)["state_dict"]
    assert not torch.equal(pipe.decoder.unet_proj_1.weight, initial["decoder.unet_proj_1.weight"])  # trained heads loaded
    images = preprocess_keyframes(pictures(2).numpy(), 56)
    ids = tokenize_keyframes(pipe.keyframe_tokenizer, images)
    first = pipe.generate(ids, size=pipe.image_size, num_steps=3, seed=5).images
    again = pipe.generate(ids, size=pipe.image_size, num_steps=3, seed=5).images
    other = pipe.generate(ids, size=pipe.image_size, num_steps=3, seed=6).images
    assert first.shape == (2, 20, 36, 3) and first.dtype == torch.uint8
    assert torch.equal(first, again) and not torch.equal(first, other)

    moved = tmp_path / "moved.ckpt"
    tokenizer_ckpt.rename(moved)
    try:
        with pytest.raises(MissingComponentError, match="keyframe_tokenizer.ckpt"):
            lavit.load_keyframe_detokenizer(ckpt)
        assert lavit.load_keyframe_detokenizer(ckpt, keyframe_tokenizer=moved).image_size == (20, 36)  # the override
    finally:
        moved.rename(tokenizer_ckpt)


def test_missing_or_unusable_keyframe_tokenizer_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "last.ckpt"
    with pytest.raises(MissingComponentError, match=r"keyframe tokenizer checkpoint not found: .*nowhere/last\.ckpt"):
        KeyframeDetokenizer(keyframe_tokenizer=str(missing), unet=UNET)
    with pytest.raises(MissingComponentError, match=r"keyframe detokenizer checkpoint not found: .*absent\.ckpt"):
        lavit.load_keyframe_detokenizer(tmp_path / "absent.ckpt")
    only_tokenizer = save_random_keyframe_tokenizer(tmp_path / "tokenizer.safetensors")
    with pytest.raises(ValueError, match=r"tokenizer\.safetensors.* holds no keyframe decoder \(decoder\.\*"):
        KeyframeDetokenizer(keyframe_tokenizer=str(only_tokenizer), unet=UNET)


def test_bad_settings_are_named(tokenizer_ckpt):
    with pytest.raises(ValueError, match=r"image_size \(20, 35\) must be multiples of 2"):
        KeyframeDetokenizer(keyframe_tokenizer=str(tokenizer_ckpt), unet=UNET, image_size=(20, 35))
    with pytest.raises(ValueError, match="cross_attention_dim 32 != the decoder's prompt width 16"):
        KeyframeDetokenizer(keyframe_tokenizer=str(tokenizer_ckpt), unet={**UNET, "cross_attention_dim": 32})
    with pytest.raises(ValueError, match="condition_dropout"):
        KeyframeDetokenizer(keyframe_tokenizer=str(tokenizer_ckpt), unet=UNET, condition_dropout=1.0)


class Pictures(pl.LightningDataModule):
    """The same batch of CLIP-normalised 56 x 56 keyframes for training (``steps`` times per epoch) and validation."""

    def __init__(self, images: torch.Tensor, steps: int):
        super().__init__()
        self.items = [{"keyframe": x} for x in images]
        self.steps = steps

    def train_dataloader(self):
        return DataLoader(self.items * self.steps, batch_size=len(self.items))

    def val_dataloader(self):
        return DataLoader(self.items, batch_size=len(self.items))


@pytest.mark.slow
def test_training_lowers_the_noise_loss_and_improves_samples(tmp_path, tokenizer_ckpt):
    """Four two-colour pictures, 160 steps (18 s alone on 2 cores): the validation noise loss at fixed timesteps / noise falls
    (measured x0.07) and the guided samples of the trained U-Net are closer to their pictures than the untrained one's
    (measured 7.3 -> 9.8 dB, same noise). Not asserted, printed: how much the codes help (measured: hardly yet, loss at
    t=900 0.0607 vs 0.0610 unconditional; samples 9.8 vs 9.6 dB): 160 steps are far from a converged DDPM."""
    start = time.perf_counter()
    pl.seed_everything(0)
    images = preprocess_keyframes(pictures(4).numpy(), 56)
    model = KeyframeDetokenizer(keyframe_tokenizer=str(tokenizer_ckpt), unet=UNET, lr=3e-3, warmup_steps=10,
                                condition_dropout=0.2, num_samples=4, sample_steps=10, guidance=3.0,
                                scheduler=dict(clip_sample=True), val_timesteps=(100, 500, 900))
    ids = model.encode(images)[0]
    assert len({tuple(i.tolist()) for i in ids}) == 4  # the codes tell the pictures apart
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=160, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0, check_val_every_n_epoch=1000)
    data = Pictures(images, steps=160)
    (before,) = trainer.validate(model, datamodule=data, verbose=False)
    trainer.fit(model, datamodule=data)
    (after,) = trainer.validate(model, datamodule=data, verbose=False)
    ratio = after["val/loss"] / before["val/loss"]
    print(f"\nval/loss {before['val/loss']:.3f} -> {after['val/loss']:.3f} (x{ratio:.2f}), uncond {after['val/loss_uncond']:.3f}; "
          f"t=900 {after['val/loss_t900']:.4f} vs uncond {after['val/loss_uncond_t900']:.4f}; "
          f"PSNR sample {before['val/psnr']:.1f} -> {after['val/psnr']:.1f} dB, unconditional {after['val/psnr_uncond']:.1f} dB; "
          f"{time.perf_counter() - start:.0f} s")
    assert ratio < 0.5
    assert after["val/psnr"] > before["val/psnr"] + 1.5
