"""Text corpora -> ``--stage tokens --text`` shards, with a tiny tokenizer trained here (``tokenizers`` WordLevel)."""

from __future__ import annotations

import json

import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import: before capsys swaps it
import pytest
import torch

from lavit.shards.format import read_options
from lavit.shards.text import text_tokenizer_hash
from tests.shards.test_preprocess import _lavit, read_shards

DOCS = ["the cat sat on the mat", "a dog ran after the cat", "the mat was red", "birds sang"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A PreTrainedTokenizerFast folder: WordLevel over ``DOCS`` with [UNK] and a BOS prepended (as Llama's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(DOCS, trainers.WordLevelTrainer(special_tokens=["[UNK]", "<s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    folder = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>").save_pretrained(folder)
    return folder


def _corpora(tmp_path):
    jsonl = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"text": DOCS[0], "id": "d0"}), "", json.dumps({"text": DOCS[1]}), "not json",
             json.dumps({"text": DOCS[2] + " zebra"}), json.dumps({"title": "no text"})]
    jsonl.write_text("\n".join(lines) + "\n")
    txt = tmp_path / "corpus.txt"
    txt.write_text(f"{DOCS[0]}\n\n{DOCS[3]}\n   \n{DOCS[1]}\n")
    return jsonl, txt


@pytest.mark.slow
def test_text_corpus_ids_equal_tokenizer_and_empty_lines_listed(capsys, tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    jsonl, txt = _corpora(tmp_path)
    expected = {
        jsonl: ({0: ("d0", DOCS[0]), 2: ("3", DOCS[1]), 4: ("5", DOCS[2] + " zebra")}, [2, 4, 6]),
        txt: ({0: ("1", DOCS[0]), 2: ("3", DOCS[3]), 4: ("5", DOCS[1])}, [2, 4]),
    }
    for corpus, (docs, skipped_lines) in expected.items():
        out = tmp_path / f"out_{corpus.suffix[1:]}"
        rc, stdout, err = _lavit(capsys, "preprocess", corpus, "-o", out, "--stage", "tokens", "--text", "--text-tokenizer", tokenizer_dir)
        assert rc == 0, err
        assert f"wrote {len(docs)} samples" in stdout and f"{len(skipped_lines)} inputs skipped" in err
        skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
        assert sorted(s["video"] for s in skipped) == sorted(f"{corpus}:{n}" for n in skipped_lines)
        assert all(s["reason"] for s in skipped)
        shards = read_shards(out)
        assert sorted(shards) == [(str(corpus), k) for k in sorted(docs)]
        for k, (doc_id, text) in docs.items():
            s = shards[(str(corpus), k)]
            assert s["video_id"] == doc_id and s["caption"] == "" and set(s) >= {"text_ids"}
            assert "keyframe_ids" not in s and "motion_ids" not in s
            assert s["text_ids"].dtype.name == "int64" and s["text_ids"].tolist() == tokenizer(text)["input_ids"]
        assert tokenizer(DOCS[2] + " zebra")["input_ids"][-1] == tokenizer.unk_token_id  # an unknown word: still a sample
        assert read_options(out).tokenizers == {"text": text_tokenizer_hash(tokenizer_dir)}


def test_streaming_datamodule_gives_text_ids_lists(capsys, tmp_path, tokenizer_dir):
    from datamodules import StreamingClipDataModule
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    _, txt = _corpora(tmp_path)
    out = tmp_path / "shards"
    rc, _, err = _lavit(capsys, "preprocess", txt, "-o", out, "--stage", "tokens", "--text", "--text-tokenizer", tokenizer_dir)
    assert rc == 0, err
    dm = StreamingClipDataModule(str(out), val_dir=str(out), batch_size=2, shuffle=False, drop_last=False)
    batches = list(dm.val_dataloader())
    assert [len(b["video_id"]) for b in batches] == [2, 1]
    want = {"1": DOCS[0], "3": DOCS[3], "5": DOCS[1]}
    for b in batches:
        assert set(b) == {"text_ids", "caption", "video_id"} and isinstance(b["text_ids"], list)
        for vid, ids in zip(b["video_id"], b["text_ids"]):
            assert ids.dtype == torch.int64 and ids.shape == (len(tokenizer(want[vid])["input_ids"]),)
            assert ids.tolist() == tokenizer(want[vid])["input_ids"]


def test_missing_tokenizer_folder_is_one_line_naming_it_and_where_to_get_it(capsys, tmp_path):
    _, txt = _corpora(tmp_path)
    missing = tmp_path / "llama2_tokenizer"
    rc, _, err = _lavit(capsys, "preprocess", txt, "-o", tmp_path / "out", "--stage", "tokens", "--text", "--text-tokenizer", missing)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert str(missing) in err and "meta-llama/Llama-2-7b-hf" in err
    rc, _, err = _lavit(capsys, "preprocess", txt, "-o", tmp_path / "out", "--stage", "motion", "--text", "--text-tokenizer", missing)
    assert rc == 2 and "--text needs --stage tokens" in err
