"""StreamingClipDataModule over litdata shards written here in the ``lavit.shards.format`` layout.

The shards are written by ``write_shards`` (a test fixture, not ``lavit preprocess``): ``litdata.optimize`` over
``extract_clips`` output, keyframes as PNG (lossless), motion as float16.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from datamodules import StreamingClipDataModule, VideoTextDataModule
from datamodules.manifest import read_manifest
from lavit.shards import ShardOptions, ShardOptionsMismatchError, encode_image, write_options
from lavit.video import extract_clips

ROOT = Path(__file__).resolve().parents[2]
FIELD = (8, 16)
CLIP_OPTIONS = dict(fps=6.0, max_clips=None, sampling="dense", normalization="official", clip_len=24,
                    field_size=FIELD, min_frames=24)


def _samples(record: tuple[str, str, str], options: ShardOptions):
    """litdata.optimize fn: one video -> its clips as shard samples (lavit.shards.format layout; with
    ``options.frame_size`` also the ``"frames"`` of stage detokenizer)."""
    path, video_id, caption = record
    keys = ("fps", "max_clips", "sampling", "normalization", "clip_len", "field_size", "min_frames", "frame_size")
    clips = extract_clips(path, **{k: getattr(options, k) for k in keys})
    for k in range(len(clips.starts)):
        # the file name, not the path: litdata stores a str naming an existing .mp4 file as the video's bytes
        sample = {"video": Path(path).name, "video_id": video_id, "caption": caption, "clip": k,
                  "start": int(clips.starts[k]), "keyframe": encode_image(np.asarray(clips.keyframes[k]), "png"),
                  "motion": np.asarray(clips.motion[k], dtype=np.float16)}
        if clips.frames is not None:
            from lavit.shards.frames import encode_frames

            sample["frames"] = encode_frames(np.asarray(clips.frames[k]), options)
        yield sample


def _optimize(**kwargs) -> None:
    """``litdata.optimize``, then the process's multiprocessing start method as it was: optimize forces "spawn"
    for the whole process, and DataLoader workers started later would each import torch again (measured: the
    2-worker resume test took 95 s instead of 8 s)."""
    import multiprocessing

    from litdata import optimize

    method = multiprocessing.get_start_method(allow_none=True)
    try:
        optimize(**kwargs)
    finally:
        multiprocessing.set_start_method(method, force=True)


def write_shards(manifest: Path, out: Path, **overrides) -> ShardOptions:
    """Shards of every clip of the manifest's videos in ``out`` (one litdata worker: sample order = manifest order)."""
    options = {**CLIP_OPTIONS, **overrides}
    stage = "detokenizer" if options.get("frame_size") else "motion"
    shard_options = ShardOptions(stage=stage, frames_format="mp4" if stage == "detokenizer" else None, **options)
    records = [(str(r.path), r.video_id, r.caption) for r in read_manifest(manifest)]
    _optimize(fn=functools.partial(_samples, options=shard_options), inputs=records, output_dir=str(out),
              chunk_bytes="256KB", num_workers=1, verbose=False)
    write_options(out, shard_options)
    return shard_options


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from lavit.video.demo_data import make_demo_dataset

    root = tmp_path_factory.mktemp("stream_demo")
    manifest = make_demo_dataset(root / "videos", num_videos=3, duration=6.0, height=96, width=160, progress=False)
    write_shards(manifest, root / "shards")
    return manifest, root / "shards"


def _dm(shards, **kw):
    return StreamingClipDataModule(train_dir=str(shards), val_dir=str(shards), **{**CLIP_OPTIONS, **kw})


class RecordBatches(L.Callback):
    """Keeps (epoch, video_ids, motion) of every training batch; with ``folder`` writes them to
    ``<folder>/rank<R>.pt`` when fitting ends (for the DDP subprocess)."""

    def __init__(self, folder: str | None = None):
        self.folder = folder
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append((trainer.current_epoch, list(batch["video_id"]), batch["motion"].detach().cpu().clone()))

    def on_fit_end(self, trainer, pl_module):
        if self.folder is not None:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            torch.save(self.batches, Path(self.folder) / f"rank{trainer.global_rank}.pt")


def _fingerprint(video_id: str, motion: torch.Tensor) -> tuple[str, str]:
    return video_id, hashlib.sha1(motion.numpy().tobytes()).hexdigest()


def test_batches_equal_decoding_datamodule(demo):
    """Same clips through both DataModules: same keys, shapes and dtypes; keyframes equal (PNG is lossless),
    motion equal within float16 rounding (relative 2**-11, |x| < 2**-14 absolute: float16 subnormals)."""
    manifest, shards = demo
    decoding = VideoTextDataModule(train_manifest=str(manifest), val_manifest=str(manifest), batch_size=1,
                                   clips_per_video=None, **CLIP_OPTIONS)
    decoding.setup("fit")
    streaming = _dm(shards, batch_size=2)
    streaming.setup("fit")
    want = [decoding.on_before_batch_transfer(b, 0) for b in decoding.val_dataloader()]  # one video (its 2 clips) per batch
    got = list(streaming.val_dataloader())
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert set(g) == set(w) == {"keyframe", "motion", "caption", "video_id"}
        for key in ("keyframe", "motion"):
            assert g[key].shape == w[key].shape and g[key].dtype == w[key].dtype == torch.float32
        assert g["caption"] == w["caption"] and g["video_id"] == w["video_id"]
        assert torch.equal(g["keyframe"], w["keyframe"])
        torch.testing.assert_close(g["motion"], w["motion"], rtol=2**-11, atol=2**-14)
        assert torch.equal(g["motion"], w["motion"].half().float())


