"""MultimodalLM on the embedded demo data through the CLI: learning (motion loss, pan direction of generated motion),
kill-and-resume, 2-process DDP. The tokenizers are the session's (tests/lm/tokenizer_fixtures.py): a briefly trained
motion tokenizer and a random keyframe tokenizer, saved to files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_modules.cli import lightning_cli
from lightning_modules.multimodal_lm import GenerationWriter
from tests.lightning_modules.resume import assert_resume_reproduces_epoch_two
from tests.lm.tokenizer_fixtures import LM_DEMO_VIDEOS, lm_assets  # noqa: F401  (session fixture)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "multimodal_lm"


def config_args(config: str, assets: dict, folder: Path, *extra: str, logger: bool = False) -> list[str]:
    """A multimodal_lm config on the session's tokenizers and demo videos (192, the fixture's; 64 keyframe codes)."""
    return ["-c", str(CONFIGS / f"{config}.yaml"), f"--data.init_args.motion_tokenizer={assets['motion_tokenizer']}",
            f"--data.init_args.keyframe_tokenizer={assets['keyframe_tokenizer']}", f"--data.init_args.demo_root={assets['lm_demo_root']}",
            f"--data.init_args.demo_num_videos={LM_DEMO_VIDEOS}", "--model.init_args.lm.visual_codes=64",
            f"--trainer.default_root_dir={folder}", "--trainer.enable_progress_bar=false", *extra,
            *([f"--trainer.logger.init_args.save_dir={folder}"] if logger else ["--trainer.logger=false"])]


def redirect_outputs(cli, folder: Path) -> None:
    for callback in cli.trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            callback.dirpath = str(folder)
        if isinstance(callback, GenerationWriter):
            callback.output = folder / "generations.jsonl"


@pytest.mark.slow
def test_demo_config_learns_motion_and_follows_the_captions_pan(lm_assets, tmp_path):
    """configs/multimodal_lm/demo.yaml on the session's 192 demo videos (144 train, 48 held out): validation loss on
    motion tokens falls, and motion generated for the held-out captions, decoded by the motion tokenizer, moves in the
    caption's pan direction (sign of the mean horizontal motion) in >= 80 % of the captions with a horizontal pan."""
    cli = lightning_cli(config_args("demo", lm_assets, tmp_path), run=False)
    redirect_outputs(cli, tmp_path)
    (initial,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (final,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    print(f"\nval loss_motion {initial['val/loss_motion']:.3f} -> {final['val/loss_motion']:.3f}; pan agreement "
          f"{initial['val/pan_agreement']:.3f} -> {final['val/pan_agreement']:.3f} after {cli.trainer.global_step} steps "
          f"({len(cli.datamodule.videos['val'])} held-out videos, 4 clips per caption with a horizontal pan)")
    assert final["val/loss_motion"] < 0.5 * initial["val/loss_motion"]
    assert final["val/pan_agreement"] >= 0.8
    cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    records = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert len(records) == len(cli.datamodule.videos["val"])
    assert all(len(r["motion_ids"]) == 1 and len(r["motion_ids"][0]) == 24 for r in records)
    judged = [r for r in records if "pan_agrees" in r]  # one sampled clip each: the rate is val/pan_agreement's job
    assert len(judged) >= 20 and all(isinstance(r["pan_agrees"], bool) for r in judged)


@pytest.mark.slow
def test_kill_and_resume_reproduces_epoch_two(lm_assets, tmp_path):
    def cli_args(folder: Path, *extra: str) -> list[str]:
        return config_args("tiny", lm_assets, folder, "--model.init_args.val_generate=0",
                           f"--trainer.callbacks.init_args.dirpath={folder}", *extra)

    assert_resume_reproduces_epoch_two(cli_args, tmp_path)


class SaveWeights(pl.Callback):
    """Each rank writes its final LM weights and logged validation loss to ``folder/rank<k>.pt``."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_fit_end(self, trainer, pl_module):
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save({"weights": {k: v.detach().cpu() for k, v in pl_module.lm.state_dict().items()},
                    "val_loss": float(trainer.callback_metrics["val/loss"])}, self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_ddp_two_gloo_processes_end_with_identical_weights(lm_assets, tmp_path):
    out = tmp_path / "weights"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "lightning"), "fit",
           *config_args("tiny", lm_assets, tmp_path, "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_epochs=1",
                        "--model.init_args.val_generate=0",
                        "--trainer.callbacks+=tests.lightning_modules.test_multimodal_lm_demo.SaveWeights",
                        f"--trainer.callbacks.folder={out}", logger=True)]  # the CSV logger merges both hparams
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(out / f"rank{k}.pt", weights_only=True) for k in (0, 1))
    assert a["val_loss"] == b["val_loss"] and a["val_loss"] == a["val_loss"]  # synced, finite
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
