"""The console scripts as a user runs them (subprocesses of the installed entry points)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BIN = Path(sys.executable).parent


def _run(*args, cwd=None, timeout=300):
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_lightning_fit_help_and_print_config(tmp_path):
    r = _run("lightning", "fit", "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "--trainer.max_epochs" in r.stdout and "--model" in r.stdout
    r = _run("lightning", "fit", "--print_config", "--data", "VideoTextDataModule", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "class_path: datamodules.VideoTextDataModule" in r.stdout and "normalization: official" in r.stdout


def test_fabric_still_works(tmp_path):
    r = _run("fabric", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "run" in r.stdout


def test_fit_from_yaml_with_interpolation(tmp_path):
    cfg = tmp_path / "boring.yaml"
    cfg.write_text(
        "model:\n  class_path: lightning.pytorch.demos.boring_classes.BoringModel\n"
        "data:\n  class_path: lightning.pytorch.demos.boring_classes.BoringDataModule\n"
        "trainer:\n  max_steps: 3\n  limit_val_batches: ${trainer.max_steps}\n  accelerator: cpu\n"
        "  logger: false\n  enable_checkpointing: false\n  enable_progress_bar: false\n"
        f"  default_root_dir: {tmp_path}\n"
    )
    r = _run("lightning", "fit", "-c", str(cfg), "--print_config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "limit_val_batches: 3" in r.stdout  # OmegaConf resolved the interpolation
    for script in ("lightning", "lavit"):
        r = _run(script, "fit", "-c", str(cfg), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "max_steps=3` reached" in r.stderr + r.stdout


def test_lavit_extract_writes_clips_and_skips_bad(tmp_path, real_clip):
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out"
    r = _run("lavit", "extract", str(real_clip), str(bad), "-o", str(out), "--max-clips", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 clips from 1 videos" in r.stdout
    assert "broken.mp4" in r.stderr and "1 videos skipped" in r.stderr
    folder = out / real_clip.stem
    meta = json.loads((folder / "clips.json").read_text())
    assert meta["motion_shape"] == [2, 24, 20, 36] and len(meta["starts"]) == 2
    motion = np.load(folder / "motion_00.npy")
    assert motion.shape == (2, 24, 20, 36) and np.abs(motion).max() > 0
    assert Image.open(folder / "keyframe_00.png").size == (320, 240)
    assert Image.open(folder / "motion_01.png").mode == "RGB"


def test_lavit_extract_all_bad_fails(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"")
    r = _run("lavit", "extract", str(bad), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 1 and "empty file" in r.stderr


def test_lavit_tokenize_and_reconstruct_motion(tmp_path, real_clip):
    import torch

    import lavit
    from lavit.video import extract_clips
    from tests.conftest import SHARED

    weights = SHARED / "reference" / "motion_tokenizer_tiny_parity.safetensors"
    out = tmp_path / "tokens.jsonl"
    r = _run("lavit", "tokenize", str(real_clip), "--checkpoint", str(weights), "--num-heads", "4", "--max-clips", "2", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    expected = lavit.load_motion_tokenizer(weights, num_heads=4).tokenize(extract_clips(real_clip, max_clips=2).motion)
    assert line["video"] == str(real_clip) and torch.equal(torch.tensor(line["tokens"]), expected)

    r = _run("lavit", "reconstruct-motion", str(real_clip), "--checkpoint", str(weights), "--num-heads", "4", "--max-clips", "2",
             "-o", str(tmp_path / "rec"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "rec" / real_clip.stem
    assert np.load(folder / "motion_rec_01.npy").shape == (2, 24, 20, 36)
    assert Image.open(folder / "motion_rec.png").size[1] > 100

    r = _run("lavit", "tokenize", str(real_clip), "--checkpoint", str(tmp_path / "missing.bin"), "-o", str(out), cwd=tmp_path)
    assert r.returncode != 0 and "missing.bin" in r.stderr and "motion_tokenizer.bin" in r.stderr