def test_other_options_refused_naming_folder_and_option(demo):
    _, shards = demo
    dm = _dm(shards, field_size=(20, 36), fps=8.0)
    with pytest.raises(ShardOptionsMismatchError, match=r"fps: shards 6.0, requested 8.0; field_size: shards \[8, 16\], requested \(20, 36\)"):
        dm.setup("fit")
    with pytest.raises(ShardOptionsMismatchError, match=str(shards)):
        dm.setup("fit")
    with pytest.raises(FileNotFoundError, match="lavit_preprocess.json"):
        _dm(shards.parent / "videos").setup("fit")


def test_shuffle_is_deterministic_by_seed_and_differs_per_epoch(demo):
    _, shards = demo

    def epochs(seed):
        dm = _dm(shards, batch_size=1, seed=seed)
        dm.setup("fit")
        loader = dm.train_dataloader()
        return [[_fingerprint(b["video_id"][0], b["motion"][0]) for b in loader] for _ in range(2)]

    a, b, c = epochs(0), epochs(0), epochs(1)
    assert a == b
    assert sorted(a[0]) == sorted(a[1]) == sorted(c[0]) and len(set(a[0])) == 6  # every clip once per epoch
    assert a[0] != a[1] and a[0] != c[0]  # measured: 6 clips, seeds 0 and 1, epochs 0 and 1 all in different orders


def _fit(shards, root, max_steps, ckpt_path=None, num_workers=0, every=None):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lavit.tokenizers import MotionTokenizerConfig
    from lightning_modules.motion_vqvae import MotionVQVAE

    L.seed_everything(0)
    recorder = RecordBatches()
    callbacks = [recorder]
    if every:
        callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=every, save_top_k=-1, filename="{step}"))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, limit_val_batches=0, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=bool(every),
                        callbacks=callbacks, default_root_dir=root)
    model = MotionVQVAE(tokenizer=MotionTokenizerConfig.from_name("tiny", field_size=FIELD).to_dict(), warmup_steps=1)
    dm = _dm(shards, batch_size=1, num_workers=num_workers, seed=3)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return recorder.batches


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_from_checkpoint_continues_the_batches(demo, tmp_path, num_workers):
    """6 clips, batch 1: stop after 2 steps of epoch 1 (step 8), resume; steps 8..9 equal the uninterrupted run's."""
    _, shards = demo
    full = _fit(shards, tmp_path / "full", 10, num_workers=num_workers)
    first = _fit(shards, tmp_path / "first", 8, num_workers=num_workers, every=8)
    assert [(e, v) for e, v, _ in first] == [(e, v) for e, v, _ in full[:8]]
    ckpt = tmp_path / "first" / "step=8.ckpt"
    assert "StreamingClipDataModule" in torch.load(ckpt, map_location="cpu", weights_only=False)  # the loader state
    resumed = _fit(shards, tmp_path / "resumed", 10, ckpt_path=str(ckpt), num_workers=num_workers)
    assert len(resumed) == 2
    for (e, v, m), (fe, fv, fm) in zip(resumed, full[8:]):
        assert (e, v) == (fe, fv) == (1, v) and torch.equal(m, fm)


def test_datamodule_state_alone_resumes_and_is_needed(demo, tmp_path):
    """Lightning saves the loader's state twice: its fit loop's own copy (litdata's loader is stateful) and the
    DataModule's ``state_dict``. Without the fit loop's copy the DataModule's restores the position; without both
    the resumed run restarts the epoch (the control: the comparison can fail)."""
    _, shards = demo
    full = _fit(shards, tmp_path / "full", 10)
    _fit(shards, tmp_path / "first", 8, every=8)
    ckpt = torch.load(tmp_path / "first" / "step=8.ckpt", map_location="cpu", weights_only=False)
    ckpt["loops"]["fit_loop"]["state_dict"].pop("combined_loader")
    torch.save(ckpt, tmp_path / "dm_only.ckpt")
    resumed = _fit(shards, tmp_path / "dm_only", 10, ckpt_path=str(tmp_path / "dm_only.ckpt"))
    assert len(resumed) == 2 and all(torch.equal(m, fm) for (_, _, m), (_, _, fm) in zip(resumed, full[8:]))
    ckpt.pop("StreamingClipDataModule")
    torch.save(ckpt, tmp_path / "none.ckpt")
    restarted = _fit(shards, tmp_path / "none", 10, ckpt_path=str(tmp_path / "none.ckpt"))
    assert not all(torch.equal(m, fm) for (_, _, m), (_, _, fm) in zip(restarted, full[8:]))


