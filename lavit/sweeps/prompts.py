"""Prompt sets read from files the user provides: MSR-VTT test captions (CSV / JSONL), UCF-101 class
prompts or EvalCrafter prompts (.txt, one per line), each repeated ``videos_per_prompt`` times."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

CAPTION_COLUMNS = ("caption", "sentence", "text", "prompt", "name", "title")
ID_COLUMNS = ("video_id", "videoid", "id")


@dataclass(frozen=True)
class PromptItem:
    """One video to generate: its index in the set, the prompt, and the id the evaluation matches on."""

    index: int
    caption: str
    video_id: str


def read_prompts(path: str | os.PathLike, videos_per_prompt: int = 1, num_videos: int | None = None,
                 template: str = "{}") -> list[PromptItem]:
    """The items of a prompt file, prompt by prompt, each repeated ``videos_per_prompt`` times.

    ``.txt``: one prompt per line (blank lines skipped); ``.csv`` / ``.tsv`` / ``.jsonl``: a caption column
    (one of ``CAPTION_COLUMNS``) and an optional id column (``ID_COLUMNS``). ``num_videos`` keeps the first
    that many items (the protocol's count: 2990 for MSR-VTT) and is an error when the file has fewer.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown format, no caption column, an empty prompt, no prompts, or fewer than ``num_videos``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    rows = _rows(path)
    if not rows:
        raise ValueError(f"{path}: no prompts")
    items = []
    for line, (caption, video_id) in rows:
        if not caption.strip():
            raise ValueError(f"{path}: line {line} has an empty prompt")
        base = video_id or f"{len(items) // videos_per_prompt:05d}"
        for k in range(videos_per_prompt):
            vid = base if videos_per_prompt == 1 else f"{base}_{k:02d}"
            items.append(PromptItem(len(items), template.format(caption.strip()), vid))
    if num_videos is not None:
        if len(items) < num_videos:
            raise ValueError(f"{path}: {len(items)} videos ({len(rows)} prompts x {videos_per_prompt}) but the protocol "
                             f"needs {num_videos}; set prompts.num_videos to evaluate fewer")
        items = items[:num_videos]
    ids = [i.video_id for i in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: video ids repeat (e.g. {next(v for v in ids if ids.count(v) > 1)!r})")
    return items


def _rows(path: Path) -> list[tuple[int, tuple[str, str | None]]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            return [(n, (text, None)) for n, text in enumerate(lines, start=1) if text.strip()]
        if suffix in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8-sig") as f:
                records = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
            return _columns(path, [(n, r) for n, r in enumerate(records, start=2)])
        if suffix in (".jsonl", ".ndjson"):
            records = []
            for n, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
                if text.strip():
                    try:
                        obj = json.loads(text)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}: line {n} is not JSON ({err})") from err
                    if not isinstance(obj, dict):
                        raise ValueError(f"{path}: line {n} is a JSON {type(obj).__name__}, not an object")
                    records.append((n, obj))
            return _columns(path, records)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from err
    raise ValueError(f"{path}: unknown prompt file format {suffix!r} (use .txt, .csv, .tsv or .jsonl)")


def _columns(path: Path, records: list[tuple[int, dict]]) -> list[tuple[int, tuple[str, str | None]]]:
    if not records:
        return []
    lower = {str(c).lower(): c for c in records[0][1]}
    ccol = next((lower[c] for c in CAPTION_COLUMNS if c in lower), None)
    icol = next((lower[c] for c in ID_COLUMNS if c in lower), None)
    if ccol is None:
        raise ValueError(f"{path}: need a caption column (one of {CAPTION_COLUMNS}); found columns {list(records[0][1])}")
    return [(n, (str(r.get(ccol) or ""), str(r[icol]) if icol and r.get(icol) not in (None, "") else None)) for n, r in records]
