"""VideoTextDataModule over real encoded videos, with bad files mixed in."""

import csv

import lightning.pytorch as pl
import pytest
import torch

from datamodules import VideoTextDataModule
from datamodules.skipped import NoUsableVideosError
from lavit.video import extract_clips
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
def test_batches_full_bad_files_replaced_skipped_and_counted(mixed_manifest, num_workers):
    manifest, bad_paths = mixed_manifest
    dm = VideoTextDataModule(train_manifest=str(manifest), val_manifest=str(manifest), batch_size=3, num_workers=num_workers)
    dm.setup("fit")
    batches = _epoch(dm, dm.train_dataloader())
    assert set(dm.skipped) == bad_paths  # each bad file counted once, with its reason, also from worker processes
    assert all(dm.skipped.values())
    assert [len(b["video_id"]) for b in batches] == [3, 3, 3]  # 9 rows: each bad one replaced by a readable video
    good_ids = {"msrvtt7013"} | {f"demo_{i:04d}" for i in range(4)}
    assert set(v for b in batches for v in b["video_id"]) == good_ids
    for b in batches:
        k = len(b["video_id"])
        assert tuple(b["keyframe"].shape) == (k, 3, 224, 224)
        assert tuple(b["motion"].shape) == (k, 2, 24, 20, 36)
        assert len(b["caption"]) == k and "skipped" not in b
        assert "frames" not in b  # no frame_size: no frames decoded
    val = _epoch(dm, dm.val_dataloader())
    assert len(val) == 3 and all(b["video_id"] for b in val)
    assert set(v for b in val for v in b["video_id"]) == good_ids  # every clip of each video, stand-ins included


def test_frame_size_batches_hold_each_clips_frames_and_bad_files_still_give_full_batches(mixed_manifest):
    manifest, bad_paths = mixed_manifest
    size = (32, 48)
    dm = VideoTextDataModule(train_manifest=str(manifest), batch_size=3, num_workers=0, frame_size=size)
    dm.setup("fit")
    batches = _epoch(dm, dm.train_dataloader())
    assert set(dm.skipped) == bad_paths
    assert [len(b["video_id"]) for b in batches] == [3, 3, 3]
    paths = {r.video_id: r.path for r in dm.datasets["train"].records}
    reference = {}
    for b in batches:
        k = len(b["video_id"])
        assert tuple(b["frames"].shape) == (k, 24, 3, *size) and b["frames"].dtype == torch.uint8
        assert tuple(b["motion"].shape) == (k, 2, 24, 20, 36)
        for i, video_id in enumerate(b["video_id"]):
            if video_id not in reference:
                reference[video_id] = extract_clips(paths[video_id], frame_size=size)
            clips = reference[video_id]
            # the frames are those of the very clip whose motion sits beside them
            match = [j for j in range(len(clips)) if torch.equal(clips.motion[j], b["motion"][i])]
            assert len(match) == 1 and torch.equal(b["frames"][i], clips.frames[match[0]])


def test_stand_ins_are_a_function_of_seed_index_and_epoch(mixed_manifest):
    manifest, _ = mixed_manifest
    dm = VideoTextDataModule(train_manifest=str(manifest))
    dm.setup("fit")
    dataset = dm.datasets["train"]
    bad = [i for i, r in enumerate(dataset.records) if r.caption.startswith("broken")]
    picks = {(i, e): dataset[(i, e)]["clips"][0]["video_id"] for i in bad for e in range(3)}
    fresh = VideoTextDataModule(train_manifest=str(manifest))  # a new process or a resumed run
    fresh.setup("fit")
    assert {(i, e): fresh.datasets["train"][(i, e)]["clips"][0]["video_id"] for i, e in reversed(picks)} == picks
    assert len(set(picks.values())) > 1  # not always the same neighbour


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
    """Smallest real consumer: fits the mean motion with Adam, records the batch sizes it saw."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.batch_sizes = []

    def training_step(self, batch, _):
        if len(batch["video_id"]) == 0:  # what a consumer of the old empty batches had to do
            return None
        self.batch_sizes.append(len(batch["video_id"]))
        target = batch["motion"].mean(dim=(2, 3, 4))
        return ((self.w - target) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.1)


def _fit(dm, tmp_path, **trainer_args):
    model = _ClipCounter()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=tmp_path, **trainer_args)
    trainer.fit(model, datamodule=dm)
    return trainer, model


@pytest.fixture(scope="module")
def mostly_bad_manifest(tmp_path_factory, real_clip):
    """Two readable videos and four broken ones: with batches of 2, some batch of the old loader was all bad."""
    folder = tmp_path_factory.mktemp("mostly_bad")
    bad = write_bad_inputs(real_clip, folder)
    good = make_demo_dataset(folder / "demo", num_videos=2, duration=4.0, fps=12, height=96, width=160, progress=False)
    rows = [f"{good.parent / r['video']},{r['caption']}" for r in csv.DictReader(open(good))]
    rows += [f"{p},broken {k}" for k, p in bad.items()]
    manifest = folder / "mostly_bad.csv"
    manifest.write_text("video,caption\n" + "\n".join(rows) + "\n")
    return manifest, {str(p) for p in bad.values()}


def test_global_step_counts_optimizer_steps_with_bad_files(mostly_bad_manifest, tmp_path):
    manifest, bad_paths = mostly_bad_manifest
    dm = VideoTextDataModule(train_manifest=str(manifest), batch_size=2, cache_clips=True)
    trainer, model = _fit(dm, tmp_path, max_epochs=2)
    (state,) = trainer.optimizers[0].state.values()
    assert int(state["step"]) == trainer.global_step == 6  # Adam's own count of updates: 3 full batches per epoch
    assert model.batch_sizes == [2] * 6
    assert set(dm.skipped) == bad_paths


@pytest.mark.parametrize("num_workers", [0, 2])
def test_all_bad_manifest_stops_with_the_skip_counts(mostly_bad_manifest, tmp_path, num_workers):
    manifest, bad_paths = mostly_bad_manifest
    only_bad = tmp_path / "only_bad.csv"
    only_bad.write_text("video,caption\n" + "".join(f"{p},x\n" for p in sorted(bad_paths)))
    dm = VideoTextDataModule(train_manifest=str(only_bad), batch_size=2, num_workers=num_workers)
    with pytest.raises(NoUsableVideosError, match=r"no usable video in the set: 4 videos skipped as unreadable \(1 x .*; 1 x "):
        _fit(dm, tmp_path, max_epochs=1)
    assert set(dm.skipped) == bad_paths


def test_missing_manifest_fails_at_construction(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found: .*nope.csv"):
        VideoTextDataModule(train_manifest=str(tmp_path / "nope.csv"))


def test_embedded_default_dataset(tmp_path):
    dm = VideoTextDataModule(demo_root=str(tmp_path / "demo"), demo_num_videos=4, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3 and len(dm.datasets["val"]) == 1
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["motion"].shape[1:]) == (2, 24, 20, 36)
    assert all(c.startswith("a textured block moves") for c in batch["caption"])
