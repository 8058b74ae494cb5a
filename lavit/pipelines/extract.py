"""Write keyframes, motion arrays and motion pictures for a set of videos (``lavit extract``)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lavit.video import VideoDecodeError, extract_clips
from lavit.video.flow_image import motion_clip_picture

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".gif", ".ts"})


def find_videos(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, plus video files found recursively in given folders (sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES))
        else:
            found.append(p)
    return found


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
    unreadable ones are logged and recorded in ``report.skipped``, readable ones in ``report.clips``."""
    for path in tqdm(find_videos(videos), desc=desc, unit="video", disable=not progress):
        try:
            clips = extract_clips(path, **options)
        except VideoDecodeError as err:
            report.skipped[str(path)] = err.reason
            log.warning("skipped %s", err)
            continue
        report.clips[str(path)] = len(clips)
        yield path, clips


def extract_to_folder(videos: Iterable[str | os.PathLike], output_dir: str | os.PathLike, progress: bool = True, **options) -> ExtractReport:
    """For each video, write ``<output_dir>/<stem>/`` with per clip ``k``:

    - ``keyframe_{k:02d}.png``: the clip's I-frame at source resolution;
    - ``motion_{k:02d}.npy``: (2, 24, 20, 36) float32 motion (``options`` as ``extract_clips``);
    - ``motion_{k:02d}.png``: the 24 fields colour-coded as optical flow, 6 per row;

    and ``clips.json`` (starts, fps, size). Unreadable videos are skipped and reported, not fatal.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    used: set[str] = set()
    for path, clips in iter_video_clips(videos, report, progress, "extract", **options):
        name = unique_name(path.stem, used)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(len(clips)):
            Image.fromarray(clips.keyframes[k]).save(folder / f"keyframe_{k:02d}.png")
            motion = clips.motion[k].numpy()
            np.save(folder / f"motion_{k:02d}.npy", motion)
            Image.fromarray(motion_clip_picture(motion)).save(folder / f"motion_{k:02d}.png")
        meta = {"source": str(path), "starts": clips.starts, "fps": clips.fps, "num_frames": clips.num_frames,
                "width": clips.width, "height": clips.height, "motion_shape": list(clips.motion.shape[1:])}
        (folder / "clips.json").write_text(json.dumps(meta, indent=2))
    return report


def unique_name(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... if an earlier video already took it."""
    name, i = stem, 1
    while name in used:
        i += 1
        name = f"{stem}_{i}"
    used.add(name)
    return name
