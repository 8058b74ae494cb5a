"""Text corpora for ``lavit preprocess --stage tokens --text``: documents -> LM text token ids (the Llama-2 tokenizer).

A corpus is a JSON-lines file (one object per line, the document in ``"text"``, its id in ``"id"`` when present) or
plain text (any other suffix: one document per line). One litdata input per line, ``[corpus, byte offset, line, g]``
(offsets, not the text, so litdata's checkpoint config stays small); the worker reads its line, and an empty line,
an invalid JSON line or one without a ``"text"`` string is skipped and listed as ``"<corpus>:<line>"`` (1-based).
Samples: ``"text_ids"`` np.int32 (n,) (``tokenizer(text)["input_ids"]``: the ids are the same in the LM's extended
vocabulary), ``"video"`` the corpus path, ``"video_id"`` the document id (``"id"``, else the 1-based line number),
``"caption"`` ``""``, ``"clip"`` the 0-based line index, ``"start"`` 0.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt")
WHERE = "the tokenizer files of meta-llama/Llama-2-7b-hf on the Hugging Face Hub (tokenizer.model, tokenizer_config.json, ...)"


class EmptyDocumentError(ValueError):
    """A corpus line holds no document."""


def text_tokenizer_hash(folder: str | os.PathLike) -> str:
    """SHA-256 over the tokenizer files of ``folder`` (names and contents, sorted by name).

    Raises:
        FileNotFoundError: the folder is missing or holds none of ``TOKENIZER_FILES``, naming it and where to get one.
    """
    from lavit.weights import sha256_file

    path = Path(folder)
    files = sorted(name for name in TOKENIZER_FILES if (path / name).is_file())
    if not files:
        state = "holds no tokenizer files" if path.is_dir() else "not found"
        raise FileNotFoundError(f"text tokenizer folder {path} {state}: give a Llama-2 tokenizer folder, {WHERE}")
    digest = hashlib.sha256()
    for name in files:
        digest.update(f"{name}\0{sha256_file(path / name)}\n".encode())
    return digest.hexdigest()


def load_text_tokenizer(folder: str | os.PathLike):
    """``transformers.AutoTokenizer`` of a local folder (never downloads)."""
    from transformers import AutoTokenizer

    text_tokenizer_hash(folder)  # the one-line error for a missing folder
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def corpus_inputs(corpus: str | os.PathLike) -> list[list[Any]]:
    """``[[corpus, byte offset, line index], ...]``: one per line of ``corpus`` (FileNotFoundError naming it)."""
    path = Path(corpus)
    if not path.is_file():
        raise FileNotFoundError(f"text corpus {path} not found")
    inputs, offset = [], 0
    with open(path, "rb") as f:
        for k, line in enumerate(f):
            inputs.append([str(path), offset, k])
            offset += len(line)
    return inputs


def read_document(corpus: str, offset: int, index: int) -> tuple[str, str]:
    """(document id, text) of the line at ``offset`` (:class:`EmptyDocumentError` / ValueError for an unusable line)."""
    with open(corpus, "rb") as f:
        f.seek(offset)
        line = f.readline().decode("utf-8").rstrip("\r\n")
    doc_id = str(index + 1)
    if Path(corpus).suffix.lower() in (".jsonl", ".json"):
        if not line.strip():
            raise EmptyDocumentError("empty line")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"not a JSON line ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError('no "text" string')
        line, doc_id = record["text"], str(record.get("id", doc_id))
    if not line.strip():
        raise EmptyDocumentError("empty document")
    return doc_id, line


def text_sample(tokenizer: Any, corpus: str, offset: int, index: int) -> dict[str, Any]:
    """The shard sample of one corpus line (keys in the module docstring, strings still plain ``str``)."""
    doc_id, text = read_document(corpus, offset, index)
    ids = np.asarray(tokenizer(text)["input_ids"], dtype=np.int32)
    return {"video_id": doc_id, "clip": index, "start": 0, "text_ids": ids}
