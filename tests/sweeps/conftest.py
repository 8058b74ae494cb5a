import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from lavit.video.synthetic import random_scene, write_video

NUM_PROMPTS = 3


@pytest.fixture(scope="session")
def sweep_data(tmp_path_factory) -> Path:
    """3 real videos (20 frames, 96x128, 8 fps) with distinct captions: ``real/manifest.csv``, ``prompts.txt``."""
    root = tmp_path_factory.mktemp("sweep_data")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(NUM_PROMPTS):
        scene, caption = random_scene(rng, height=96, width=128)
        write_video(scene, root / "real" / f"real_{i}.mp4", fps=8, duration=2.5)
        rows.append({"video": f"real_{i}.mp4", "caption": f"{caption}, scene {i}", "video_id": f"real_{i}"})
    with open(root / "real" / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "caption", "video_id"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "prompts.txt").write_text("".join(r["caption"] + "\n" for r in rows))
    return root


def sweep_dict(data: Path, out: Path, **changes) -> dict:
    """A 2-point sweep (keyframe_guidance 1, 3) of the seeded ``NoisyReference`` generator, random-weight FVD/KVD."""
    network = {"class_path": "RandomVideoNetwork"}
    cfg = {
        "name": "test sweep",
        "prompts": {"file": str(data / "prompts.txt")},
        "real": str(data / "real" / "manifest.csv"),
        "grid": {"keyframe_guidance": [1.0, 3.0], "seed": [7]},
        "video": {"num_frames": 16, "fps": 8},
        "generator": {"class_path": "tests.sweeps.noisy_reference.NoisyReference",
                      "init_args": {"videos": str(data / "real" / "manifest.csv")}},
        "metrics": {"fvd": {"class_path": "metrics.FVD", "init_args": {"network": network}},
                    "kvd": {"class_path": "metrics.KVD", "init_args": {"subsets": 10, "subset_size": 3, "network": network}}},
        "evaluation": {"resolution": 32, "batch_size": 1},
        "reference": {"Video-LaVIT": {"fvd": 188.36}},
        "output_dir": str(out),
        "trainer": {"accelerator": "cpu"},
    }
    cfg.update(changes)
    return cfg


def write_sweep(data: Path, out: Path, path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump(sweep_dict(data, out, **changes)))
    return path
