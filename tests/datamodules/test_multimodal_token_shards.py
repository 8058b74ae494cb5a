"""MultimodalTokenDataModule on ``lavit preprocess --stage tokens`` shards (videos and a text corpus) written with the
session's tokenizer files, against the same DataModule's manifest path (the tokenizers run on the same videos)."""

from __future__ import annotations

import csv
import shutil

import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import
import pytest
import torch

from datamodules.manifest import read_manifest
from datamodules.multimodal_tokens import CodebookSizesUnknownError, MultimodalTokenDataModule
from lavit.lm import MultimodalLMConfig
from lavit.lm.sequences import IGNORE_INDEX
from lavit.shards.format import ShardOptionsMismatchError
from lightning_modules.cli import lavit_main
from tests.lm.tokenizer_fixtures import lm_assets, save_random_keyframe_tokenizer  # noqa: F401  (session fixture)

# the session fixture renders 96 demo videos and trains the motion tokenizer (~75 s once); the shards here ~15 s
pytestmark = pytest.mark.slow

N_VIDEOS = 12
SIZES = dict(visual_codes=64, motion_codes=256, motion_tokens_per_clip=24)  # the fixture's tokenizers
CORPUS = ["a textured block moves up", "the camera pans left and right", "a zebra sang while the block moves down",
          "pans pans pans"]


def preprocess(*argv) -> None:
    try:
        rc = lavit_main(["preprocess", *map(str, argv)])
    except SystemExit as exit:
        rc = exit.code
    assert rc == 0, f"lavit preprocess {argv} exited {rc}"


def bos_tokenizer(folder, out):
    """A copy of the word-level tokenizer at ``folder`` that prepends ``<s>`` as Llama's does -> the new folder."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    bos = tok.convert_tokens_to_ids("<s>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tok.save_pretrained(str(out))
    assert AutoTokenizer.from_pretrained(str(out))("a block")["input_ids"][0] == bos
    return out


@pytest.fixture(scope="module")
def shards(lm_assets, tmp_path_factory):  # noqa: F811
    """``{"manifest", "videos", "text", "corpus"}``: a manifest of the first ``N_VIDEOS`` demo videos, their token
    shards and the token shards of a 4-line text corpus (the fixture's text tokenizer)."""
    base = tmp_path_factory.mktemp("token_shards")
    records = read_manifest(f"{lm_assets['demo_root']}/manifest.csv")[:N_VIDEOS]
    manifest = base / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "caption", "video_id"])
        writer.writerows([str(r.path), r.caption, r.video_id] for r in records)
    corpus = base / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    preprocess(manifest, "-o", base / "videos", "--stage", "tokens", "--keyframe-tokenizer", lm_assets["keyframe_tokenizer"],
               "--motion-tokenizer", lm_assets["motion_tokenizer"])
    preprocess(corpus, "-o", base / "text", "--stage", "tokens", "--text", "--text-tokenizer", lm_assets["text_tokenizer"])
    return {"manifest": manifest, "videos": str(base / "videos"), "text": str(base / "text"), "corpus": corpus, "base": base}


