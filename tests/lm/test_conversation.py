"""Vicuna v1 conversations: the official template text, placeholder ids, answer-only labels, readers, typed errors."""

import json

import numpy as np
import pytest

from lavit.lm.conversation import (SEP2, SYSTEM, Conversation, MediaNotFoundError, MediaPathError, NoConversationsError,
                                   PlaceholderError, TurnOrderError, build_prompt, encode_conversation,
                                   postprocess_answer, read_conversations, render, tokenize_prompt)
from lavit.lm.placeholders import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from lavit.lm.sequences import IGNORE_INDEX
from lavit.lm.text_tokenizer import train_text_tokenizer
from lavit.video.synthetic import random_scene

OFFICIAL_PROMPT = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
                   "detailed, and polite answers to the user's questions. USER: <video>\nWhat is happening? ASSISTANT:")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    rng = np.random.default_rng(0)
    captions = [random_scene(rng)[1] for _ in range(32)] + [OFFICIAL_PROMPT]
    return train_text_tokenizer(captions, tmp_path_factory.mktemp("tok"), vocab_size=400)


def labelled_runs(sample):
    runs, cur = [], []
    for i, label in zip(sample.ids.tolist(), sample.labels.tolist()):
        if label != IGNORE_INDEX:
            assert label == i  # labels are the ids themselves (the LM shifts)
            cur.append(i)
        elif cur:
            runs, cur = runs + [cur], []
    return runs + [cur] if cur else runs


def test_official_template_strings():
    assert build_prompt("What is happening?") == OFFICIAL_PROMPT
    assert SEP2 == " \\n </s>" and len(SEP2) == 8  # a literal backslash-n, official
    text, spans = render([("<image>\nq1", "a1"), ("q2", "a2")])
    assert text == (SYSTEM + " USER: <image>\nq1 ASSISTANT: a1 \\n </s>USER: q2 ASSISTANT: a2 \\n </s>")
    assert [text[a:b] for a, b in spans] == ["a1 \\n </s>", "a2 \\n </s>"]
    assert build_prompt("q2", media="image", history=[("q1", "a1")]) == SYSTEM + " USER: <image>\nq1 ASSISTANT: a1 \\n </s>USER: q2 ASSISTANT:"
    assert build_prompt("q", media=None) == SYSTEM + " USER: q ASSISTANT:"


def test_answer_postprocessing_stops_at_literal_backslash_n():
    assert postprocess_answer(" It pans left. \\n </s>") == "It pans left."
    assert postprocess_answer("two\nlines \\n more") == "two\nlines"  # a real newline is not the stop keyword
    assert postprocess_answer("no stop</s>") == "no stop"


def test_placeholder_ids_and_bos_on_first_chunk_only(tok):
    ids = tokenize_prompt(OFFICIAL_PROMPT, tok)
    head, tail = OFFICIAL_PROMPT.split("<video>")
    assert ids.count(VIDEO_PLACEHOLDER) == 1 and ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    k = ids.index(VIDEO_PLACEHOLDER)
    assert ids[:k] == tok(head).input_ids and ids[k + 1:] == tok(tail, add_special_tokens=False).input_ids
    assert tokenize_prompt("<image> and <video>", tok).count(IMAGE_PLACEHOLDER) == 1


def test_multi_turn_labels_cover_exactly_the_answers(tok):
    answers = ["A textured block moves left.", "It pans up and right, slowly.", "No."]
    turns = (("<video>\nWhat moves?", answers[0]), ("And the camera?", answers[1]), ("Is it still?", answers[2]))
    sample = encode_conversation(Conversation(turns, kind="video"), tok)
    runs = labelled_runs(sample)
    assert [tok.decode(r).strip() for r in runs] == [a + SEP2 for a in answers]  # each answer + its end separator
    assert all(r[-1] == tok.eos_token_id for r in runs)  # "</s>" of SEP2 is the eos id: the LM learns to stop
    # everything else is unlabelled: the labelled ids are exactly the answers' own tokens
    n_answer_ids = sum(len(tok(" " + a + SEP2, add_special_tokens=False).input_ids) for a in answers)
    assert abs(sum(len(r) for r in runs) - n_answer_ids) <= len(answers)  # at most the leading space token each
    assert sample.labels[sample.ids == VIDEO_PLACEHOLDER].eq(IGNORE_INDEX).all()
    assert sample.labels[0] == IGNORE_INDEX and sample.ids[0] == tok.bos_token_id
    # the ids are those of the whole template text (placeholder split out), not of pieces tokenized apart
    assert sample.ids.tolist() == tokenize_prompt(render(turns)[0], tok)


