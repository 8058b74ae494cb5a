"""MultimodalTokenDataModule on the rendered demo videos, tokenized at setup with real tiny tokenizers."""

from __future__ import annotations

import collections
import shutil

import pytest
import torch

import lavit
from datamodules.multimodal_tokens import MultimodalTokenDataModule, NoTrainingSamplesError
from datamodules.manifest import read_manifest
from lavit.lm import MultimodalLMConfig
from lavit.lm.sequences import IGNORE_INDEX
from tests.lm.tokenizer_fixtures import DEMO, lm_assets  # noqa: F401  (session fixture)

# the session fixture renders 96 demo videos and trains the motion tokenizer (~75 s once)
pytestmark = pytest.mark.slow


def make(assets, **kwargs):
    args = dict(motion_tokenizer=assets["motion_tokenizer"], keyframe_tokenizer=assets["keyframe_tokenizer"],
                text_tokenizer=assets["text_tokenizer"], demo_root=assets["demo_root"], batch_size=8, max_length=512,
                **DEMO)
    dm = MultimodalTokenDataModule(**{**args, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def dm(lm_assets):
    return make(lm_assets)


def test_vocabulary_comes_from_the_tokenizers(dm, lm_assets):
    from transformers import AutoTokenizer

    v = dm.vocabulary
    motion = lavit.load_motion_tokenizer(lm_assets["motion_tokenizer"])
    assert v.text_size == len(AutoTokenizer.from_pretrained(lm_assets["text_tokenizer"]))
    assert (v.visual_codes, v.motion_codes, v.motion_tokens_per_clip) == (64, 256, motion.num_tokens) == (64, 256, 24)
    assert (v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2)


def test_batches_follow_the_grammar_and_match_the_tokenizers(dm, lm_assets):
    v = dm.vocabulary
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert len(batch["caption"]) == len(batch["video_id"]) == len(batch["kind"]) == 8
    # independent truth: re-tokenize one video-text sample's video with the tokenizers
    motion_tok = lavit.load_motion_tokenizer(lm_assets["motion_tokenizer"])
    captions = dict(zip(lm_assets["captions"], lm_assets["motion"]))
    for row, kind in enumerate(batch["kind"]):
        ids = batch["input_ids"][row][batch["attention_mask"][row] == 1]
        segments = v.parse(ids[1:-1])
        assert ids[0] == v.bos_id and ids[-1] == v.eos_id
        names = [type(s).__name__ for s in segments]
        assert sorted(names) == sorted({"video_text": ["VideoSegment", "TextSegment"], "image_text": ["ImageSegment", "TextSegment"],
                                        "text": ["TextSegment"]}[kind])
        if kind == "video_text" and batch["caption"][row] in captions:
            video = next(s for s in segments if type(s).__name__ == "VideoSegment")
            expected = motion_tok.tokenize(captions[batch["caption"][row]][None])[0]
            # batch composition changes float rounding, which flips near-tied codes: most must be equal
            assert (video.motion[0] == expected).float().mean() >= 0.6


def test_mix_and_order_are_deterministic_per_seed_and_epoch(lm_assets):
    dm = make(lm_assets, mix={"video_text": 0.5, "image_text": 0.25, "text": 0.25}, text_first_prob=0.3, samples_per_epoch=400)
    ds = dm.datasets["train"]
    items = [ds[(i, 0)] for i in range(400)]
    kinds = collections.Counter(i["kind"] for i in items)
    assert abs(kinds["video_text"] / 400 - 0.5) < 0.08 and abs(kinds["text"] / 400 - 0.25) < 0.08
    media = [i for i in items if i["kind"] != "text"]
    text_first = [int(i["sample"].ids[1]) < dm.vocabulary.text_size for i in media]
    assert abs(sum(text_first) / len(media) - 0.3) < 0.08
    assert all(torch.equal(ds[(i, 0)]["sample"].ids, items[i]["sample"].ids) for i in range(0, 400, 37))
    assert any(not torch.equal(ds[(i, 1)]["sample"].ids, items[i]["sample"].ids) for i in range(20))


def test_prompts_are_the_held_out_captions(dm):
    batch = next(iter(dm.predict_dataloader()))
    val_captions = {r.caption for r in dm._records()["val"]}
    assert set(batch["caption"]) <= val_captions
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (ids[:, -1] != dm.hparams.pad_id).all() and (mask[:, -1] == 1).all()  # left padded
    first = ids[0][mask[0] == 1]
    assert first[0] == dm.vocabulary.bos_id and torch.equal(first[1:], batch["text_ids"][0])
    decoded = dm.text_tokenizer.decode(batch["text_ids"][0])
    assert decoded == batch["caption"][0]


def test_check_vocabulary_names_each_mismatch(dm):
    v = dm.vocabulary
    good = MultimodalLMConfig.from_name("tiny", text_size=v.text_size, visual_codes=v.visual_codes, motion_codes=v.motion_codes,
                                        motion_tokens_per_clip=v.motion_tokens_per_clip)
    dm.check_vocabulary(good)
    with pytest.raises(ValueError, match=r"visual_codes: model 16384, data 64.*motion_tokens_per_clip: model 135, data 24"):
        dm.check_vocabulary(MultimodalLMConfig.from_name("tiny", text_size=v.text_size, motion_codes=v.motion_codes))


def test_bad_videos_are_skipped_and_counted(lm_assets, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(lm_assets["demo_root"], root)
    records = read_manifest(root / "manifest.csv")
    bad = [records[-1].path, records[-2].path]
    for path in bad:
        path.write_bytes(b"not a video")
    dm = make(lm_assets, demo_root=str(root), cache_tokens=False)
    assert sorted(dm.skipped) == sorted(str(p) for p in bad)
    assert len(dm.videos["train"]) == len(records) - len(dm.videos["val"]) - 2


def test_nothing_to_train_on_is_a_typed_error(lm_assets, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(lm_assets["demo_root"], root)
    for record in read_manifest(root / "manifest.csv"):
        record.path.write_bytes(b"")
    with pytest.raises(NoTrainingSamplesError, match="no usable video in the training set"):
        make(lm_assets, demo_root=str(root), cache_tokens=False, use_captions_as_text=False)


def test_tokens_are_cached_next_to_the_demo_keyed_by_the_tokenizers(dm, lm_assets):
    cached = sorted(p.name for p in (dm.hparams.demo_root and __import__("pathlib").Path(dm.hparams.demo_root)).glob("tokens_*.pt"))
    assert len(cached) == 2  # train and val
    again = make(lm_assets)
    assert [torch.equal(a.motion[0], b.motion[0]) for a, b in zip(again.videos["train"], dm.videos["train"])] == [True] * len(dm.videos["train"])
