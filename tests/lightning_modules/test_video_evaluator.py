"""``lightning test -c configs/eval/fvd.yaml`` end to end: real decoding, random I3D weights from a file,
one process and 2-process DDP (gloo), skipped bad files, JSON results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lightning.pytorch as pl

from datamodules.skipped import NoUsableVideosError
from datamodules.video_folder import ShardSampler, VideoFolderDataModule
from lavit.video.synthetic import random_scene, write_video
from metrics.networks import InceptionI3d
from tests.random_weights import calibrate_batchnorm

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def eval_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for side, n in (("fake", 3), ("real", 4)):
        for i in range(n):
            scene, _ = random_scene(rng, height=96, width=128)
            write_video(scene, root / side / f"{side}_{i}.mp4", fps=8, duration=2.5)  # 20 frames
    (root / "fake" / "broken.mp4").write_bytes(b"not a video")
    torch.manual_seed(0)
    weights = root / "weights"
    weights.mkdir()
    i3d = InceptionI3d()
    calibrate_batchnorm(i3d, lambda: torch.rand(2, 3, 16, 224, 224) * 2 - 1)
    torch.save(i3d.state_dict(), weights / "rgb_imagenet.pt")
    return root


def _lightning_test(eval_sets, out, *extra):
    env = dict(os.environ, LAVIT_WEIGHTS_DIR=str(eval_sets / "weights"), FAKE_VIDEOS=str(eval_sets / "fake"),
               REAL_VIDEOS=str(eval_sets / "real"), OMP_NUM_THREADS="1")
    cmd = [str(BIN / "lightning"), "test", "-c", str(ROOT / "configs/eval/fvd.yaml"), "--trainer.accelerator", "cpu",
           "--data.init_args.resolution", "64", "--data.init_args.batch_size", "1",
           "--model.init_args.output", str(out), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=eval_sets, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


def test_lightning_test_fvd_single_and_ddp(eval_sets):
    single, stdout = _lightning_test(eval_sets, eval_sets / "single.json")
    assert "fvd" in stdout and "results written to" in stdout
    assert single["results"]["fvd"] > 1e-3 and np.isfinite(single["results"]["kvd"])
    assert list(single["skipped"]) == [str(eval_sets / "fake" / "broken.mp4")]
    ddp, _ = _lightning_test(eval_sets, eval_sets / "ddp.json", "--trainer.devices", "2", "--trainer.strategy", "ddp")
    assert ddp["world_size"] == 2
    # batch size 1 on both sides, so every video's I3D features are computed alone in both runs;
    # the metric reduction itself is exact (tests/metrics/test_distributed.py)
    for name in ("fvd", "kvd"):
        assert ddp["results"][name] == pytest.approx(single["results"][name], rel=1e-6)


def test_shard_sampler_covers_each_index_once():
    data = list(range(11))
    shards = []
    for rank in range(3):
        s = ShardSampler(data)
        s.num_replicas, s.rank = 3, rank
        shards.append(list(s))
        assert len(s) == len(shards[-1])
    assert sorted(i for shard in shards for i in shard) == data


def test_folder_loader_counts_skipped_and_resizes(eval_sets):
    dm = VideoFolderDataModule(fake=str(eval_sets / "fake"), real=str(eval_sets / "real"), resolution=32, batch_size=2)
    dm.setup("test")
    fake_loader, real_loader = dm.test_dataloader()
    batches = list(fake_loader)
    assert sum(len(b["video_id"]) for b in batches) == 3
    assert sum(len(b["skipped"]) for b in batches) == 1
    assert batches[0]["video"].shape[1:] == (16, 3, 32, 32)


class _BatchSizes(pl.LightningModule):
    """Records the number of videos in each test batch, per dataloader."""

    def __init__(self):
        super().__init__()
        self.sizes = {0: [], 1: []}

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self.sizes[dataloader_idx].append(len(batch["video_id"]))


def test_no_empty_batches_reach_the_model(eval_sets, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    for name in ("a_broken.mp4", "fake_0.mp4", "m_broken.mp4", "fake_1.mp4", "z_broken.mp4"):  # sorted order
        src = eval_sets / "fake" / (name if name.startswith("fake") else "broken.mp4")
        (fake / name).write_bytes(src.read_bytes())
    dm = VideoFolderDataModule(fake=str(fake), real=str(eval_sets / "real"), resolution=32, batch_size=1)
    model = _BatchSizes()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.test(model, datamodule=dm)
    assert model.sizes == {0: [1, 1], 1: [1, 1, 1, 1]}
    assert sorted(Path(p).name for p in dm.skipped) == ["a_broken.mp4", "m_broken.mp4", "z_broken.mp4"]  # trailing skip too


def test_all_bad_set_is_an_error(eval_sets, tmp_path):
    for k in range(3):
        (tmp_path / f"broken_{k}.mp4").write_bytes(b"not a video" * k)
    dm = VideoFolderDataModule(fake=str(tmp_path), resolution=32, batch_size=2)
    with pytest.raises(NoUsableVideosError, match=r"no usable video in the 3 videos of .*: 3 videos skipped as unreadable \(.*\)"):
        pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path).test(_BatchSizes(), datamodule=dm)
