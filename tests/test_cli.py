"""The console scripts as a user runs them (subprocesses of the installed entry points)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import: before capfd swaps it
import numpy as np
import pytest
from PIL import Image

from lavit.pipelines.extract import output_folder_name
from lavit.video.demo_data import make_demo_dataset
from lavit.video.synthetic import random_scene, write_video
from lightning_modules.cli import lavit_main, lightning_main
from tests.video.bad_inputs import write_bad_inputs

BIN = Path(sys.executable).parent


def _run(*args, cwd=None, timeout=300):
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_lightning_fit_help_and_print_config(tmp_path):
    r = _run("lightning", "fit", "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "--trainer.max_epochs" in r.stdout and "--model" in r.stdout
    r = _run("lightning", "fit", "--print_config", "--data", "VideoTextDataModule", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "class_path: datamodules.VideoTextDataModule" in r.stdout and "normalization: official" in r.stdout


def test_fabric_still_works(tmp_path):
    r = _run("fabric", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "run" in r.stdout


def test_fit_from_yaml_with_interpolation(tmp_path):
    cfg = tmp_path / "boring.yaml"
    cfg.write_text(
        "model:\n  class_path: lightning.pytorch.demos.boring_classes.BoringModel\n"
        "data:\n  class_path: lightning.pytorch.demos.boring_classes.BoringDataModule\n"
        "trainer:\n  max_steps: 3\n  limit_val_batches: ${trainer.max_steps}\n  accelerator: cpu\n"
        "  logger: false\n  enable_checkpointing: false\n  enable_progress_bar: false\n"
        f"  default_root_dir: {tmp_path}\n"
    )
    r = _run("lightning", "fit", "-c", str(cfg), "--print_config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "limit_val_batches: 3" in r.stdout  # OmegaConf resolved the interpolation
    for script in ("lightning", "lavit"):
        r = _run(script, "fit", "-c", str(cfg), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "max_steps=3` reached" in r.stderr + r.stdout


def test_lavit_extract_writes_clips_and_skips_bad(tmp_path, real_clip):
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out"
    r = _run("lavit", "extract", str(real_clip), str(bad), "-o", str(out), "--max-clips", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 clips from 1 videos" in r.stdout
    assert "broken.mp4" in r.stderr and "1 videos skipped" in r.stderr
    folder = out / output_folder_name(real_clip)
    meta = json.loads((folder / "clips.json").read_text())
    assert meta["motion_shape"] == [2, 24, 20, 36] and len(meta["starts"]) == 2
    motion = np.load(folder / "motion_00.npy")
    assert motion.shape == (2, 24, 20, 36) and np.abs(motion).max() > 0
    assert Image.open(folder / "keyframe_00.png").size == (320, 240)
    assert Image.open(folder / "motion_01.png").mode == "RGB"


def _lavit(capsys, *argv):
    """``lavit ARGV`` in this process (the console script's own function): (exit code, stderr lines)."""
    try:
        rc = lavit_main(list(map(str, argv)))
    except SystemExit as exit:
        rc = exit.code
    return rc, capsys.readouterr().err.strip().splitlines()


def _read_only_folder(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permissions: a folder no one can create files in
        return Path("/proc/self")
    return folder


@pytest.mark.parametrize("case, expected", [
    ("output is a file", "argument -o/--output-dir: output folder .*out.txt is a file"),
    ("output is read-only", "argument -o/--output-dir: output folder .* is not writable"),
    ("--fps 0", "argument --fps: must be > 0, got 0"),
    ("--fps -6", "argument --fps: must be > 0, got -6"),
    ("--max-clips -1", "argument --max-clips: must be >= 0, got -1"),
    ("--min-frames 0", "argument --min-frames: must be >= 1, got 0"),
    ("missing input", "input not found: .*nope.mp4"),
    ("empty folder", "no video files in .*empty \\(looked for .avi, "),
    ("folder without videos", "no video files in .*notes \\(looked for "),
])
def test_lavit_extract_bad_arguments_one_line_exit_2(tmp_path, real_clip, capsys, case, expected):
    (tmp_path / "out.txt").write_text("")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no videos here")
    argv = {"output is a file": [real_clip, "-o", tmp_path / "out.txt"],
            "output is read-only": [real_clip, "-o", _read_only_folder(tmp_path)],
            "missing input": [real_clip, tmp_path / "nope.mp4", "-o", tmp_path / "out"],
            "empty folder": [tmp_path / "empty", "-o", tmp_path / "out"],
            "folder without videos": [tmp_path / "notes", "-o", tmp_path / "out"]}.get(case)
    argv = argv or [real_clip, "-o", tmp_path / "out", *case.split()]
    rc, err = _lavit(capsys, "extract", *argv)
    assert rc == 2 and len(err) == 1, err  # one line, before any decoding (no progress bar)
    assert re.fullmatch(f"lavit extract: error: {expected}.*", err[0]), err[0]
    assert not list((tmp_path / "out").glob("*/clips.json")) if (tmp_path / "out").exists() else True


def test_lavit_extract_same_stem_inputs_and_reruns_never_mix(tmp_path, real_clip, capsys):
    a, b = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_bytes(real_clip.read_bytes())  # 3 clips by default
    demo = make_demo_dataset(tmp_path / "demo", num_videos=1, duration=4.0, fps=12, height=96, width=160, progress=False)
    b.write_bytes(next((demo.parent / "videos").glob("*.mp4")).read_bytes())  # 1 clip, 160 x 96
    out = tmp_path / "out"

    def folder_of(video):
        folder = out / output_folder_name(video)
        meta = json.loads((folder / "clips.json").read_text())
        keyframes = sorted(folder.glob("keyframe_*.png"))
        return meta, keyframes, sorted(folder.glob("motion_*.npy"))

    assert _lavit(capsys, "extract", a, "-o", out)[0] == 0  # separate runs, one output folder
    assert _lavit(capsys, "extract", b, "-o", out)[0] == 0
    assert len(list(out.iterdir())) == 2
    for video, n, size in ((a, 3, (320, 240)), (b, 1, (160, 96))):
        meta, keyframes, motion = folder_of(video)
        assert meta["source"] == str(video) and len(meta["starts"]) == len(keyframes) == len(motion) == n
        assert {Image.open(k).size for k in keyframes} == {size}
    assert output_folder_name(a) == output_folder_name(Path(os.path.relpath(a)))  # the same file, however named
    assert _lavit(capsys, "extract", a, "-o", out, "--max-clips", "1")[0] == 0  # rerun with fewer clips
    meta, keyframes, motion = folder_of(a)
    assert len(meta["starts"]) == len(keyframes) == len(motion) == 1
    assert len(list((out / output_folder_name(a)).glob("motion_*.png"))) == 1


def test_lavit_extract_all_bad_fails(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"")
    r = _run("lavit", "extract", str(bad), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 1 and "empty file" in r.stderr


def test_lavit_tokenize_and_reconstruct_motion(tmp_path, real_clip):
    import torch

    import lavit
    from lavit.video import extract_clips
    from tests.conftest import SHARED

    weights = SHARED / "reference" / "motion_tokenizer_tiny_parity.safetensors"
    out = tmp_path / "tokens.jsonl"
    r = _run("lavit", "tokenize", str(real_clip), "--checkpoint", str(weights), "--num-heads", "4", "--max-clips", "2", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]  # one per clip
    clips = extract_clips(real_clip, max_clips=2)
    expected = lavit.load_motion_tokenizer(weights, num_heads=4).tokenize(clips.motion)
    assert [(x["video"], x["clip"], x["start"]) for x in lines] == [(str(real_clip), k, s) for k, s in enumerate(clips.starts)]
    assert torch.equal(torch.tensor([x["motion_ids"] for x in lines]), expected)

    r = _run("lavit", "reconstruct-motion", str(real_clip), "--checkpoint", str(weights), "--num-heads", "4", "--max-clips", "2",
             "-o", str(tmp_path / "rec"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (folder,) = (tmp_path / "rec").iterdir()  # one folder per input
    assert np.load(folder / "motion_rec_01.npy").shape == (2, 24, 20, 36)
    assert Image.open(folder / "motion_rec.png").size[1] > 100

    r = _run("lavit", "tokenize", str(real_clip), "--checkpoint", str(tmp_path / "missing.bin"), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 2 and "missing.bin" in r.stderr and "motion_tokenizer.bin" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


ROOT = Path(__file__).resolve().parents[1]


def _lightning(capfd, *argv):
    """``lightning ARGV`` in this process: (exit code, stderr)."""
    try:
        rc = lightning_main(list(map(str, argv)))
    except SystemExit as exit:
        rc = exit.code
    return rc, capfd.readouterr().err


@pytest.fixture
def bad_videos(tmp_path, real_clip):
    bad = write_bad_inputs(real_clip, tmp_path / "bad")
    manifest = tmp_path / "all_bad.csv"
    manifest.write_text("video,caption\n" + "".join(f"{p},x\n" for p in bad.values()))
    return manifest


@pytest.mark.parametrize("case, expected", [
    ("missing manifest", "lightning fit: error: manifest not found: .*missing.csv"),
    ("bad datamodule argument", "lightning fit: error: need batch_size >= 1, .*got 0, 0, 1"),
    ("num_heads not dividing dim", "lightning fit: error: dim 32 is not divisible by num_heads 3"),
    ("all videos bad", r"lightning fit: error: no usable video in the set: 4 videos skipped as unreadable \(.*\)"),
    ("override below a preset name", r"lightning fit: error: --model.init_args.tokenizer.field_size overrides a field of the "
     r"preset name 'tiny' given for --model.init_args.tokenizer: a dotted override starts from the class defaults .*"),
    ("bad option value", r'lightning fit: error: Parser key "trainer.max_steps": Expected a .*int.* Got value: many \(see lightning fit --help\)'),
])
def test_lightning_fit_user_errors_print_one_line_exit_2(tmp_path, monkeypatch, capfd, bad_videos, case, expected):
    monkeypatch.chdir(tmp_path)
    extra = {"missing manifest": ["--data.init_args.train_manifest", tmp_path / "missing.csv"],
             "bad datamodule argument": ["--data.init_args.batch_size", "0"],
             "num_heads not dividing dim": ["--model.init_args.tokenizer.num_heads", "3"],
             "all videos bad": ["--data.init_args.train_manifest", bad_videos],
             # jsonargparse would build the paper-size tokenizer (158 M parameters) with field_size [8, 16]
             "override below a preset name": ["--model.init_args.tokenizer=tiny", "--model.init_args.tokenizer.field_size=[8,16]"],
             "bad option value": ["--trainer.max_steps", "many"]}[case]
    rc, err = _lightning(capfd, "fit", "-c", ROOT / "configs/motion_vqvae/tiny.yaml", "--trainer.default_root_dir", tmp_path, *extra)
    assert rc == 2 and "Traceback" not in err, err[-3000:]
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert re.fullmatch(expected, line), line


def test_error_in_init_is_unwrapped_from_jsonargparse_and_lavit_debug_reraises(tmp_path, monkeypatch, capfd):
    cfg = tmp_path / "no_metrics.yaml"
    cfg.write_text(f"model:\n  class_path: VideoEvaluator\n  init_args:\n    metrics: {{}}\ndata:\n  class_path: VideoFolderDataModule\n"
                   f"  init_args:\n    fake: {tmp_path}\ntrainer:\n  default_root_dir: {tmp_path}\n")
    rc, err = _lightning(capfd, "test", "-c", cfg)
    assert rc == 2 and "Traceback" not in err and "Union" not in err
    assert err.strip().splitlines()[-1] == "lightning test: error: give at least one metric"
    assert lavit_main(["test", "-c", str(cfg)]) == 2
    assert capfd.readouterr().err.strip().splitlines()[-1] == "lavit test: error: give at least one metric"
    monkeypatch.setenv("LAVIT_DEBUG", "1")
    with pytest.raises(ValueError, match="give at least one metric"):
        lightning_main(["test", "-c", str(cfg)])


def test_lightning_test_without_weights_prints_the_weights_message_alone(tmp_path):
    videos = tmp_path / "videos"
    scene, _ = random_scene(np.random.default_rng(0), height=64, width=64)
    write_video(scene, videos / "v.mp4", fps=8, duration=2.5)
    (tmp_path / "weights").mkdir()
    env = dict(os.environ, LAVIT_WEIGHTS_DIR=str(tmp_path / "weights"), FAKE_VIDEOS=str(videos), REAL_VIDEOS=str(videos))
    r = subprocess.run([str(BIN / "lightning"), "test", "-c", str(ROOT / "configs/eval/fvd.yaml")], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.startswith("lightning test: error: "), r.stderr[:500]  # the message alone
    message = r.stderr
    assert "rgb_imagenet.pt" in message.splitlines()[0] and "not found" in message.splitlines()[0]
    assert "obtain it from: " in message and str(tmp_path / "weights") in message  # the whole multi-line message
