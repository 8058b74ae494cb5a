"""InstructionDataModule over a conversation JSON with a rendered image, the real sample video and broken files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.instructions import InstructionDataModule, NoUsableConversationsError
from lavit.lm.conversation import SEP2, NoConversationsError
from lavit.lm.placeholders import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from lavit.lm.sequences import IGNORE_INDEX
from lavit.lm.text_tokenizer import train_text_tokenizer
from lavit.video import extract_clips
from lavit.video.keyframes import CLIP_MEAN, CLIP_STD

ANSWERS = {"img": ["A red square on blue.", "Red."], "vid": ["People talk on a stage."], "txt": ["Hello there."]}


@pytest.fixture(scope="module")
def data(tmp_path_factory, real_clip):
    root = tmp_path_factory.mktemp("instr")
    picture = np.zeros((48, 64, 3), np.uint8)
    picture[..., 2] = 255
    picture[12:36, 16:48] = (255, 0, 0)
    Image.fromarray(picture).save(root / "square.png")
    (root / "videos").mkdir()
    (root / "videos" / "v_7013.mp4").symlink_to(real_clip)
    (root / "broken.png").write_text("not an image")
    records = [
        {"id": "img", "image": "square.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": ANSWERS["img"][0]},
            {"from": "human", "value": "Which colour is the square?"}, {"from": "gpt", "value": ANSWERS["img"][1]}]},
        {"video_id": "videos/v_7013", "q": "What happens in the video?", "a": ANSWERS["vid"][0]},  # Video-ChatGPT style
        {"id": "txt", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ANSWERS["txt"][0]}]},
    ]
    good = root / "conv.json"
    good.write_text(json.dumps(records))
    bad = root / "bad.json"
    bad.write_text(json.dumps([{"id": "gone", "image": "gone.png", "conversations": records[0]["conversations"]},
                               {"id": "broken", "image": "broken.png", "conversations": records[0]["conversations"]}]))
    mixed = root / "mixed.json"
    mixed.write_text(json.dumps(json.loads(bad.read_text()) + records))
    captions = [a for v in ANSWERS.values() for a in v] + ["What is shown? Which colour is the square?"]
    tok = train_text_tokenizer(captions * 4, root / "tokenizer", vocab_size=300)
    return {"root": root, "good": good, "bad": bad, "mixed": mixed, "tok": tok, "tok_dir": root / "tokenizer", "picture": picture}


def _epoch(dm, loader):
    return [dm.on_before_batch_transfer(b, 0) for b in loader]


def test_samples_media_and_answer_only_labels(data, real_clip):
    dm = InstructionDataModule(str(data["good"]), tokenizer=str(data["tok_dir"]), val=str(data["good"]), batch_size=3)
    dm.setup("fit")
    (batch,) = _epoch(dm, dm.val_dataloader())
    tok = data["tok"]
    assert batch["conversation_id"] == ["img", "videos/v_7013", "txt"]
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == mask.shape and ids.shape[0] == 3
    for row, key in enumerate(["img", "vid", "txt"]):
        n = int(mask[row].sum())
        assert (labels[row, n:] == IGNORE_INDEX).all() and (mask[row, :n] == 1).all()  # right padding
        row_ids, row_labels = ids[row, :n].tolist(), labels[row, :n].tolist()
        runs, cur = [], []
        for i, label in zip(row_ids, row_labels):
            if label != IGNORE_INDEX:
                cur.append(label)
            elif cur:
                runs, cur = runs + [cur], []
        runs += [cur] if cur else []
        # multi-turn: exactly the answers (+ their end separator) are labelled, nothing else
        assert [tok.decode(r).strip() for r in runs] == [a + SEP2 for a in ANSWERS[key]]
        assert row_ids[0] == tok.bos_token_id and row_ids.count(tok.bos_token_id) == 1
        placeholders = {"img": [IMAGE_PLACEHOLDER], "vid": [VIDEO_PLACEHOLDER], "txt": []}[key]
        assert [i for i in row_ids if i < 0] == placeholders
    image, video, text = batch["media"]
    assert text is None
    assert image["kind"] == "image" and image["keyframe"].shape == (3, 224, 224)
    centre = image["keyframe"][:, 112, 112] * torch.tensor(CLIP_STD) + torch.tensor(CLIP_MEAN)
    assert torch.allclose(centre, torch.tensor([1.0, 0.0, 0.0]), atol=0.02)  # the red square, CLIP-normalised
    clips = extract_clips(real_clip)
    assert video["kind"] == "video" and video["keyframes"].shape == (len(clips.motion), 3, 224, 224)
    assert torch.equal(video["motion"], clips.motion)  # the project's clip extraction, same clips
    assert dm.skipped == {}


def test_bad_media_skipped_counted_and_replaced(data):
    dm = InstructionDataModule(str(data["mixed"]), tokenizer=data["tok"], val=str(data["mixed"]), batch_size=5,
                               image_size=32, max_clips=1)
    dm.setup("fit")
    (batch,) = _epoch(dm, dm.val_dataloader())
    assert len(batch["conversation_id"]) == 5  # the two bad ones replaced by usable conversations
    assert set(batch["conversation_id"]) <= {"img", "videos/v_7013", "txt"}
    assert set(dm.skipped) == {str(data["root"] / "gone.png"), str(data["root"] / "broken.png")}
    assert dm.skipped[str(data["root"] / "gone.png")] == "missing file"
    assert "not an image" in dm.skipped[str(data["root"] / "broken.png")]
    images = [m for m in batch["media"] if m is not None and m["kind"] == "image"]
    assert images and images[0]["keyframe"].shape == (3, 32, 32)


def test_no_usable_or_empty_set_is_a_typed_error(data, tmp_path):
    dm = InstructionDataModule(str(data["bad"]), tokenizer=data["tok"], val=str(data["bad"]), batch_size=2)
    dm.setup("fit")
    with pytest.raises(NoUsableConversationsError, match="no usable media file.*2 media files skipped"):
        _epoch(dm, dm.val_dataloader())
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    dm = InstructionDataModule(str(empty), tokenizer=data["tok"])
    with pytest.raises(NoConversationsError, match="empty.json: no conversation records"):
        dm.setup("fit")
    with pytest.raises(FileNotFoundError, match="conversation file not found"):
        InstructionDataModule(str(tmp_path / "none.json"), tokenizer=data["tok"])
    with pytest.raises(FileNotFoundError, match="meta-llama/Llama-2-7b-hf"):
        InstructionDataModule(str(data["good"]), tokenizer=str(tmp_path / "no_tokenizer"))