@pytest.mark.slow
def test_ddp_two_processes_see_disjoint_samples_covering_the_epoch(demo, tmp_path):
    from lavit.tokenizers import MotionTokenizerConfig

    _, shards = demo
    out = tmp_path / "batches"
    # the tiny tokenizer's fields in full: a dotted override of the preset name would rebuild the paper-size default
    tokenizer = MotionTokenizerConfig.from_name("tiny", field_size=FIELD).to_dict()
    config = {
        "seed_everything": 0,
        "model": {"class_path": "MotionVQVAE", "init_args": {"tokenizer": tokenizer, "warmup_steps": 1}},
        "data": {"class_path": "StreamingClipDataModule",
                 "init_args": {"train_dir": str(shards), "batch_size": 1, **CLIP_OPTIONS, "field_size": list(FIELD)}},
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_epochs": 1, "limit_val_batches": 0,
                    "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                    "callbacks": [{"class_path": "tests.shards.test_streaming.RecordBatches", "init_args": {"folder": str(out)}}]},
    }
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "lightning"), "fit", "-c", str(tmp_path / "ddp.yaml")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = [{_fingerprint(v[0], m[0]) for _, v, m in torch.load(out / f"rank{k}.pt", weights_only=False)} for k in (0, 1)]
    everything = {_fingerprint(b["video_id"][0], b["motion"][0]) for b in _dm(shards, batch_size=1).val_dataloader()}
    assert len(everything) == 6
    assert len(seen[0]) == len(seen[1]) == 3 and not seen[0] & seen[1] and seen[0] | seen[1] == everything


def _token_samples(index: int):
    """litdata.optimize fn: a token sample whose ids are a function of ``index`` (stage tokens)."""
    n = 3 + index % 3  # the keyframe token count varies per clip
    yield {"video": f"v{index}.mp4", "video_id": f"v{index}", "caption": f"caption {index}", "clip": 0, "start": 0,
           "keyframe_ids": np.arange(n, dtype=np.int32) + 100 * index,
           "motion_ids": (np.arange(135, dtype=np.int32) * (index + 1)) % 1024}


def test_token_shards_give_id_tensors_and_lists(tmp_path):
    _optimize(fn=_token_samples, inputs=list(range(5)), output_dir=str(tmp_path), chunk_bytes="64KB", num_workers=1,
             verbose=False)
    write_options(tmp_path, ShardOptions(stage="tokens", tokenizers={"keyframe": "ab", "motion": "cd"}, **CLIP_OPTIONS))
    dm = _dm(tmp_path, batch_size=2, shuffle=False, drop_last=False)
    batches = list(dm.val_dataloader())
    assert [len(b["video_id"]) for b in batches] == [2, 2, 1]
    for b in batches:
        assert set(b) == {"keyframe_ids", "motion_ids", "caption", "video_id"}
        assert b["motion_ids"].dtype == torch.int64 and b["motion_ids"].shape == (len(b["video_id"]), 135)
        for vid, kf, mo in zip(b["video_id"], b["keyframe_ids"], b["motion_ids"]):
            i = int(vid[1:])
            assert kf.dtype == torch.int64 and kf.tolist() == list(range(100 * i, 100 * i + 3 + i % 3))
            assert mo.tolist() == [(j * (i + 1)) % 1024 for j in range(135)]


def test_frames_equal_decoding_datamodule(demo, tmp_path):
    """Detokenizer shards (frames as lossless mp4): "frames" (N, 24, 3, H, W) uint8 equal to the decoding
    DataModule's; a motion-stage reader (no frame_size) gets no frames; a reader with another frame_size is refused."""
    pytest.importorskip("lavit.shards.frames", reason="lavit/shards/frames.py comes with `lavit preprocess`")
    manifest, _ = demo
    write_shards(manifest, tmp_path / "shards", frame_size=(16, 32))
    decoding = VideoTextDataModule(train_manifest=str(manifest), val_manifest=str(manifest), batch_size=1,
                                   clips_per_video=None, frame_size=(16, 32), **CLIP_OPTIONS)
    decoding.setup("fit")
    want = [decoding.on_before_batch_transfer(b, 0) for b in decoding.val_dataloader()]
    got = list(_dm(tmp_path / "shards", batch_size=2, frame_size=(16, 32)).val_dataloader())
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert set(g) == set(w) == {"keyframe", "motion", "frames", "caption", "video_id"}
        assert g["frames"].dtype == w["frames"].dtype == torch.uint8 and g["frames"].shape == w["frames"].shape == (2, 24, 3, 16, 32)
        assert torch.equal(g["frames"], w["frames"])
    assert "frames" not in next(iter(_dm(tmp_path / "shards", batch_size=2).val_dataloader()))
    with pytest.raises(ShardOptionsMismatchError, match=r"frame_size: shards \[16, 32\], requested \(32, 32\)"):
        _dm(tmp_path / "shards", frame_size=(32, 32)).setup("fit")
