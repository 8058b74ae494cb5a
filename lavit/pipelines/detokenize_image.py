"""One image from keyframe code ids (``lavit detokenize-image``): the ids as text or from ``lavit tokenize`` output,
drawn by the keyframe detokenizer (``lavit.load_keyframe_detokenizer``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image

IDS_KEY = "keyframe_ids"  # what lavit tokenize writes per clip (lavit.pipelines.tokenize)
FILE_SUFFIXES = (".json", ".jsonl")


def _int_list(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where}: expected a non-empty list of integer code ids, got {json.dumps(value)[:80]}")
    return value


def _ids_in_file(path: Path, line: int | None) -> list[int]:
    """The ids of a .json file (a list, or an object with ``keyframe_ids``) or of line ``line`` (0-based) of a .jsonl file."""
    if not path.is_file():
        raise FileNotFoundError(f"ids file not found: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".jsonl":
        lines = [x for x in text.splitlines() if x.strip()]
        k = 0 if line is None else line
        if not 0 <= k < len(lines):
            raise ValueError(f"{path}: line {k} requested (0-based), the file has {len(lines)} lines")
        text, where = lines[k], f"{path} line {k}"
    elif line is not None:
        raise ValueError(f"{path}: --line applies to .jsonl files only")
    else:
        where = str(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not JSON ({err})") from None
    if isinstance(value, dict):
        if IDS_KEY not in value:
            raise ValueError(f"{where}: no {IDS_KEY!r} (run lavit tokenize with --keyframe-tokenizer); keys {sorted(value)}")
        value = value[IDS_KEY]
    return _int_list(value, where)


def parse_code_ids(text: str, line: int | None = None) -> list[int]:
    """Keyframe codebook ids from ``text``: a JSON list (``[3, 1, 4]``), a comma-separated list (``3,1,4``) or a path to a
    ``.json`` / ``.jsonl`` file (``lavit tokenize`` output: ``keyframe_ids`` of line ``line``, 0-based, default the first).

    Raises:
        FileNotFoundError: a file path that does not exist.
        ValueError: anything else that is not a non-empty list of integers, naming the input.
    """
    stripped = text.strip()
    if stripped.lower().endswith(FILE_SUFFIXES) or Path(text).is_file():
        return _ids_in_file(Path(text), line)
    if line is not None:
        raise ValueError("--line applies to a .jsonl file of ids only")
    if stripped.startswith("["):
        try:
            return _int_list(json.loads(stripped), "IDS")
        except json.JSONDecodeError as err:
            raise ValueError(f"IDS {stripped[:40]!r}: not a JSON list ({err})") from None
    parts = [p.strip() for p in stripped.split(",")]
    if not stripped or not all(p.lstrip("-").isdigit() for p in parts):
        raise ValueError(f"IDS {stripped[:40]!r}: expected a JSON list, comma-separated integers or a .json/.jsonl file")
    return [int(p) for p in parts]


def detokenize_image(
    code_ids: list[int],
    output: str | os.PathLike,
    detokenizer: str | os.PathLike,
    size: tuple[int, int] = (1024, 1024),
    guidance: float = 3.0,
    num_steps: int = 50,
    seed: int | None = 0,
    decoder_config: str = "paper",
    device: str = "cpu",
) -> Path:
    """Draw one image from ``code_ids`` (codebook ids, 1..256 of them) and write it as PNG ``(h, w)`` = ``size`` to ``output``.

    ``detokenizer`` is a Video-LaVIT root (``lavit.load_keyframe_detokenizer``); ``guidance``, ``num_steps`` and ``seed``
    go to ``KeyframeDetokenizerPipeline.generate``. Returns the PNG's path.

    Raises:
        lavit.detokenizer.MissingComponentError (a FileNotFoundError): a missing detokenizer file, named.
        ValueError: ids outside the codebook, more than 256 codes, a size that is not a multiple of the pipeline's.
    """
    from lavit.detokenizer.keyframe_pipeline import load_keyframe_detokenizer

    pipe = load_keyframe_detokenizer(detokenizer, decoder_config=decoder_config, device=device)
    with torch.no_grad():
        image = pipe.generate([torch.tensor(code_ids, dtype=torch.long)], size=size, guidance=guidance, num_steps=num_steps,
                              seed=seed).images[0]
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.cpu().numpy()).save(out, format="PNG")
    return out
