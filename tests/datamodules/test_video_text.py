"""VideoTextDataModule over real encoded videos, with bad files mixed in."""

import csv

import lightning.pytorch as pl
import pytest
import torch

from datamodules import VideoTextDataModule
from lavit.video.demo_data import make_demo_dataset
from tests.video.bad_inputs import write_bad_inputs


@pytest.fixture(scope="module")
def demo_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(root, num_videos=4, duration=4.0, fps=12, height=96, width=160, progress=False)


@pytest.fixture(scope="module")
def mixed_manifest(tmp_path_factory, demo_manifest, real_clip):
    """The demo videos, the real clip and four broken files in one manifest."""
    folder = tmp_path_factory.mktemp("mixed")
    bad = write_bad_inputs(real_clip, folder)
    rows = list(csv.DictReader(open(demo_manifest)))
    for r in rows:
        r["video"] = str(demo_manifest.parent / r["video"])
    rows.append({"video": str(real_clip), "caption": "a real video", "video_id": "msrvtt7013"})
    rows += [{"video": str(p), "caption": f"broken {k}", "video_id": k} for k, p in bad.items()]
    manifest = folder / "mixed.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["video", "caption", "video_id"])
        w.writeheader()
        w.writerows(rows)
    return manifest, {str(p) for p in bad.values()}


def _epoch(dm, loader):
    batches = []
    for batch in loader:
        batches.append(dm.on_before_batch_transfer(batch, 0))
    return batches


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_shapes_and_bad_files_skipped_and_counted(mixed_manifest, num_workers):
    manifest, bad_paths = mixed_manifest
    dm = VideoTextDataModule(train_manifest=str(manifest), val_manifest=str(manifest), batch_size=3, num_workers=num_workers)
    dm.setup("fit")
    batches = _epoch(dm, dm.train_dataloader())
    assert set(dm.skipped) == bad_paths  # each bad file counted once, with its reason
    assert all(dm.skipped.values())
    n = sum(len(b["video_id"]) for b in batches)
    assert n == 5  # 4 demo videos + the real clip, one clip each
    for b in batches:
        k = len(b["video_id"])
        if k:
            assert tuple(b["keyframe"].shape) == (k, 3, 224, 224)
            assert tuple(b["motion"].shape) == (k, 2, 24, 20, 36)
            assert len(b["caption"]) == k and "skipped" not in b
    val_ids = [v for b in _epoch(dm, dm.val_dataloader()) for v in b["video_id"]]
    assert val_ids.count("msrvtt7013") == 3  # every sampled clip of the real video in validation


def test_deterministic_with_seed_and_epoch_dependent(demo_manifest, real_clip, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"video,caption\n{real_clip},x\n" + "".join(f"{demo_manifest.parent}/videos/demo_{i:04d}.mp4,d{i}\n" for i in range(4)))

    def run(seed, epoch):
        dm = VideoTextDataModule(train_manifest=str(manifest), batch_size=2, seed=seed)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return _epoch(dm, loader)

    a, b = run(0, 0), run(0, 0)
    assert [x["video_id"] for x in a] == [x["video_id"] for x in b]
    for x, y in zip(a, b):
        torch.testing.assert_close(x["motion"], y["motion"], rtol=0, atol=0)
    orders = {tuple(v for x in run(0, e) for v in x["video_id"]) for e in range(4)}
    assert len(orders) > 1  # the shuffle changes with the epoch


class _ClipCounter(pl.LightningModule):
    """Smallest real consumer: fits the mean motion, counts the clips it saw."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.seen = 0

    def training_step(self, batch, _):
        if len(batch["video_id"]) == 0:
            return None
        self.seen += len(batch["video_id"])
        target = batch["motion"].mean(dim=(2, 3, 4))
        return ((self.w - target) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_fit_survives_bad_files(mixed_manifest, tmp_path):
    manifest, bad_paths = mixed_manifest
    dm = VideoTextDataModule(train_manifest=str(manifest), batch_size=2)
    model = _ClipCounter()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert model.seen == 5
    assert set(dm.skipped) == bad_paths


def test_embedded_default_dataset(tmp_path):
    dm = VideoTextDataModule(demo_root=str(tmp_path / "demo"), demo_num_videos=4, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3 and len(dm.datasets["val"]) == 1
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["motion"].shape[1:]) == (2, 24, 20, 36)
    assert all(c.startswith("a textured block moves") for c in batch["caption"])
