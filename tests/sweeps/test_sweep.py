"""``lavit sweep`` end to end on 3 real videos, 2 grid points, random-weight FVD / KVD networks: resume after an
interruption, 1 process against 2 (gloo DDP), tables, plots and the oracle row (real against real)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lavit.sweeps import load_sweep_config
from lavit.video.frames import read_frames
from lightning_modules.sweep import run_sweep
from tests.sweeps.conftest import NUM_PROMPTS, write_sweep
from tests.pipelines.pipeline_fixtures import VIDEO_SIZE, pipeline_config  # noqa: F401  (session fixture)
from tests.sweeps.noisy_reference import NoisyReference

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def single_run(sweep_data, tmp_path_factory):
    """The uninterrupted 1-process sweep: its output folder and its returned rows."""
    root = tmp_path_factory.mktemp("single")
    out = run_sweep(write_sweep(sweep_data, root / "out", root / "sweep.yaml"), progress=False)
    return root / "out", out


def test_table_rows_plots_and_paper_row(single_run):
    out_dir, out = single_run
    rows = out["rows"]
    assert [r["kind"] for r in rows] == ["sweep", "sweep", "paper"]  # grid size 2 + 1 reference row
    assert [r["keyframe_guidance"] for r in rows[:2]] == [1.0, 3.0] and all(r["videos"] == NUM_PROMPTS for r in rows[:2])
    assert rows[2]["fvd"] == 188.36 and rows[2]["kvd"] is None
    # more noise (std 4 * guidance) moves the generated set further from the real one
    assert 0 < rows[0]["fvd"] < rows[1]["fvd"]
    with open(out_dir / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 and table[0]["networks"] == "random-weight networks (fvd, kvd)"
    assert "random-weight networks" in (out_dir / "results.md").read_text().splitlines()[0]
    plots = sorted((out_dir / "plots").glob("*.png"))
    assert [p.name for p in plots] == ["fvd_vs_keyframe_guidance.png", "kvd_vs_keyframe_guidance.png"]
    for p in plots:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 0 and im.height > 0
    # manifest in the form VideoFolderDataModule reads, videos of the protocol length
    with open(out_dir / "kg1_seed7" / "manifest.csv") as f:
        manifest = list(csv.DictReader(f))
    assert [m["video"] for m in manifest] == [f"videos/{i:05d}.mp4" for i in range(NUM_PROMPTS)]
    assert read_frames(out_dir / "kg1_seed7" / manifest[0]["video"], 16, size=None).shape == (16, 3, 96, 128)


def test_interrupted_sweep_resumes_without_regenerating(sweep_data, single_run, tmp_path):
    config = write_sweep(sweep_data, tmp_path / "out", tmp_path / "sweep.yaml")
    NoisyReference.calls = 0
    assert run_sweep(config, max_new_videos=4, progress=False) is None  # "killed" after 4 of the 6 videos
    assert NoisyReference.calls == 4 and not (tmp_path / "out" / "results.md").exists()
    done = sorted((tmp_path / "out").glob("*/videos/*.mp4"))
    assert len(done) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    (done[0].parent.parent / "kg3_seed7" / "videos").mkdir(parents=True, exist_ok=True)
    stale = tmp_path / "out" / "kg3_seed7" / "videos" / ".tmp-1-00002.mp4"  # a write the kill cut short
    stale.write_bytes(b"partial")
    NoisyReference.calls = 0
    out = run_sweep(config, progress=False)
    assert NoisyReference.calls == 2 and sum(out["generated"].values()) == 2
    assert {p: p.stat().st_mtime_ns for p in done} == mtimes
    for name in ("results.md", "results.csv", "results.json"):
        assert (tmp_path / "out" / name).read_text() == (single_run[0] / name).read_text(), name
    NoisyReference.calls = 0
    run_sweep(config, progress=False)  # everything there: nothing generated
    assert NoisyReference.calls == 0


@pytest.mark.slow
def test_two_process_sweep_matches_one_process(sweep_data, single_run, tmp_path):
    config = write_sweep(sweep_data, tmp_path / "out", tmp_path / "sweep.yaml")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "lightning_modules.cli", "sweep", "-c", str(config), "--devices", "2",
                        "--accelerator", "cpu", "--no-progress"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in ("results.md", "results.csv", "results.json"):
        assert (tmp_path / "out" / name).read_text() == (single_run[0] / name).read_text(), name
    # per-item seeds: the same frames whichever process generated an item
    for i in range(NUM_PROMPTS):
        one = read_frames(single_run[0] / "kg3_seed7" / "videos" / f"{i:05d}.mp4", 16, size=None)
        two = read_frames(tmp_path / "out" / "kg3_seed7" / "videos" / f"{i:05d}.mp4", 16, size=None)
        assert (one == two).all()


def test_reference_videos_are_the_oracle_row(sweep_data, tmp_path):
    """ReferenceVideos against the same real videos: FVD ~ 0 (only the re-encoding differs); StillKeyframe's
    frozen frames are far from them."""
    manifest = str(sweep_data / "real" / "manifest.csv")
    fvd = {}
    for name in ("ReferenceVideos", "StillKeyframe"):
        config = write_sweep(sweep_data, tmp_path / name, tmp_path / f"{name}.yaml", grid={"seed": [0]},
                             generator={"class_path": name, "init_args": {"videos": manifest}}, reference={})
        fvd[name] = run_sweep(config, progress=False)["rows"][0]["fvd"]
    assert fvd["ReferenceVideos"] < 0.01 * fvd["StillKeyframe"]


def test_long_video_tail_protocol(sweep_data, tmp_path):
    """real: tail compares the first and the last frames of each generated video (the long-video KVD)."""
    config = write_sweep(sweep_data, tmp_path / "out", tmp_path / "sweep.yaml", real="tail", grid={"seed": [0]},
                         generator={"class_path": "StillKeyframe", "init_args": {"videos": str(sweep_data / "real" / "manifest.csv")}},
                         video={"num_clips": 2, "num_frames": 32, "fps": 8}, reference={})
    cfg = load_sweep_config(config)
    assert cfg.real_is_tail
    rows = run_sweep(cfg, progress=False)["rows"]
    tails = sorted((tmp_path / "out" / "seed0" / "tail").glob("*.mp4"))
    assert len(tails) == NUM_PROMPTS and read_frames(tails[0], 16, size=None).shape[0] == 16
    assert read_frames(tmp_path / "out" / "seed0" / "videos" / "00000.mp4", 32, size=None).shape[0] == 32  # 24 + 23, cut to 32
    assert len(rows) == 1 and abs(rows[0]["fvd"]) < 1e-3  # a still video: first and last frames are the same frame


@pytest.mark.slow
def test_sweep_over_the_text_to_video_pipeline(sweep_data, pipeline_config, tmp_path):
    """The default generator: TextToVideoPipeline from a pipeline config (the tiny random components), a grid over
    keyframe guidance; every prompt gets a 24-frame video of the pipeline's size and fps, and every point a row."""
    config = write_sweep(sweep_data, tmp_path / "out", tmp_path / "sweep.yaml", generator=None,
                         grid={"checkpoint": [str(pipeline_config)], "keyframe_guidance": [1.0, 50.0], "video_steps": [2],
                               "seed": [0]}, video={"num_clips": 1})
    out = run_sweep(config, progress=False)
    rows = [r for r in out["rows"] if r["kind"] == "sweep"]
    assert len(rows) == 2 and all(r["videos"] == NUM_PROMPTS and r["fvd"] >= 0 for r in rows)
    folders = sorted(p for p in (tmp_path / "out").iterdir() if (p / "manifest.csv").is_file())
    assert len(folders) == 2
    for folder in folders:
        with open(folder / "manifest.csv") as f:
            manifest = list(csv.DictReader(f))
        assert len(manifest) == NUM_PROMPTS
        video = read_frames(folder / manifest[0]["video"], 24, size=None)
        assert video.shape == (24, 3, *VIDEO_SIZE)
