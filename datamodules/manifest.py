"""Video + caption manifests: CSV / TSV, JSON lines or a JSON array, including WebVid's CSV columns."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_COLUMNS = ("video", "video_path", "path", "file", "filename", "file_name")
CAPTION_COLUMNS = ("caption", "text", "name", "title", "description")
ID_COLUMNS = ("video_id", "videoid", "id")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class VideoRecord:
    """One manifest row: where the video is, what it shows, and a stable id."""

    path: Path
    caption: str
    video_id: str


def read_manifest(
    manifest: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    video_column: str | None = None,
    caption_column: str | None = None,
    id_column: str | None = None,
    video_suffix: str = ".mp4",
) -> list[VideoRecord]:
    """Read a manifest of videos and captions.

    Formats, by suffix: ``.csv`` / ``.tsv`` (header row), ``.jsonl`` (one object per line) or ``.json``
    (an array of objects). Text is UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8").
    Columns are found by name unless given: video path from ``video``/``path``/... ; caption from
    ``caption``/``text``/``name``; id from ``video_id``/``videoid``/``id`` (default: the file stem).
    WebVid CSVs (``videoid``, ``name``, ``page_dir``) map to ``<video_root>/<page_dir>/<videoid>.mp4``.
    Relative paths resolve against ``video_root`` (default: the manifest's folder).

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: unknown format, text that is not UTF-8 (names the line), a JSON line or element that is
            not an object, no rows, or no usable video/caption column (names the columns found).
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    rows = _read_rows(manifest)
    root = Path(video_root) if video_root is not None else manifest.parent
    if not rows:
        raise ValueError(f"{manifest}: the manifest has no rows (an empty file, or a header only)")
    columns = list(rows[0].keys())
    webvid = video_column is None and "videoid" in columns and "page_dir" in columns
    vcol = video_column or _find(columns, VIDEO_COLUMNS)
    ccol = caption_column or _find(columns, CAPTION_COLUMNS)
    icol = id_column or _find(columns, ID_COLUMNS)
    if (vcol is None and not webvid) or ccol is None:
        raise ValueError(
            f"{manifest}: need a video column (one of {VIDEO_COLUMNS}, or WebVid's videoid + page_dir) and a "
            f"caption column (one of {CAPTION_COLUMNS}); found columns {columns}"
        )
    records = []
    for line, row in enumerate(rows, start=2):
        if webvid:
            rel = Path(str(row["page_dir"])) / f"{row['videoid']}{video_suffix}"
        else:
            if row.get(vcol) in (None, ""):
                raise ValueError(f"{manifest}: row {line} has no value in column {vcol!r}")
            rel = Path(str(row[vcol]))
        path = rel if rel.is_absolute() else root / rel
        video_id = str(row[icol]) if icol and row.get(icol) not in (None, "") else rel.stem
        records.append(VideoRecord(path=path, caption=str(row.get(ccol) or ""), video_id=video_id))
    return records


def _read_rows(manifest: Path) -> list[dict]:
    suffix = manifest.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            with open(manifest, newline="", encoding="utf-8-sig") as f:
                return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix in (".jsonl", ".ndjson"):
            with open(manifest, encoding="utf-8-sig") as f:
                return [_json_object(manifest, n, line) for n, line in enumerate(f, start=1) if line.strip()]
        if suffix == ".json":
            return _json_array(manifest, manifest.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ValueError(_decode_error_message(manifest)) from err
    raise ValueError(f"{manifest}: unknown manifest format {suffix!r} (use one of {', '.join(MANIFEST_SUFFIXES)})")


def _json_object(manifest: Path, n: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{manifest}: line {n} is not JSON ({err})") from err
    if not isinstance(row, dict):
        hint = " (a JSON array belongs in a .json file)" if isinstance(row, list) else ""
        raise ValueError(f"{manifest}: line {n} is a JSON {type(row).__name__}, not an object{hint}")
    return row


def _json_array(manifest: Path, text: str) -> list[dict]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{manifest}: not JSON ({err}); one object per line belongs in a .jsonl file") from err
    if not isinstance(rows, list):
        raise ValueError(f"{manifest}: a .json manifest must hold an array of objects, got a JSON {type(rows).__name__}")
    for k, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{manifest}: element {k} of the array is a JSON {type(row).__name__}, not an object")
    return rows


def _decode_error_message(manifest: Path) -> str:
    """Where the first byte that is not UTF-8 is (the text reader decodes in chunks, so look again)."""
    with open(manifest, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return (f"{manifest}: line {n} is not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                        "manifests are read as UTF-8: re-save it as UTF-8 (e.g. Excel's \"CSV UTF-8\")")
    return f"{manifest}: not UTF-8; manifests are read as UTF-8"


def _find(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[c] for c in candidates if c in lower), None)
