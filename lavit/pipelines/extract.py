"""Write keyframes, motion arrays and motion pictures for a set of videos (``lavit extract``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lavit.video import VideoDecodeError, extract_clips
from lavit.video.flow_image import motion_clip_picture

log = logging.getLogger(__name__)

CLIP_FILES = ("keyframe_[0-9]*.png", "motion_[0-9]*.npy", "motion_[0-9]*.png", "clips.json")  # what extract writes per input
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".gif", ".ts"})


def find_videos(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, plus video files found recursively in given folders (sorted; each file once).

    Raises:
        FileNotFoundError: a path does not exist.
    """
    found: dict[Path, Path] = {}
    for p in map(Path, paths):
        if p.is_dir():
            videos = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES)
        elif p.exists():
            videos = [p]
        else:
            raise FileNotFoundError(f"input not found: {p}")
        for q in videos:
            found.setdefault(q.resolve(), q)
    return list(found.values())


@dataclass
class ExtractReport:
    """What ``extract_to_folder`` did: clips written per video and the files it skipped, with why."""

    clips: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def num_clips(self) -> int:
        return sum(self.clips.values())


def iter_video_clips(videos: Iterable[str | os.PathLike], report: ExtractReport, progress: bool = True, desc: str = "videos", **options):
    """Yield ``(path, VideoClips)`` for each readable video (``find_videos`` order, with a progress bar);
    unreadable ones are logged and recorded in ``report.skipped``, readable ones in ``report.clips``.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: the inputs hold no video file (empty folders, say).
    """
    inputs = [Path(v) for v in videos]
    paths = find_videos(inputs)
    suffixes = ", ".join(sorted(VIDEO_SUFFIXES))
    if not paths:
        raise ValueError(f"no video files in {', '.join(map(str, inputs)) or 'the inputs'} (looked for {suffixes})")
    for folder in inputs:
        if folder.is_dir() and not any(p.is_relative_to(folder) for p in paths):
            log.warning("no video files (%s) in folder %s", suffixes, folder)
    for path in tqdm(paths, desc=desc, unit="video", disable=not progress):
        try:
            clips = extract_clips(path, **options)
        except VideoDecodeError as err:
            report.skipped[str(path)] = err.reason
            log.warning("skipped %s", err)
            continue
        report.clips[str(path)] = len(clips)
        yield path, clips


def extract_to_folder(videos: Iterable[str | os.PathLike], output_dir: str | os.PathLike, progress: bool = True, **options) -> ExtractReport:
    """For each video, write ``<output_dir>/<output_folder_name(video)>/`` with per clip ``k``:

    - ``keyframe_{k:02d}.png``: the clip's I-frame at source resolution;
    - ``motion_{k:02d}.npy``: (2, 24, 20, 36) float32 motion (``options`` as ``extract_clips``);
    - ``motion_{k:02d}.png``: the 24 fields colour-coded as optical flow, 6 per row;

    and ``clips.json`` (source, starts, fps, size); clip files of an earlier run in that folder are
    removed first. Unreadable videos are skipped and reported, not fatal.

    Raises:
        NotADirectoryError, PermissionError: ``output_dir`` cannot be written (checked before decoding).
        FileNotFoundError, ValueError: as ``iter_video_clips``.
    """
    out = check_output_dir(output_dir)
    report = ExtractReport()
    for path, clips in iter_video_clips(videos, report, progress, "extract", **options):
        folder = out / output_folder_name(path)
        folder.mkdir(parents=True, exist_ok=True)
        for pattern in CLIP_FILES:
            for stale in folder.glob(pattern):
                stale.unlink()
        for k in range(len(clips)):
            Image.fromarray(clips.keyframes[k]).save(folder / f"keyframe_{k:02d}.png")
            motion = clips.motion[k].numpy()
            np.save(folder / f"motion_{k:02d}.npy", motion)
            Image.fromarray(motion_clip_picture(motion)).save(folder / f"motion_{k:02d}.png")
        meta = {"source": str(path), "starts": clips.starts, "fps": clips.fps, "num_frames": clips.num_frames,
                "width": clips.width, "height": clips.height, "motion_shape": list(clips.motion.shape[1:])}
        (folder / "clips.json").write_text(json.dumps(meta, indent=2))
    return report


def output_folder_name(video: str | os.PathLike) -> str:
    """The per-input output folder: ``<stem>_<8 hex digits of the resolved path's SHA-1>``.

    Stable across runs and distinct for ``a/clip.mp4`` and ``b/clip.mp4``, so two inputs never share a folder.
    """
    path = Path(video)
    return f"{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create ``output_dir`` if needed and check that files can be written in it.

    Raises:
        NotADirectoryError: it (or a parent) is a file.
        PermissionError: no file can be created in it.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except (FileExistsError, NotADirectoryError) as err:
        raise NotADirectoryError(f"output folder {out}: a parent is a file") from err
    except OSError as err:
        raise PermissionError(f"output folder {out} is not writable ({err.strerror})") from err
    return out
