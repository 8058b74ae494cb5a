"""The embedded default dataset: procedurally rendered videos with captions, no download needed."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lavit.video.synthetic import random_scene, write_video

MANIFEST = "manifest.csv"


def make_demo_dataset(
    root: str | os.PathLike,
    num_videos: int = 16,
    seed: int = 0,
    duration: float = 8.0,
    fps: float = 12.0,
    height: int = 192,
    width: int = 320,
    max_speed: float = 30.0,
    max_pan_speed: float | None = None,
    progress: bool = True,
) -> Path:
    """Render ``num_videos`` camera-pan + moving-object videos into ``root`` and return the manifest.

    Writes ``root/videos/demo_XXXX.mp4`` (H.264), ``root/manifest.csv`` (columns ``video``,
    ``caption``, ``video_id``; paths relative to ``root``) and ``root/motion_truth.json`` (pan and
    object velocity of each video in px/s; each component uniform in +-``max_speed``, the pan's in +-``max_pan_speed``, default the same, 0 = a still camera). The same arguments always give the same files; an
    existing complete dataset with the same arguments is reused.
    """
    root = Path(root)
    manifest = root / MANIFEST
    stamp = root / ".demo_args.json"
    args = dict(num_videos=num_videos, seed=seed, duration=duration, fps=fps, height=height, width=width, max_speed=max_speed,
                max_pan_speed=max_pan_speed)
    if manifest.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == args:
        return manifest
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for i in tqdm(range(num_videos), desc="demo videos", unit="video", disable=not progress):
        scene, caption = random_scene(rng, height=height, width=width, max_speed=max_speed, max_pan_speed=max_pan_speed)
        video_id = f"demo_{i:04d}"
        write_video(scene, root / "videos" / f"{video_id}.mp4", fps=fps, duration=duration)
        rows.append({"video": f"videos/{video_id}.mp4", "caption": caption, "video_id": video_id})
        truth[video_id] = {"pan": list(scene.pan), "object_velocity": list(scene.objects[0].velocity)}
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "caption", "video_id"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "motion_truth.json").write_text(json.dumps(truth, indent=2))
    stamp.write_text(json.dumps(args))
    return manifest
