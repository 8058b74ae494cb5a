"""The LM's text tokenizer: a local Llama-2 tokenizer folder, or a small byte-level BPE trained on the data's captions.

No tokenizer files can be downloaded here, so the tiny and demo configs train their own with the ``tokenizers``
library (:func:`train_text_tokenizer`, saved beside the checkpoint); the paper configs read the Llama-2 tokenizer from
a local folder (:func:`load_text_tokenizer`). Ours keeps Llama's special ids (0 ``<unk>``, 1 ``<s>``, 2 ``</s>``),
adds ``<s>`` in front of encoded text as Llama does (no ``</s>``), and starts from all 256 bytes, so any string
encodes and decodes back exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

LLAMA_TOKENIZER_HINT = ("the Llama-2 tokenizer comes with the meta-llama/Llama-2-7b-hf repository on the Hugging Face Hub "
                        "(tokenizer.json, tokenizer.model, tokenizer_config.json); or train one with "
                        "lavit.lm.text_tokenizer.train_text_tokenizer")
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2 as in Llama
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")  # a fast tokenizer file, or Llama's sentencepiece model


def train_text_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 1000, min_frequency: int = 2):
    """Train a byte-level BPE on ``texts`` and save it as a ``transformers`` tokenizer folder (``tokenizer.json`` +
    ``tokenizer_config.json``) in ``out_dir``; returns the loaded ``PreTrainedTokenizerFast``.

    ``len(tokenizer)`` is exactly ``vocab_size``: when the texts hold fewer merges, the rest are unused special tokens
    ``<unused_k>`` (so a config can state the LM's ``text_size`` before the tokenizer exists). The same texts in the same
    order always give the same ``tokenizer.json``.

    Raises:
        ValueError: ``vocab_size`` below 3 specials + 256 bytes, or no text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(SPECIAL_TOKENS) + len(alphabet):
        raise ValueError(f"vocab_size must hold the {len(SPECIAL_TOKENS)} special tokens and {len(alphabet)} bytes "
                         f"(>= {len(SPECIAL_TOKENS) + len(alphabet)}), got {vocab_size}")
    texts = [str(t) for t in texts]
    if not any(texts):
        raise ValueError("no text to train the tokenizer on")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() < vocab_size:
        tok.add_special_tokens([f"<unused_{i}>" for i in range(vocab_size - tok.get_vocab_size())])
    bos = tok.token_to_id("<s>")
    # Llama's convention: <s> before each encoded text (tokenizer(text)), nothing after
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<unk>", clean_up_tokenization_spaces=False, model_max_length=1 << 30)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return load_text_tokenizer(out_dir)


def load_text_tokenizer(path: str | os.PathLike):
    """A ``transformers`` tokenizer from a local folder: a Llama-2 tokenizer (``tokenizer.json`` / ``tokenizer.model``
    + ``tokenizer_config.json``) or one saved by :func:`train_text_tokenizer`; never downloads.

    Raises:
        FileNotFoundError: no such folder, or no tokenizer file in it (names the folder, the files looked for and
            where to get the Llama-2 tokenizer).
    """
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"text tokenizer folder not found: {path} ({LLAMA_TOKENIZER_HINT})")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"{path}: no tokenizer file (need one of {', '.join(TOKENIZER_FILES)}); {LLAMA_TOKENIZER_HINT}")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
