"""Instruction-tuning conversations in the official Vicuna v1 template, their token ids and answer-only labels.

Template (official ``conversation.py::default_conversation`` "v1", ``SeparatorStyle.TWO``): the system prompt, then
per turn ``"USER: " question " " "ASSISTANT: " answer SEP2`` with ``SEP2 = " \\\\n </s>"`` (a literal backslash-n, as
official), the media placeholder first in the first question followed by a real newline. Inference ends the prompt
with ``"ASSISTANT:"`` and cuts the answer at the literal 2-character ``\\n`` (official ``KeywordsStoppingCriteria``).

Ids: each placeholder becomes ``IMAGE_PLACEHOLDER`` (-200) / ``VIDEO_PLACEHOLDER`` (-201) and the text between is
tokenized chunk by chunk with ``<s>`` kept on the first chunk only (LLaVA ``tokenizer_image_token``). Labels: the ids of
each answer and its ``SEP2`` (so the LM learns to stop, ``</s>`` included); ``IGNORE_INDEX`` on ``<s>``, the system
prompt, questions, role tags and placeholders (LLaVA v1 masking). Which tokens belong to an answer is read from the
tokenizer's character offsets rather than LLaVA's per-round length arithmetic, which miscounts (its "tokenization
mismatch" warning) whenever a separator's tokens merge across the boundary.

Readers: LLaVA JSON (``[{"id", "image" | "video", "conversations": [{"from": "human" | "gpt", "value"}]}]``) and
Video-ChatGPT JSON (``[{"video_id" | "video" | "video_name", "q", "a"}]``, or ``"qa": [{"q", "a"}, ...]`` per video).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch

from lavit.lm.placeholders import IMAGE_PLACEHOLDER, PLACEHOLDER_TOKENS, VIDEO_PLACEHOLDER
from lavit.lm.sequences import IGNORE_INDEX, TokenSample

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
ROLES = ("USER", "ASSISTANT")
SEP = " "
SEP2 = " \\n </s>"  # literal backslash + n (official)
STOP = "\\n"  # the official stop keyword: backslash + n, 2 characters
MEDIA_TOKENS = {"image": "<image>", "video": "<video>"}
PLACEHOLDER_IDS = {"image": IMAGE_PLACEHOLDER, "video": VIDEO_PLACEHOLDER}
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
MediaKind = Literal["image", "video"]
_PLACEHOLDER_RE = re.compile("|".join(re.escape(t) for t in PLACEHOLDER_TOKENS))
_HUMAN, _GPT = ("human", "user"), ("gpt", "assistant")


class ConversationError(ValueError):
    """A malformed conversation record; the message names the file, the record and the problem."""


class TurnOrderError(ConversationError):
    """Turns that do not alternate question / answer (or a conversation without an answer)."""


class PlaceholderError(ConversationError):
    """A ``<image>`` / ``<video>`` placeholder without media, of the wrong kind, in an answer, or more than one."""


class MediaPathError(ConversationError):
    """A record whose media entry is empty or not a path."""


class NoConversationsError(ConversationError):
    """A conversation file without records."""


class MediaNotFoundError(FileNotFoundError):
    """A record's image or video file does not exist (names the record and the resolved path)."""


@dataclass(frozen=True)
class Conversation:
    """One record: ``turns`` = (question, answer) pairs, the first question starting with the media placeholder and a
    newline when there is media; ``media`` the resolved file (None: text only) and its ``kind``."""

    turns: tuple[tuple[str, str], ...]
    media: Path | None = None
    kind: MediaKind | None = None
    conversation_id: str = ""


