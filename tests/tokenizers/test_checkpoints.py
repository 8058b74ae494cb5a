"""Motion-tokenizer files carry their config: exported safetensors, MotionVQVAE checkpoints of both
layouts (the old flat one as main at 04a15bb wrote it, tests/fixtures/README.md), the converter."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lavit
from lavit.tokenizers import MotionTokenizer, MotionTokenizerConfig, read_motion_tokenizer_checkpoint, save_motion_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD_CKPT = FIXTURES / "motion_vqvae_04a15bb.ckpt"


def test_old_checkpoint_loads_and_reproduces_old_outputs():
    """Tokens and reconstructions equal what 04a15bb's own loader computed on the same input."""
    expected = load_file(str(FIXTURES / "motion_vqvae_04a15bb_outputs.safetensors"))
    model = lavit.load_motion_tokenizer(OLD_CKPT)  # no arguments: sizes from the checkpoint
    c = model.config
    assert (c.dim, c.num_heads, c.field_size, c.codebook_size, c.codebook_dim, c.input_scale) == (16, 2, (8, 16), 16, 8, 0.5)
    assert torch.equal(model.tokenize(expected["input"]), expected["tokens"])
    torch.testing.assert_close(model.reconstruct(expected["input"]), expected["reconstruction"], rtol=0, atol=1e-6)
    assert read_motion_tokenizer_checkpoint(OLD_CKPT).data["field_size"] == [8, 16]


def test_converter_nests_the_config_and_keeps_weights(tmp_path):
    new = tmp_path / "new.ckpt"
    r = subprocess.run([sys.executable, "-m", "lavit.tokenizers.convert_checkpoint", str(OLD_CKPT), str(new)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    old_raw, new_raw = (torch.load(p, weights_only=True) for p in (OLD_CKPT, new))
    hp = new_raw["hyper_parameters"]
    assert "dim" not in hp and hp["tokenizer"]["dim"] == 16 and hp["tokenizer"]["field_size"] == [8, 16]
    assert hp["lr"] == old_raw["hyper_parameters"]["lr"] and hp["_class_path"] == "lightning_modules.MotionVQVAE"
    assert all(torch.equal(new_raw["state_dict"][k], v) for k, v in old_raw["state_dict"].items())
    x = torch.randn(1, 2, 24, 8, 16)
    assert torch.equal(lavit.load_motion_tokenizer(new).tokenize(x), lavit.load_motion_tokenizer(OLD_CKPT).tokenize(x))
    r = subprocess.run([sys.executable, "-m", "lavit.tokenizers.convert_checkpoint", str(tmp_path / "none.ckpt"), str(new)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "none.ckpt" in r.stderr


def test_safetensors_export_carries_config_and_data_settings(tmp_path):
    model = MotionTokenizer(MotionTokenizerConfig.from_name("demo")).eval()
    path = save_motion_tokenizer(model, tmp_path / "demo.safetensors", data_settings={"fps": 6.0, "normalization": "official"})
    loaded = lavit.load_motion_tokenizer(path)  # nothing to guess
    assert loaded.config == model.config
    x = torch.randn(2, 2, 24, 8, 16)
    assert torch.equal(loaded.tokenize(x), model.tokenize(x))
    assert read_motion_tokenizer_checkpoint(path).data == {"fps": 6.0, "normalization": "official"}


def test_sizes_are_read_not_guessed(tmp_path):
    model = MotionTokenizer(MotionTokenizerConfig.from_name("tiny"))
    torch.save(model.state_dict(), tmp_path / "bare.bin")  # no config: width 32 says nothing about heads
    with pytest.raises(ValueError, match="carries no config.*width 32.*num_heads"):
        lavit.load_motion_tokenizer(tmp_path / "bare.bin")
    assert lavit.load_motion_tokenizer(tmp_path / "bare.bin", num_heads=2).config.num_heads == 2
    path = save_motion_tokenizer(model, tmp_path / "tiny.safetensors")
    with pytest.raises(ValueError, match=r"num_heads=4 contradicts the config saved in .*tiny.safetensors \(num_heads=2\)"):
        lavit.load_motion_tokenizer(path, num_heads=4)
    assert lavit.load_motion_tokenizer(path, num_heads=2).config.num_heads == 2  # agreeing is fine
