"""The small text tokenizer trained on the embedded captions, and loading a local tokenizer folder."""

import numpy as np
import pytest

from lavit.lm import MultimodalVocabulary
from lavit.lm.text_tokenizer import load_text_tokenizer, train_text_tokenizer
from lavit.video.synthetic import random_scene


@pytest.fixture(scope="module")
def captions():
    rng = np.random.default_rng(0)  # the captions of make_demo_dataset(seed=0), without rendering the videos
    return [random_scene(rng)[1] for _ in range(32)]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, captions):
    out = tmp_path_factory.mktemp("tok")
    train_text_tokenizer(captions, out, vocab_size=400)
    return out


def test_saved_as_transformers_folder_with_llama_specials(tokenizer_dir):
    assert (tokenizer_dir / "tokenizer.json").is_file() and (tokenizer_dir / "tokenizer_config.json").is_file()
    tok = load_text_tokenizer(tokenizer_dir)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<unk>", "<s>", "</s>"]
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert len(tok) == 400  # specials + 256 bytes + merges learnt from the captions, padded with unused ids
    ids = tok("a textured block").input_ids
    assert ids[0] == 1 and 2 not in ids  # <s> in front, no </s> (Llama)


def test_captions_and_unseen_text_round_trip(tokenizer_dir, captions):
    tok = load_text_tokenizer(tokenizer_dir)
    for text in captions + ["Ünïcode 東京 \\n tabs\tand\nnewlines  double  spaces", "?!"]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert 0 not in ids  # byte fallback: nothing is unknown
        assert tok.decode(ids) == text
    mean = np.mean([len(tok(c, add_special_tokens=False).input_ids) / len(c) for c in captions])
    assert mean < 0.35  # merges learnt: far fewer ids than characters (1.0 = bytes only)


def test_deterministic(tmp_path, captions, tokenizer_dir):
    train_text_tokenizer(captions, tmp_path, vocab_size=400)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (tokenizer_dir / name).read_bytes()


def test_extend_with_media_ids_on_the_layout(tokenizer_dir):
    tok = load_text_tokenizer(tokenizer_dir)
    text_size = len(tok)
    vocab = MultimodalVocabulary(text_size=text_size, visual_codes=32, motion_codes=16)
    vocab.extend_tokenizer(tok)
    assert len(tok) == vocab.size == text_size + 2 + 32 + 2 + 16
    assert tok.convert_tokens_to_ids(["[IMG]", "[/IMG]", "<v_0>", "<v_31>", "[MOV]", "[/MOV]", "<m_0>", "<m_15>"]) == [
        vocab.img_start, vocab.img_end, vocab.visual_offset, vocab.visual_offset + 31, vocab.mov_start, vocab.mov_end,
        vocab.motion_offset, vocab.size - 1]
    assert vocab.img_start == text_size  # media ids come right after the text ids
    # text still tokenizes to text ids only
    assert max(tok("a textured block moves left").input_ids) < text_size


def test_missing_folder_or_file_names_it_and_the_llama_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*meta-llama/Llama-2-7b-hf"):
        load_text_tokenizer(tmp_path / "nowhere")
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*tokenizer.json.*meta-llama/Llama-2-7b-hf"):
        load_text_tokenizer(tmp_path)


def test_bad_arguments(tmp_path, captions):
    with pytest.raises(ValueError, match="vocab_size"):
        train_text_tokenizer(captions, tmp_path, vocab_size=100)
    with pytest.raises(ValueError, match="no text"):
        train_text_tokenizer([], tmp_path)
