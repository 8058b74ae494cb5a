"""MultimodalLM: the per-modality loss, what trains, generation records."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lavit.lm import MultimodalVocabulary, VideoSegment
from lavit.lm.loss import next_token_loss
from lavit.lm.sequences import IGNORE_INDEX, collate_padded, pretraining_sample
from lightning_modules.multimodal_lm import GenerationWriter, MultimodalLM
from tests.datamodules.test_instructions import data  # noqa: F401  (module fixture)

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=256,
             tie_word_embeddings=False, text_size=40, visual_codes=16, motion_codes=24, motion_tokens_per_clip=6)


def _vocab() -> MultimodalVocabulary:
    return MultimodalVocabulary(40, 16, 24, 6)


def _samples(n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    v = _vocab()
    samples = []
    for i in range(n):
        text = torch.randint(3, v.text_size, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)
        clips = int(torch.randint(1, 3, (1,), generator=g))
        video = VideoSegment([torch.randint(0, v.visual_codes, (3,), generator=g) for _ in range(clips)],
                             [torch.randint(0, v.motion_codes, (6,), generator=g) for _ in range(clips)])
        samples.append(pretraining_sample(v, text, video, "text_first" if i % 2 else "media_first"))
    return samples


def _loader(batch_size: int = 4):
    return DataLoader(_samples(), batch_size=batch_size, collate_fn=lambda s: collate_padded(s, pad_id=0))


def test_next_token_loss_per_modality_equals_cross_entropy_on_each_subset():
    v = _vocab()
    batch = collate_padded(_samples(4), pad_id=0)
    logits = torch.randn(*batch["input_ids"].shape, v.size)
    out = next_token_loss(logits, batch["labels"], v)
    flat_logits, targets = logits[:, :-1].reshape(-1, v.size), batch["labels"][:, 1:].reshape(-1)
    valid = targets != IGNORE_INDEX
    torch.testing.assert_close(out.loss, F.cross_entropy(flat_logits[valid], targets[valid]))
    groups = {"text": targets < v.img_start, "keyframe": (targets >= v.img_start) & (targets < v.mov_start),
              "motion": targets >= v.mov_start}
    for name, mask in groups.items():
        mask = mask & valid
        assert out.counts[name] == int(mask.sum()) > 0
        torch.testing.assert_close(out.per_modality[name], F.cross_entropy(flat_logits[mask], targets[mask]))
    with pytest.raises(ValueError, match="no labelled target"):
        next_token_loss(logits, torch.full_like(batch["labels"], IGNORE_INDEX), v)


def _fit(model: MultimodalLM, tmp_path, steps: int = 4) -> None:
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, train_dataloaders=_loader())


def test_training_lowers_the_loss_on_repeated_batches(tmp_path):
    torch.manual_seed(0)
    model = MultimodalLM(lm=SMALL, lr=3e-3)
    batch = next(iter(_loader(16)))
    before = next_token_loss(model(batch["input_ids"], batch["attention_mask"]), batch["labels"], model.vocab).loss.item()
    _fit(model, tmp_path, steps=40)
    after = next_token_loss(model(batch["input_ids"], batch["attention_mask"]), batch["labels"], model.vocab).loss.item()
    assert after < 0.8 * before


def test_embeddings_only_trains_the_media_rows_alone(tmp_path):
    torch.manual_seed(0)
    model = MultimodalLM(lm=SMALL, trainable="embeddings", lr=1e-2)
    before = {k: v.clone() for k, v in model.lm.state_dict().items()}
    _fit(model, tmp_path)
    after = model.lm.state_dict()
    text = model.vocab.text_size
    for name in before:
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(before[name][:text], after[name][:text]), name
            assert not torch.equal(before[name][text:], after[name][text:]), name
        else:
            assert torch.equal(before[name], after[name]), name


def test_lora_trains_adapters_and_media_rows_and_keeps_the_base_weights(tmp_path):
    torch.manual_seed(0)
    model = MultimodalLM(lm=SMALL, trainable="lora", lora_rank=4, lr=1e-2)
    before = {k: v.clone() for k, v in model.lm.state_dict().items()}
    _fit(model, tmp_path)
    after = model.lm.state_dict()
    lora = [k for k in before if "lora_B" in k]
    assert lora and all(not torch.equal(before[k], after[k]) for k in lora)
    text = model.vocab.text_size
    for name in before:
        if "lora_" in name:
            continue
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):
            assert torch.equal(before[name][:text], after[name][:text]), name
            assert not torch.equal(before[name][text:], after[name][text:]), name
        else:
            assert torch.equal(before[name], after[name]), name


def test_a_lora_checkpoint_loads_as_a_plain_llama_with_the_adapters_merged(tmp_path):
    from lavit.lm import load_multimodal_lm

    torch.manual_seed(0)
    model = MultimodalLM(lm=SMALL, trainable="lora", lora_rank=4, lora_alpha=12, lr=1e-2)
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, train_dataloaders=_loader())
    trainer.save_checkpoint(tmp_path / "lora.ckpt")
    loaded = load_multimodal_lm(tmp_path / "lora.ckpt")
    assert type(loaded).__name__ == "LlamaForCausalLM"
    ids = next(iter(_loader()))["input_ids"]
    model.lm.eval()
    with torch.no_grad():
        adapted = model.lm(input_ids=ids).logits  # peft's forward: base + dropout-free adapters
        with model.lm.disable_adapter():
            unadapted = model.lm(input_ids=ids).logits
        merged = loaded(input_ids=ids).logits
    assert (adapted - unadapted).abs().max() > 1e-3  # the adapters matter
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)


def test_predict_writes_one_json_line_per_prompt_with_well_formed_clips(tmp_path):
    torch.manual_seed(0)
    model = MultimodalLM(lm=SMALL, num_clips=2, max_keyframe_tokens=4, top_k=0)
    prompts = [{"prompt_ids": torch.tensor([5, 6, 7]), "caption": "a", "video_id": "x"},
               {"prompt_ids": torch.tensor([8]), "caption": "b", "video_id": "y"}]
    loader = DataLoader(prompts, batch_size=2, collate_fn=lambda items: {k: [i[k] for i in items] for k in items[0]})
    out = tmp_path / "gen.jsonl"
    trainer = pl.Trainer(accelerator="cpu", logger=False, callbacks=[GenerationWriter(str(out))], enable_progress_bar=False)
    trainer.predict(model, loader, return_predictions=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["video_id"] for r in records] == ["x", "y"]
    for r in records:
        assert len(r["keyframe_ids"]) == len(r["motion_ids"]) == 2
        assert all(1 <= len(k) <= 4 for k in r["keyframe_ids"]) and all(len(m) == 6 for m in r["motion_ids"])


def test_bad_settings_and_ids_are_named():
    with pytest.raises(ValueError, match="trainable must be"):
        MultimodalLM(lm=SMALL, trainable="some")
    model = MultimodalLM(lm=SMALL)
    batch = collate_padded(_samples(2), pad_id=0)
    batch["input_ids"][0, 1] = model.vocab.size + 3
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.training_step(batch, 0)
    long = {"input_ids": torch.zeros(1, 300, dtype=torch.long), "labels": torch.zeros(1, 300, dtype=torch.long)}
    with pytest.raises(ValueError, match="longer than the context of 256"):
        model.training_step(long, 0)


@pytest.fixture(scope="module")
def instruction_tokenizers(tmp_path_factory):
    """A random tiny keyframe tokenizer projecting to a 32-wide LM, and a random tiny motion tokenizer (20 x 36 field)."""
    from lavit.tokenizers import KeyframeTokenizer, KeyframeTokenizerConfig, MotionTokenizer, MotionTokenizerConfig
    from lavit.tokenizers.keyframe_loading import save_keyframe_tokenizer
    from lavit.tokenizers.loading import save_motion_tokenizer

    root = tmp_path_factory.mktemp("instruction_tokenizers")
    torch.manual_seed(0)
    keyframe = KeyframeTokenizer.with_encoder(KeyframeTokenizerConfig.from_name("tiny", llm_embed_dim=32)).eval()
    motion = MotionTokenizer(MotionTokenizerConfig.from_name("tiny")).eval()
    return {"keyframe": str(save_keyframe_tokenizer(keyframe, root / "keyframe.safetensors")),
            "motion": str(save_motion_tokenizer(motion, root / "motion.safetensors")),
            "visual_codes": keyframe.config.n_code, "motion_codes": motion.config.codebook_size, "motion_tokens": motion.num_tokens}


@pytest.mark.slow
def test_stage3_splices_image_and_video_media_and_learns_from_answers_only(data, instruction_tokenizers, tmp_path):
    """Instruction tuning on a conversation JSON (a rendered image, the real sample video, a text-only chat): the
    media enter as keyframe features and motion ids at the placeholders, and the loss reaches only answer tokens."""
    from datamodules.instructions import InstructionDataModule

    t = instruction_tokenizers
    dm = InstructionDataModule(train=str(data["good"]), tokenizer=str(data["tok_dir"]), image_size=56, batch_size=3,
                               val_fraction=0.0, max_clips=2)
    lm = dict(SMALL, text_size=len(data["tok"]), visual_codes=t["visual_codes"], motion_codes=t["motion_codes"],
              motion_tokens_per_clip=t["motion_tokens"], max_position_embeddings=1024)
    model = MultimodalLM(lm=lm, stage="instruct", keyframe_tokenizer_ckpt=t["keyframe"], motion_tokenizer_ckpt=t["motion"], lr=1e-3)
    dm.setup("fit")
    batch = dm.on_before_batch_transfer(next(iter(dm.train_dataloader())), 0)
    kinds = sorted(m["kind"] if m else "text" for m in batch["media"])
    assert kinds == ["image", "text", "video"]
    spliced = model.understanding_inputs(batch)
    # the labelled positions are the answers' tokens, unchanged, in order: media and prompts are never targets
    for row in range(3):
        before = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX]
        after = spliced["labels"][row][spliced["labels"][row] != IGNORE_INDEX]
        assert torch.equal(before, after) and len(after) > 0
    video_row = [m["kind"] if m else "text" for m in batch["media"]].index("video")
    clips = len(batch["media"][video_row]["motion"])
    extra = clips * (2 + 2 + t["motion_tokens"]) - 1  # per clip [IMG] .. [/IMG] [MOV] codes [/MOV], minus the placeholder
    assert int(spliced["attention_mask"][video_row].sum()) >= int(batch["attention_mask"][video_row].sum()) + extra
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "motion" not in {k.split(".")[0] for k in model.state_dict()}  # the frozen tokenizers are not saved
    assert all(k.startswith("lm.") for k in model.state_dict())


def test_stage3_video_without_a_motion_tokenizer_is_named(data, instruction_tokenizers):
    from datamodules.instructions import InstructionDataModule

    t = instruction_tokenizers
    dm = InstructionDataModule(train=str(data["good"]), tokenizer=str(data["tok_dir"]), image_size=56, batch_size=3,
                               val_fraction=0.0, max_clips=1)
    dm.setup("fit")
    batch = dm.on_before_batch_transfer(next(iter(dm.train_dataloader())), 0)
    lm = dict(SMALL, text_size=len(data["tok"]), visual_codes=t["visual_codes"], motion_codes=t["motion_codes"],
              motion_tokens_per_clip=t["motion_tokens"], max_position_embeddings=1024)
    model = MultimodalLM(lm=lm, stage="instruct", keyframe_tokenizer_ckpt=t["keyframe"])
    with pytest.raises(ValueError, match="needs the motion_tokenizer_ckpt checkpoint"):
        model.training_step(batch, 0)


@pytest.mark.slow
def test_stage3_predict_answers_the_memorised_conversations(data, instruction_tokenizers, tmp_path):
    """After fitting the three conversations, greedy answers to their last questions (media spliced in, left padding,
    text ids only) are the reference answers, written as JSON lines."""
    from datamodules.instructions import InstructionDataModule

    t = instruction_tokenizers
    dm = InstructionDataModule(train=str(data["good"]), test=str(data["good"]), tokenizer=str(data["tok_dir"]), image_size=56,
                               batch_size=3, val_fraction=0.0, max_clips=1)
    lm = dict(SMALL, text_size=len(data["tok"]), visual_codes=t["visual_codes"], motion_codes=t["motion_codes"],
              motion_tokens_per_clip=t["motion_tokens"], max_position_embeddings=1024)
    torch.manual_seed(0)
    model = MultimodalLM(lm=lm, stage="instruct", keyframe_tokenizer_ckpt=t["keyframe"], motion_tokenizer_ckpt=t["motion"], lr=1e-2,
                         max_answer_tokens=16)
    out = tmp_path / "answers.jsonl"
    trainer = pl.Trainer(max_steps=100, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0,
                         callbacks=[GenerationWriter(str(out))])
    trainer.fit(model, datamodule=dm)
    print("train loss", float(trainer.callback_metrics["train/loss"]))
    trainer.predict(model, datamodule=dm, return_predictions=False)
    records = {r["conversation_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(records) == ["img", "txt", "videos/v_7013"]
    for r in records.values():
        media_ids = [i for i in r["answer_ids"] if i >= model.vocab.text_size]
        assert not media_ids
        assert r["answer"] == r["reference"] and r["answer"], r