def make(assets, **kwargs) -> MultimodalTokenDataModule:
    args = dict(text_tokenizer=assets["text_tokenizer"], batch_size=4, max_length=512, cache_tokens=False)
    dm = MultimodalTokenDataModule(**{**args, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def from_shards(lm_assets, shards):  # noqa: F811
    return make(lm_assets, train_shards=[shards["videos"], shards["text"]], motion_tokenizer=None, keyframe_tokenizer=None, **SIZES)


def test_shard_videos_equal_the_manifest_path_and_captions_the_manifest(lm_assets, shards, from_shards):  # noqa: F811
    truth = make(lm_assets, train_manifest=str(shards["manifest"]), motion_tokenizer=lm_assets["motion_tokenizer"],
                 keyframe_tokenizer=lm_assets["keyframe_tokenizer"])
    expected = {v.video_id: v for v in truth.videos["train"]}
    got = {v.video_id: v for v in from_shards.videos["train"]}
    assert len(expected) == N_VIDEOS and sorted(got) == sorted(expected)
    captions = {r.video_id: r.caption for r in read_manifest(shards["manifest"])}
    for video_id, video in got.items():
        want = expected[video_id]
        assert video.caption == captions[video_id] == want.caption
        assert len(video.keyframes) == len(want.keyframes) == len(video.motion) >= 1
        for a, b in zip(video.keyframes + video.motion, want.keyframes + want.motion):
            assert a.dtype == torch.long and torch.equal(a, b), video_id
    assert from_shards.vocabulary == truth.vocabulary


def test_text_documents_are_the_tokenizer_ids(lm_assets, from_shards):  # noqa: F811
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm_assets["text_tokenizer"], local_files_only=True)
    texts = from_shards.datasets["train"].texts
    assert [doc_id for doc_id, _ in texts] == [str(k + 1) for k in range(len(CORPUS))]
    for (_, ids), line in zip(texts, CORPUS):
        assert ids.tolist() == tok(line, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id in texts[2][1].tolist()  # "zebra" is not in the captions' vocabulary


def test_batches_build_and_the_vocabulary_check_works(from_shards):
    dm, v = from_shards, from_shards.vocabulary
    assert (v.visual_codes, v.motion_codes, v.motion_tokens_per_clip, v.bos_id, v.eos_id) == (64, 256, 24, 1, 2)
    kinds = set()
    for batch in dm.train_dataloader():
        assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
        assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
        for row, kind in enumerate(batch["kind"]):
            ids = batch["input_ids"][row][batch["attention_mask"][row] == 1]
            assert ids[0] == v.bos_id and ids[-1] == v.eos_id and v.bos_id not in ids[1:-1].tolist()
            segments = [type(s).__name__ for s in v.parse(ids[1:-1])]
            assert sorted(segments) == sorted({"video_text": ["VideoSegment", "TextSegment"], "text": ["TextSegment"],
                                               "image_text": ["ImageSegment", "TextSegment"]}[kind])
            kinds.add(kind)
    assert kinds == {"video_text", "image_text", "text"}
    dm.check_vocabulary(MultimodalLMConfig.from_name("tiny", text_size=v.text_size, **SIZES))
    with pytest.raises(ValueError, match=r"motion_codes: model 1024, data 256"):
        dm.check_vocabulary(MultimodalLMConfig.from_name("tiny", text_size=v.text_size, **{**SIZES, "motion_codes": 1024}))


def test_shards_of_other_tokenizers_are_refused_naming_both_hashes(lm_assets, shards, tmp_path):  # noqa: F811
    from lavit.shards.text import text_tokenizer_hash
    from lavit.weights import sha256_file

    other = save_random_keyframe_tokenizer(tmp_path / "other_keyframe.safetensors", seed=1)
    with pytest.raises(ShardOptionsMismatchError, match=rf"keyframe.*{sha256_file(lm_assets['keyframe_tokenizer'])}.*{sha256_file(other)}"):
        make(lm_assets, train_shards=[shards["videos"]], motion_tokenizer=lm_assets["motion_tokenizer"], keyframe_tokenizer=str(other))
    text = bos_tokenizer(lm_assets["text_tokenizer"], tmp_path / "bos_tokenizer")
    with pytest.raises(ShardOptionsMismatchError, match=rf"text.*{text_tokenizer_hash(lm_assets['text_tokenizer'])}.*{text_tokenizer_hash(text)}"):
        make(lm_assets, text_tokenizer=str(text), train_shards=[shards["text"]], **SIZES)
    # the right files: accepted, the sizes from the checkpoints
    dm = make(lm_assets, train_shards=[shards["videos"]], motion_tokenizer=lm_assets["motion_tokenizer"],
              keyframe_tokenizer=lm_assets["keyframe_tokenizer"])
    assert (dm.vocabulary.visual_codes, dm.vocabulary.motion_codes) == (64, 256) and len(dm.videos["train"]) == N_VIDEOS


def test_shards_without_codebook_sizes_are_a_typed_error(lm_assets, shards):  # noqa: F811
    with pytest.raises(CodebookSizesUnknownError, match=r"motion_codes.*motion_tokens_per_clip.*keyframe_tokenizer.*motion_tokenizer"):
        make(lm_assets, train_shards=[shards["videos"]], visual_codes=64)
    # sizes given beside checkpoints must agree with them
    with pytest.raises(ValueError, match=r"motion_codes 1024.*256"):
        make(lm_assets, train_shards=[shards["videos"]], motion_tokenizer=lm_assets["motion_tokenizer"],
             keyframe_tokenizer=lm_assets["keyframe_tokenizer"], **{**SIZES, "motion_codes": 1024})


def test_text_shards_of_a_bos_adding_tokenizer_lose_the_bos(lm_assets, shards):  # noqa: F811
    """Llama's tokenizer prepends <s> to each document in the shards; the sample adds its own bos."""
    from transformers import AutoTokenizer

    base = shards["base"]
    folder = bos_tokenizer(lm_assets["text_tokenizer"], base / "bos_tokenizer_text")
    preprocess(shards["corpus"], "-o", base / "text_bos", "--stage", "tokens", "--text", "--text-tokenizer", folder)
    dm = make(lm_assets, text_tokenizer=str(folder), train_shards=[str(base / "text_bos")], **SIZES)
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    texts = dm.datasets["train"].texts
    assert [ids.tolist() for _, ids in texts] == [tok(line, add_special_tokens=False)["input_ids"] for line in CORPUS]
    sample = dm.datasets["train"][0]["sample"]
    assert sample.ids[0] == tok.bos_token_id and tok.bos_token_id not in sample.ids[1:].tolist()
    shutil.rmtree(base / "text_bos")


def test_image_shards_feed_the_image_text_kind(lm_assets, shards, tmp_path):  # noqa: F811
    """``--images`` shards (keyframe ids + caption, no motion) become image-text samples ``[bos] [IMG] codes [/IMG]
    caption [eos]`` (either order) with the shards' own codes, and never video-text samples."""
    import numpy as np
    from litdata import StreamingDataset
    from PIL import Image

    from datamodules.streaming import DecodeClip, read_shard_options

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f"im{i}.png")
        (images / f"im{i}.txt").write_text(f"the camera pans left {i}")
    preprocess(images, "-o", tmp_path / "image_shards", "--stage", "tokens", "--images", "--keyframe-tokenizer",
               lm_assets["keyframe_tokenizer"])
    stored = StreamingDataset(str(tmp_path / "image_shards"), shuffle=False,
                              transform=DecodeClip(read_shard_options(str(tmp_path / "image_shards"))))
    truth = {stored[i]["caption"]: stored[i]["keyframe_ids"].tolist() for i in range(len(stored))}
    assert len(truth) == 4
    dm = make(lm_assets, train_shards=[str(tmp_path / "image_shards"), shards["videos"]], motion_tokenizer=None,
              keyframe_tokenizer=None, mix={"image_text": 1.0}, **SIZES)
    v = dm.vocabulary
    seen = set()
    for i in range(len(dm.datasets["train"])):
        item = dm.datasets["train"][(i, 0)]
        assert item["kind"] == "image_text"
        ids = item["sample"].ids
        assert v.mov_start not in ids.tolist()
        if item["caption"] in truth:
            start = int((ids == v.img_start).nonzero()[0])
            end = int((ids == v.img_end).nonzero()[0])
            assert (ids[start + 1:end] - v.visual_offset).tolist() == truth[item["caption"]]
            seen.add(item["caption"])
    assert seen  # the image shards' pairs are drawn (next to the videos' keyframes)
    only_images = make(lm_assets, train_shards=[str(tmp_path / "image_shards")], motion_tokenizer=None, keyframe_tokenizer=None,
                       mix={"video_text": 0.5, "image_text": 0.5}, **SIZES)
    kinds = {only_images.datasets["train"][(i, 0)]["kind"] for i in range(len(only_images.datasets["train"]))}
    assert kinds == {"image_text"}  # no motion anywhere: no video-text samples
