"""The README's chain as a user runs it: train the demo config, then `lavit tokenize` and
`lavit reconstruct-motion` on a real video with the checkpoint it wrote (its 8 x 16 field size,
24 tokens per clip, come from the checkpoint, not from the command's defaults)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lavit.pipelines.extract import output_folder_name
from lavit.tokenizers import MotionTokenizerConfig

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CKPT = "outputs/motion_vqvae_demo/checkpoints/last.ckpt"  # where demo.yaml writes it (README)


def _run(cwd, *args, timeout=600):
    r = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("readme")
    _run(cwd, "lightning", "fit", "-c", str(ROOT / "configs/motion_vqvae/demo.yaml"), "--trainer.max_steps=2",
         "--data.init_args.demo_num_videos=4", "--data.init_args.val_fraction=0.5", "--data.init_args.demo_root=outputs/demo_data_4",
         "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false")  # the checkpoint is written after validation
    assert (cwd / CKPT).is_file()
    return cwd


@pytest.mark.slow
def test_readme_tokenize_and_reconstruct_on_the_demo_checkpoint(demo_run, real_clip):
    demo = MotionTokenizerConfig.from_name("demo")
    r = _run(demo_run, "lavit", "tokenize", str(real_clip), "--checkpoint", CKPT, "--max-clips", "2", "-o", "tokens.jsonl")
    assert "2 clips from 1 videos" in r.stdout
    lines = [json.loads(x) for x in (demo_run / "tokens.jsonl").read_text().splitlines()]  # one per clip
    assert [x["clip"] for x in lines] == [0, 1]
    tokens = np.array([x["motion_ids"] for x in lines])
    assert tokens.shape == (2, demo.num_tokens) == (2, 24)
    assert tokens.min() >= 0 and tokens.max() < demo.codebook_size
    _run(demo_run, "lavit", "reconstruct-motion", str(real_clip), "--checkpoint", CKPT, "--max-clips", "2", "-o", "rec")
    folder = demo_run / "rec" / output_folder_name(real_clip)
    rec = np.load(folder / "motion_rec_00.npy")
    assert rec.shape == (2, 24, 8, 16) and np.isfinite(rec).all()
    assert (folder / "motion_rec_01.npy").is_file() and (folder / "motion_rec.png").is_file()


@pytest.mark.slow
def test_settings_that_contradict_the_checkpoint_are_one_line_errors(demo_run, real_clip):
    from lavit.pipelines.tokenize import tokenize_videos

    with pytest.raises(ValueError, match=r"field_size \(20, 36\) contradicts the tokenizer of .*last.ckpt, which takes field_size \(8, 16\)"):
        tokenize_videos([real_clip], demo_run / CKPT, demo_run / "x.jsonl", progress=False, field_size=(20, 36))
    r = subprocess.run([str(BIN / "lavit"), "tokenize", str(real_clip), "--checkpoint", CKPT, "--num-heads", "4", "-o", "x.jsonl"],
                       capture_output=True, text=True, cwd=demo_run, timeout=300)
    assert r.returncode == 2 and "num_heads=4 contradicts the config saved in" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