def write(tmp_path, records, name="conv.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_llava_and_video_chatgpt_readers(tmp_path):
    (tmp_path / "img.png").write_bytes(b"")
    (tmp_path / "v_abc.mkv").write_bytes(b"")
    path = write(tmp_path, [
        {"id": "l1", "image": "img.png", "conversations": [
            {"from": "human", "value": "Describe it.\n<image>"}, {"from": "gpt", "value": "A block."},
            {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Grey."}]},
        {"id": "t1", "conversations": [{"from": "gpt", "value": "dropped"}, {"from": "human", "value": "Hi"},
                                       {"from": "gpt", "value": "Hello"}]},
        {"video_id": "v_abc", "q": "What happens?", "a": "It pans."},
        {"video": "v_abc.mkv", "qa": [{"q": "First?", "a": "One."}, {"Q": "Second?", "A": "Two."}]},
    ])
    c = read_conversations(path, check_media=True)
    assert c[0] == Conversation((("<image>\nDescribe it.", "A block."), ("Colour?", "Grey.")), tmp_path / "img.png", "image", "l1")
    assert c[1] == Conversation((("Hi", "Hello"),), None, None, "t1")  # leading answer dropped, as LLaVA
    assert c[2] == Conversation((("<video>\nWhat happens?", "It pans."),), tmp_path / "v_abc.mkv", "video", "v_abc")
    assert c[3].turns == (("<video>\nFirst?", "One."), ("Second?", "Two.")) and c[3].media == tmp_path / "v_abc.mkv"
    other = tmp_path / "elsewhere"
    assert read_conversations(path, media_root=other)[0].media == other / "img.png"


@pytest.mark.parametrize("record, error, match", [
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}, TurnOrderError, "turn 1 is from 'human'"),
    ({"conversations": [{"from": "human", "value": "a"}]}, TurnOrderError, "ending with an answer"),
    ({"conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}, PlaceholderError, "no image or video"),
    ({"image": "x.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image>"}]}, PlaceholderError, "in an answer"),
    ({"video": "x.mp4", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}, PlaceholderError, "is a video"),
    ({"image": "x.png", "conversations": [{"from": "human", "value": "<image><image>q"}, {"from": "gpt", "value": "a"}]}, PlaceholderError, "2 placeholders"),
    ({"image": "", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, MediaPathError, "not a file path"),
    ({"video_id": "v1", "q": "only a question"}, TurnOrderError, "needs a question"),
])
def test_bad_records_raise_typed_errors_naming_the_record(tmp_path, record, error, match):
    path = write(tmp_path, [{"id": "ok", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
                            {"id": "bad", **record}])
    with pytest.raises(error, match=match) as info:
        read_conversations(path)
    assert str(path) in str(info.value) and ("'bad'" in str(info.value) or "#1" in str(info.value))


def test_missing_media_file_and_bad_files(tmp_path):
    path = write(tmp_path, [{"id": "r", "image": "gone.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    assert read_conversations(path)[0].media == tmp_path / "gone.png"  # not checked by default (the DataModule skips it)
    with pytest.raises(MediaNotFoundError, match="'r'.*gone.png"):
        read_conversations(path, check_media=True)
    with pytest.raises(FileNotFoundError, match="conversation file not found"):
        read_conversations(tmp_path / "none.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_conversations(tmp_path / "broken.json")
    with pytest.raises(NoConversationsError, match="no conversation records"):
        read_conversations(write(tmp_path, []))
