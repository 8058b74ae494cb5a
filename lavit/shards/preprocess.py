"""``lavit preprocess``: manifest records -> litdata shards of clips (``lavit.shards.format`` layout), via ``litdata.optimize``.

One litdata input per (video, clip index < ``max_clips``). litdata hands each worker (and each node:
``DATA_OPTIMIZER_NUM_NODES`` / ``DATA_OPTIMIZER_NODE_RANK``) a contiguous run of inputs, so a video's clip inputs
arrive together and the worker decodes the video once (:class:`ClipSamples` keeps the last one); clip indices past
the video's clips give no sample. The function returns one sample per input (not a generator) because litdata's
``use_checkpoint`` (resume after a kill without redoing written chunks) refuses generators; inputs are lists (they
survive litdata's JSON checkpoint config); a resumed run needs the same inputs and ``workers`` (litdata checks).
litdata 0.2.76 resumes each worker at ``inputs_done``, which counts *samples* (inputs that gave None are not
counted, and a sample larger than ``chunk_bytes`` is counted out), so on its own it redoes inputs whose samples are
already in a written chunk and duplicates them. :class:`ClipSamples` therefore logs, per worker, the input index of
every sample it returns (``<output>/.samples/<rank>.log``); a resumed worker keeps the first ``samples_written``
(litdata's checkpoint) entries and gives None for those inputs.
Strings are stored as ``litdata.Text``: litdata would store a plain str that names an existing file as the file.

Bad videos are skipped, never fatal: each is listed once with its reason in ``<output>/skipped.jsonl`` (per-process
files under ``<output>/.skipped/``, merged at the end). ``<output>/lavit_preprocess.json`` is written before the
run; a run into a folder holding other options raises :class:`ShardOptionsMismatchError` unless ``overwrite``.

Encodings (measured on a 320x192 demo video and the 320x240 MSR-VTT sample, 24 frames at 64x64 per clip):
keyframe PNG 96.4 / 38.7 kB, decode 1.9 / 1.2 ms, exact; JPEG q95 4:4:4 33.4 / 11.7 kB, 0.5 / 0.4 ms, max abs error
10 / 5, mean 1.43 / 0.51. PNG is the default: the keyframe is what the tokenizer reads, and 2 ms per sample is far
below a training step. Clip frames: lossless mp4 (libx264rgb qp 0) 166 / 95 kB, decode 84 / 34 ms; JPEG q95 per
frame 107 / 57 kB, 3.2 / 2.5 ms, max abs error 19 / 13, mean 2.6 / 1.15 (raw 295 kB): JPEG is the default (smaller
and 10-25x faster to decode; the detokenizer is trained on lossy web video anyway), ``frames_format="mp4"`` is exact.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lavit.shards.format import OPTIONS_FILE, ShardOptions, ShardOptionsMismatchError, encode_image, read_options, write_options
from lavit.video.defaults import CLIP_LEN, DEFAULT_FPS, DEFAULT_MAX_CLIPS, DEFAULT_MIN_FRAMES, FIELD_SIZE

log = logging.getLogger(__name__)

SKIPPED_FILE = "skipped.jsonl"
SAMPLE_LOGS = ".samples"
CLIP_OPTIONS = ("fps", "max_clips", "sampling", "normalization", "clip_len", "field_size", "min_frames")


@dataclass
class PreprocessReport:
    """What :func:`preprocess` wrote: the folder, samples in it, and ``{video: reason}`` for skipped inputs."""

    output_dir: Path
    num_samples: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def preprocess(
    records: Iterable[Any],
    output_dir: str | os.PathLike,
    stage: str,
    workers: int = 1,
    *,
    frame_size: tuple[int, int] | None = None,
    keyframe_format: str = "png",
    keyframe_quality: int = 95,
    frames_format: str = "jpeg",
    keyframe_tokenizer: str | os.PathLike | None = None,
    motion_tokenizer: str | os.PathLike | None = None,
    tokenizer_config: dict[str, Any] | None = None,
    images: bool = False,
    text_tokenizer: str | os.PathLike | None = None,
    overwrite: bool = False,
    chunk_bytes: str | int = "64MB",
    progress: bool = True,
    **options: Any,
) -> PreprocessReport:
    """Write litdata shards of ``stage`` samples for ``records`` into ``output_dir``.

    Args:
        records: ``(path, caption, id)`` tuples, or objects with ``path``, ``caption`` and ``video_id`` / ``image_id``
            (``datamodules.read_manifest`` / ``read_image_manifest`` rows).
        stage: ``"motion"``, ``"detokenizer"`` (needs ``frame_size`` (H, W)) or ``"tokens"`` (needs both tokenizers;
            with ``images=True`` the records are images and only the keyframe tokenizer is used; with
            ``text_tokenizer`` (a Llama-2 tokenizer folder) ``records`` is one text corpus path, ``lavit.shards.text``).
        workers: processes on this machine (litdata ``num_workers``).
        options: ``extract_clips`` settings (``fps``, ``max_clips`` (> 0), ``sampling``, ``normalization``,
            ``min_frames``, ...); for ``tokens`` the motion tokenizer checkpoint's, overridden by these.

    Raises:
        ShardOptionsMismatchError: ``output_dir`` holds shards (or a started run) made with other options.
        ValueError: a missing tokenizer / frame size, ``max_clips`` None or 0, an unknown stage.
    """
    import litdata

    if text_tokenizer is not None:
        shard_options, tokenizers = _text_options(stage, text_tokenizer, images, options)
    else:
        shard_options, tokenizers = _shard_options(stage, frame_size, keyframe_format, keyframe_quality, frames_format,
                                                   keyframe_tokenizer, motion_tokenizer, tokenizer_config, images, options)
    out = Path(output_dir)
    mode = _prepare_folder(out, shard_options, overwrite)
    report = PreprocessReport(out)
    if mode == "done":
        report.skipped = _merge_skipped(out)
        report.num_samples = _num_samples(out)
        return report
    write_options(out, shard_options)
    if text_tokenizer is not None:
        from lavit.shards.text import corpus_inputs

        items = corpus_inputs(records)
    else:
        items = [[*_record(r), k] for r in records for k in range(1 if images else shard_options.max_clips)]
    items = [[*item, g] for g, item in enumerate(items)]
    if not items:
        raise ValueError("no records to preprocess")
    fn = (TextSamples if text_tokenizer is not None else ClipSamples)(shard_options, tokenizers, str(out), images)
    # optimize forces the "spawn" start method on the whole process: put it back, or DataLoader workers started later
    # in this process would each import torch again (seen: a 2-worker streaming test 95 s instead of 8 s)
    start_method = multiprocessing.get_start_method(allow_none=True)
    try:
        litdata.optimize(fn=fn, inputs=items, output_dir=str(out), num_workers=workers, chunk_bytes=chunk_bytes,
                         use_checkpoint=True, keep_data_ordered=True, reorder_files=False, mode=mode, verbose=progress)
    finally:
        multiprocessing.set_start_method(start_method, force=True)
    shutil.rmtree(out / SAMPLE_LOGS, ignore_errors=True)  # litdata removed its checkpoints: the run is complete
    report.skipped = _merge_skipped(out)
    report.num_samples = _num_samples(out)
    return report


def _record(r: Any) -> tuple[str, str, str]:
    if isinstance(r, (tuple, list)):
        path, caption, rid = r
    else:
        path, caption, rid = r.path, r.caption, getattr(r, "video_id", None) or getattr(r, "image_id")
    return str(path), str(caption), str(rid)


def _shard_options(stage, frame_size, keyframe_format, keyframe_quality, frames_format, keyframe_tokenizer,
                   motion_tokenizer, tokenizer_config, images, options) -> tuple[ShardOptions, dict[str, Any]]:
    from lavit.weights import sha256_file

    unknown = sorted(set(options) - set(CLIP_OPTIONS))
    if unknown:
        raise ValueError(f"unknown preprocessing options {unknown}; known: {list(CLIP_OPTIONS)}")
    clip = dict(fps=DEFAULT_FPS, max_clips=DEFAULT_MAX_CLIPS, sampling="official", normalization="official",
                clip_len=CLIP_LEN, field_size=FIELD_SIZE, min_frames=DEFAULT_MIN_FRAMES)
    tokenizers: dict[str, Any] = {}
    if stage == "tokens":
        if keyframe_tokenizer is None or (motion_tokenizer is None and not images):
            raise ValueError("stage 'tokens' needs a keyframe tokenizer and (for videos) a motion tokenizer checkpoint")
        tokenizers = {"keyframe": str(keyframe_tokenizer), "config": dict(tokenizer_config or {})}
        if not images:
            from lavit.tokenizers.loading import clip_options, load_motion_tokenizer, read_motion_tokenizer_checkpoint

            saved = read_motion_tokenizer_checkpoint(motion_tokenizer)
            model = load_motion_tokenizer(saved, **(tokenizer_config or {}))
            clip = {k: v for k, v in clip_options(saved, model.config, **options).items() if k in CLIP_OPTIONS}
            tokenizers["motion"] = str(motion_tokenizer)
    elif stage == "detokenizer" and frame_size is None:
        raise ValueError("stage 'detokenizer' needs a frame size (--frame-size WxH)")
    clip.update({k: v for k, v in options.items() if v is not None})
    if not clip["max_clips"]:
        raise ValueError("preprocess needs max_clips > 0 (one litdata input per clip index)")
    hashes = {name: sha256_file(tokenizers[name]) for name in ("keyframe", "motion") if name in tokenizers}
    return ShardOptions(
        stage=stage, **clip, frame_size=frame_size if stage == "detokenizer" else None, keyframe_format=keyframe_format,
        keyframe_quality=keyframe_quality, frames_format=frames_format if stage == "detokenizer" else None, tokenizers=hashes,
    ), tokenizers


def _text_options(stage, text_tokenizer, images, options) -> tuple[ShardOptions, dict[str, Any]]:
    from lavit.shards.text import text_tokenizer_hash

    if stage != "tokens" or images:
        raise ValueError("a text corpus (text tokenizer given) needs stage 'tokens' and no images")
    unknown = sorted(k for k, v in options.items() if v is not None and k not in CLIP_OPTIONS)
    if unknown:
        raise ValueError(f"unknown preprocessing options {unknown}; known: {list(CLIP_OPTIONS)}")
    # clip options do not apply to text: the defaults are recorded so the DataModule's defaults accept the shards
    clip = dict(fps=DEFAULT_FPS, max_clips=DEFAULT_MAX_CLIPS, sampling="official", normalization="official",
                clip_len=CLIP_LEN, field_size=FIELD_SIZE, min_frames=DEFAULT_MIN_FRAMES)
    digest = text_tokenizer_hash(text_tokenizer)
    return ShardOptions(stage="tokens", **clip, tokenizers={"text": digest}), {"text": str(text_tokenizer)}


def _prepare_folder(out: Path, options: ShardOptions, overwrite: bool) -> str | None:
    """litdata ``mode`` for the run: None (new or resumed), ``"overwrite"`` or ``"done"`` (complete, same options)."""
    if not (out / OPTIONS_FILE).is_file():
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise ShardOptionsMismatchError(f"{out} is not empty and holds no {OPTIONS_FILE}: give an empty folder or --overwrite")
        return "overwrite" if overwrite and out.is_dir() else None
    if overwrite:
        shutil.rmtree(out / ".skipped", ignore_errors=True)
        (out / SKIPPED_FILE).unlink(missing_ok=True)
        return "overwrite"
    read_options(out).check_compatible(out, **{k: v for k, v in options.to_dict().items()})
    return "done" if (out / "index.json").is_file() else None


def _merge_skipped(out: Path) -> dict[str, str]:
    skipped: dict[str, str] = {}
    for part in sorted((out / ".skipped").glob("*.jsonl")):
        for line in part.read_text().splitlines():
            entry = json.loads(line)
            skipped.setdefault(entry["video"], entry["reason"])
    with open(out / SKIPPED_FILE, "w") as f:
        for video, reason in sorted(skipped.items()):
            f.write(json.dumps({"video": video, "reason": reason}) + "\n")
    return skipped


def _num_samples(out: Path) -> int:
    index = out / "index.json"
    return sum(c["chunk_size"] for c in json.loads(index.read_text())["chunks"]) if index.is_file() else 0


class ClipSamples:
    """litdata ``fn``: ``(path, caption, id, k, input index)`` -> the sample of clip ``k`` (``lavit.shards.format``),
    or None (no such clip, a bad video: listed in ``<output>/.skipped/<pid>.jsonl``, or already in a written chunk)."""

    def __init__(self, options: ShardOptions, tokenizers: dict[str, Any], output_dir: str, images: bool = False):
        self.options, self.tokenizers, self.output_dir, self.images = options, tokenizers, output_dir, images
        self.skipped_dir = os.path.join(output_dir, ".skipped")
        self._video: str | None = None
        self._samples: list[dict[str, Any]] = []
        self._models: tuple | None = None
        self._written: set[int] | None = None
        self._log = None

    def _start_log(self) -> None:
        """Keep the inputs of the samples litdata's checkpoint counts as written; log from there."""
        rank = os.environ.get("DATA_OPTIMIZER_GLOBAL_RANK", "0")
        checkpoint = Path(self.output_dir) / ".checkpoints" / f"checkpoint-{rank}.json"
        log = Path(self.output_dir) / SAMPLE_LOGS / f"{rank}.log"
        written: list[str] = []
        if checkpoint.is_file() and log.is_file():
            written = log.read_text().split()[: json.loads(checkpoint.read_text())["samples_written"]]
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(f"{g}\n" for g in written))
        self._written, self._log = {int(g) for g in written}, open(log, "a")

    def __call__(self, item: Sequence[Any]) -> dict[str, Any] | None:
        *args, g = item
        if self._written is None:
            self._start_log()
        if g in self._written:
            return None
        sample = self._sample(*args)
        if sample is not None:
            self._log.write(f"{g}\n")
            self._log.flush()
        return sample

    def _sample(self, path: str, caption: str, rid: str, k: int) -> dict[str, Any] | None:
        if path != self._video:
            self._video, self._samples = path, []
            try:
                self._samples = self._image(path) if self.images else self._clips(path)
            except Exception as err:  # a bad input is listed, never fatal (litdata would stop the whole run)
                self._skip(path, err)
        if k >= len(self._samples):
            return None
        # litdata stores a str naming an existing file as that file's bytes: Text keeps it a string
        from litdata import Text

        return {"video": Text(text=path), "video_id": Text(text=rid), "caption": Text(text=caption), **self._samples[k]}

    def _skip(self, path: str, err: Exception) -> None:
        from lavit.video import VideoDecodeError

        reason = err.reason if isinstance(err, VideoDecodeError) else f"{type(err).__name__}: {err}"
        log.warning("skipped %s: %s", path, reason)
        os.makedirs(self.skipped_dir, exist_ok=True)
        with open(os.path.join(self.skipped_dir, f"{os.getpid()}.jsonl"), "a") as f:
            f.write(json.dumps({"video": path, "reason": reason}) + "\n")

    def _load_models(self):
        if self._models is None:
            import torch

            from lavit.tokenizers.keyframe_loading import load_keyframe_tokenizer
            from lavit.tokenizers.loading import load_motion_tokenizer

            torch.set_num_threads(1)  # one process per core
            motion = None
            if "motion" in self.tokenizers:
                motion = load_motion_tokenizer(self.tokenizers["motion"], **self.tokenizers["config"]).eval()
            self._models = (load_keyframe_tokenizer(self.tokenizers["keyframe"]).eval(), motion)
        return self._models

    def _clips(self, path: str) -> list[dict[str, Any]]:
        from lavit.video import extract_clips

        o = self.options
        clips = extract_clips(path, fps=o.fps, max_clips=o.max_clips, sampling=o.sampling, normalization=o.normalization,
                              clip_len=o.clip_len, field_size=o.field_size, min_frames=o.min_frames, frame_size=o.frame_size)
        samples = [{"clip": k, "start": int(s)} for k, s in enumerate(clips.starts)]
        if o.stage == "tokens":
            import torch

            from lavit.pipelines.tokenize import keyframe_code_ids

            keyframes, motion = self._load_models()
            with torch.no_grad():
                motion_ids = torch.cat([motion.tokenize(m) for m in clips.motion.split(8)]).numpy()
            codes = keyframe_code_ids(keyframes, clips.keyframes)
            for s, kf, mo in zip(samples, codes, motion_ids):
                s.update(keyframe_ids=np.asarray(kf, np.int32), motion_ids=mo.astype(np.int32))
            return samples
        for k, s in enumerate(samples):
            s["keyframe"] = encode_image(clips.keyframes[k], o.keyframe_format, o.keyframe_quality)
            s["motion"] = clips.motion[k].numpy().astype(np.float16)
            if o.stage == "detokenizer":
                from lavit.shards.frames import encode_frames

                s["frames"] = encode_frames(clips.frames[k].numpy(), o)
        return samples

    def _image(self, path: str) -> list[dict[str, Any]]:
        from lavit.pipelines.tokenize import keyframe_code_ids
        from lavit.shards.format import decode_image

        keyframes, _ = self._load_models()
        rgb = decode_image(Path(path).read_bytes())
        return [{"clip": 0, "start": 0, "keyframe_ids": np.asarray(keyframe_code_ids(keyframes, rgb[None])[0], np.int32)}]


class TextSamples(ClipSamples):
    """litdata ``fn`` for a text corpus: ``(corpus, byte offset, line index, input index)`` -> the line's sample
    (``lavit.shards.text``), or None (an empty or unusable line: listed as ``"<corpus>:<line>"``)."""

    _tokenizer = None

    def _sample(self, corpus: str, offset: int, index: int) -> dict[str, Any] | None:
        from litdata import Text

        from lavit.shards.text import load_text_tokenizer, text_sample

        if self._tokenizer is None:
            self._tokenizer = load_text_tokenizer(self.tokenizers["text"])
        try:
            sample = text_sample(self._tokenizer, corpus, offset, index)
        except ValueError as err:  # EmptyDocumentError, a bad JSON line, not UTF-8
            self._skip(f"{corpus}:{index + 1}", ValueError("not UTF-8") if isinstance(err, UnicodeDecodeError) else err)
            return None
        return {"video": Text(text=corpus), "caption": Text(text=""), **sample, "video_id": Text(text=sample["video_id"])}