# ---- template ---------------------------------------------------------------------------------
def render(turns: Sequence[tuple[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The training text of (question, answer) turns and the character span ``[start, end)`` of each answer + SEP2."""
    text, spans = SYSTEM + SEP, []
    for question, answer in turns:
        text += f"{ROLES[0]}: {question}{SEP}{ROLES[1]}: "
        spans.append((len(text), len(text) + len(answer) + len(SEP2)))
        text += answer + SEP2
    return text, spans


def build_prompt(question: str, media: MediaKind | None = "video", history: Sequence[tuple[str, str]] = ()) -> str:
    """The inference prompt: ``SYSTEM USER: <video>\\n{question} ASSISTANT:`` (official), after earlier
    (question, answer) turns of ``history`` if any; the placeholder goes in the first question."""
    turns = [*history, (question, None)]
    if media is not None:
        turns[0] = (f"{MEDIA_TOKENS[media]}\n{turns[0][0]}", turns[0][1])
    text = render(turns[:-1])[0]
    return f"{text}{ROLES[0]}: {turns[-1][0]}{SEP}{ROLES[1]}:"


def postprocess_answer(text: str) -> str:
    """The answer in a decoded generation: cut at the literal ``\\n`` stop keyword (official) or ``</s>``, stripped."""
    return text.split(STOP, 1)[0].split("</s>", 1)[0].strip()


# ---- ids and labels ---------------------------------------------------------------------------
def tokenize_prompt(prompt: str, tokenizer) -> list[int]:
    """LLaVA ``tokenizer_image_token``: the ids of ``prompt`` with each placeholder as its negative id and ``<s>``
    on the first chunk only."""
    return _tokenize(prompt, tokenizer, [])[0]


def encode_conversation(conversation: Conversation, tokenizer) -> TokenSample:
    """``TokenSample`` of a conversation: ids ``(L,)`` with placeholder ids, labels ``(L,)`` on answers + SEP2 only."""
    text, spans = render(conversation.turns)
    ids, labels = _tokenize(text, tokenizer, spans)
    return TokenSample(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long))


def _tokenize(text: str, tokenizer, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"need a fast (tokenizers-backed) tokenizer for character offsets, got {type(tokenizer).__name__}")
    ids: list[int] = []
    labels: list[int] = []
    pieces = _PLACEHOLDER_RE.split(text)
    marks = _PLACEHOLDER_RE.findall(text)
    start = 0
    for k, piece in enumerate(pieces):
        enc = tokenizer(piece, return_offsets_mapping=True)
        chunk, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
        if k > 0 and chunk and chunk[0] == tokenizer.bos_token_id:
            chunk, offsets = chunk[1:], offsets[1:]
        for token, (s, e) in zip(chunk, offsets):
            s, e = s + start, e + start
            answer = e > s and any(s < b and e > a for a, b in spans)
            ids.append(token)
            labels.append(token if answer else IGNORE_INDEX)
        start += len(piece)
        if k < len(marks):
            ids.append(PLACEHOLDER_TOKENS[marks[k]])
            labels.append(IGNORE_INDEX)
            start += len(marks[k])
    return ids, labels


# ---- readers ----------------------------------------------------------------------------------
def read_conversations(path: str | os.PathLike, media_root: str | os.PathLike | None = None,
                       check_media: bool = False) -> list[Conversation]:
    """Conversations of a LLaVA or Video-ChatGPT JSON (a list of records; ``.jsonl``: one record a line).

    Relative media paths resolve against ``media_root`` (default: the JSON's folder); a Video-ChatGPT ``video_id``
    without a suffix takes the first of ``VIDEO_SUFFIXES`` that exists (else ``.mp4``).

    Raises:
        FileNotFoundError: no such file. ConversationError (TurnOrderError, PlaceholderError, MediaPathError): a bad
            record, named; NoConversationsError: no record. MediaNotFoundError: with ``check_media``, a media file
            that does not exist.
        ValueError: not JSON or not a list of records.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conversation file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        records = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a list of conversation records (JSON objects)")
    if not records:
        raise NoConversationsError(f"{path}: no conversation records")
    root = Path(media_root) if media_root is not None else path.parent
    conversations = [_record(r, i, path, root) for i, r in enumerate(records)]
    if check_media:
        for c in conversations:
            if c.media is not None and not c.media.is_file():
                raise MediaNotFoundError(f"{path}: record {c.conversation_id!r}: {c.kind} file not found: {c.media}")
    return conversations


def _record(record: dict, index: int, path: Path, root: Path) -> Conversation:
    rid = str(record.get("id", record.get("video_id", record.get("video_name", index))))
    where = f"{path}: record {rid!r} (#{index})"
    if "conversations" in record:
        messages = record["conversations"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "from" in m and "value" in m for m in messages):
            raise ConversationError(f"{where}: 'conversations' must be a list of {{'from', 'value'}} turns")
        roles = [str(m["from"]).lower() for m in messages]
        values = [str(m["value"]) for m in messages]
        if roles and roles[0] in _GPT:  # LLaVA drops a leading answer
            roles, values = roles[1:], values[1:]
        for i, role in enumerate(roles):
            expected = _HUMAN if i % 2 == 0 else _GPT
            if role not in expected:
                raise TurnOrderError(f"{where}: turn {i} is from {role!r}, expected {expected[0]!r} (turns must alternate "
                                     "human / gpt, starting with human)")
        if len(values) % 2 or not values:
            raise TurnOrderError(f"{where}: {len(values)} turns; a conversation needs question / answer pairs, ending with an answer")
        turns = list(zip(values[0::2], values[1::2]))
        keys = [k for k in ("image", "video") if k in record]
    else:
        qa = record.get("qa", [record])
        if not isinstance(qa, list) or not qa:
            raise ConversationError(f"{where}: 'qa' must be a non-empty list of {{'q', 'a'}}")
        turns = []
        for i, pair in enumerate(qa):
            q, a = _get(pair, ("q", "Q", "question")), _get(pair, ("a", "A", "answer"))
            if q is None or a is None:
                raise TurnOrderError(f"{where}: QA pair {i} needs a question ('q') and an answer ('a'); found {sorted(pair)}")
            turns.append((str(q), str(a)))
        keys = [k for k in ("video", "video_id", "video_name") if k in record][:1]
    if len(keys) > 1:
        raise MediaPathError(f"{where}: both an image and a video; one media item per conversation")
    kind: MediaKind | None = None
    media = None
    if keys:
        kind = "image" if keys[0] == "image" else "video"
        value = record[keys[0]]
        if not isinstance(value, str) or not value.strip():
            raise MediaPathError(f"{where}: its {keys[0]!r} entry is {value!r}, not a file path")
        media = _resolve(Path(value), root, kind)
    return Conversation(_place_media(turns, kind, where), media, kind, rid)


def _get(pair, names):
    return next((pair[n] for n in names if isinstance(pair, dict) and n in pair), None)


def _resolve(rel: Path, root: Path, kind: MediaKind) -> Path:
    media = rel if rel.is_absolute() else root / rel
    if kind == "video" and not media.suffix and not media.exists():
        return next((media.with_name(media.name + s) for s in VIDEO_SUFFIXES if media.with_name(media.name + s).is_file()),
                    media.with_name(media.name + ".mp4"))
    return media


def _place_media(turns: list[tuple[str, str]], kind: MediaKind | None, where: str) -> tuple[tuple[str, str], ...]:
    """LLaVA ``preprocess_multimodal``: the placeholder moved (or added) to the front of the first question + newline."""
    found = [(i, m) for i, (q, _) in enumerate(turns) for m in _PLACEHOLDER_RE.findall(q)]
    if any(_PLACEHOLDER_RE.search(a) for _, a in turns):
        raise PlaceholderError(f"{where}: a placeholder in an answer (only questions may hold <image> / <video>)")
    if kind is None:
        if found:
            raise PlaceholderError(f"{where}: {found[0][1]} in turn {found[0][0]} but the record has no image or video")
        return tuple(turns)
    token = MEDIA_TOKENS[kind]
    if len(found) > 1:
        raise PlaceholderError(f"{where}: {len(found)} placeholders; one media item per conversation (official)")
    if found and found[0][1] != token:
        raise PlaceholderError(f"{where}: placeholder {found[0][1]} but the record's media is a {kind} ({token})")
    out = [(_PLACEHOLDER_RE.sub("", q).strip() if found and i == found[0][0] else q, a) for i, (q, a) in enumerate(turns)]
    out[0] = (f"{token}\n{out[0][0]}", out[0][1])
    return tuple(out)
