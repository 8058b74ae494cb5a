"""``lavit preprocess``: litdata shards that read back as ``extract_clips`` / ``lavit tokenize`` give them, resumable after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import: before capsys swaps it
import numpy as np
import pytest
import torch

from lavit.shards.format import decode_sample, read_options
from lavit.tokenizers import KeyframeTokenizer
from lavit.tokenizers.keyframe_loading import save_keyframe_tokenizer
from lavit.video import extract_clips
from lavit.video.demo_data import make_demo_dataset
from tests.conftest import SHARED
from tests.cli_runner import run_lavit

MOTION = SHARED / "reference" / "motion_tokenizer_tiny_parity.safetensors"  # needs --num-heads 4
F16_RTOL, F16_ATOL = 2.0**-11, 2.0**-25  # float16 rounding: half an ulp relative, half the smallest subnormal absolute


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """4 demo videos of 10 s (2 official clips each at 6 fps), 128 x 96, plus a missing file and a non-video."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, num_videos=4, duration=10.0, height=96, width=128, progress=False)
    (root / "videos" / "broken.mp4").write_bytes(b"this is not a video")
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    rows += [{"video": "videos/broken.mp4", "caption": "broken", "video_id": "broken"},
             {"video": "videos/missing.mp4", "caption": "missing", "video_id": "missing"}]
    path = root / "with_bad.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "caption", "video_id"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _good_videos(manifest):
    return [manifest.parent / "videos" / f"demo_{i:04d}.mp4" for i in range(4)]


def _lavit(capsys, *argv):
    rc, out, err = run_lavit(capsys, *argv)
    return rc, out, "\n".join(err)


def read_shards(folder):
    """{(video, clip): decoded sample} of a shard folder (litdata StreamingDataset + decode_sample)."""
    from litdata import StreamingDataset

    options = read_options(folder)
    dataset = StreamingDataset(str(folder))
    samples = [decode_sample(dataset[i], options) for i in range(len(dataset))]
    out = {(s["video"], s["clip"]): s for s in samples}
    assert len(out) == len(samples), "a clip was written twice"
    return out


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert sorted(a[key]) == sorted(b[key]), key
        for name, value in a[key].items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(b[key][name]), err_msg=f"{key} {name}")


def test_motion_shards_round_trip_and_bad_videos_listed(capsys, tmp_path, manifest):
    out = tmp_path / "motion"
    rc, stdout, err = _lavit(capsys, "preprocess", manifest, "-o", out, "--stage", "motion", "--max-clips", 2)
    assert rc == 0, err
    assert "wrote 8 samples" in stdout and "2 inputs skipped" in err
    skipped = {json.loads(line)["video"]: json.loads(line)["reason"] for line in (out / "skipped.jsonl").read_text().splitlines()}
    assert sorted(os.path.basename(v) for v in skipped) == ["broken.mp4", "missing.mp4"]
    assert all(skipped.values())
    shards = read_shards(out)
    assert len(shards) == 8
    for video in _good_videos(manifest):
        clips = extract_clips(video, max_clips=2)
        for k, start in enumerate(clips.starts):
            s = shards[(str(video), k)]
            assert (s["start"], s["video_id"]) == (start, video.stem) and s["caption"]
            np.testing.assert_array_equal(s["keyframe"], clips.keyframes[k])  # PNG: exact
            np.testing.assert_allclose(s["motion"], clips.motion[k].numpy(), rtol=F16_RTOL, atol=F16_ATOL)
    assert read_options(out).to_dict()["max_clips"] == 2

    rc, stdout, _ = _lavit(capsys, "preprocess", manifest, "-o", out, "--stage", "motion", "--max-clips", 2)
    assert rc == 0 and "wrote 8 samples" in stdout  # complete, same options: nothing to do
    rc, _, err = _lavit(capsys, "preprocess", manifest, "-o", out, "--stage", "motion", "--max-clips", 3)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "other options" in err and "max_clips: shards 2, requested 3" in err


@pytest.mark.slow
def test_detokenizer_frames_within_jpeg_loss_and_exact_as_mp4(capsys, tmp_path, manifest):
    from lavit.shards.preprocess import preprocess

    video = _good_videos(manifest)[0]
    clips = extract_clips(video, max_clips=2, frame_size=(32, 48))
    for fmt in ("jpeg", "mp4"):
        out = tmp_path / fmt
        report = preprocess([(video, "c", "v")], out, "detokenizer", frame_size=(32, 48), frames_format=fmt, max_clips=2, progress=False)
        assert report.num_samples == 2
        for k, s in enumerate(sorted(read_shards(out).values(), key=lambda s: s["clip"])):
            assert s["frames"].shape == (24, 3, 32, 48) and s["frames"].dtype == np.uint8
            error = np.abs(s["frames"].astype(int) - clips.frames[k].numpy().astype(int))
            if fmt == "mp4":
                assert error.max() == 0
            else:  # measured on the demo clips: max 19, mean 2.6 (README "Preprocessing at scale")
                assert error.max() <= 32 and error.mean() <= 4, (error.max(), error.mean())


@pytest.mark.slow
def test_token_shards_equal_lavit_tokenize(capsys, tmp_path, manifest):
    torch.manual_seed(0)
    keyframe = save_keyframe_tokenizer(KeyframeTokenizer.with_encoder("tiny").eval(), tmp_path / "kf.safetensors")
    videos = _good_videos(manifest)[:2]
    rows = [{"video": str(v), "caption": f"caption {i}", "video_id": v.stem} for i, v in enumerate(videos)]
    small = tmp_path / "two.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "tokens"
    rc, _, err = _lavit(capsys, "preprocess", small, "-o", out, "--stage", "tokens", "--max-clips", 2,
                        "--keyframe-tokenizer", keyframe, "--motion-tokenizer", MOTION, "--num-heads", 4)
    assert rc == 0, err
    rc, _, err = _lavit(capsys, "tokenize", *videos, "--checkpoint", MOTION, "--num-heads", 4, "--max-clips", 2,
                        "--keyframe-tokenizer", keyframe, "-o", tmp_path / "t.jsonl")
    assert rc == 0, err
    expected = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    shards = read_shards(out)
    assert len(shards) == len(expected) == 4
    for line in expected:
        s = shards[(line["video"], line["clip"])]
        assert s["start"] == line["start"] and s["caption"] == f"caption {videos.index(type(videos[0])(line['video']))}"
        assert s["keyframe_ids"].tolist() == line["keyframe_ids"] and s["motion_ids"].tolist() == line["motion_ids"]
        assert "keyframe" not in s and "motion" not in s
    options = read_options(out)
    from lavit.weights import sha256_file

    assert options.tokenizers == {"keyframe": sha256_file(keyframe), "motion": sha256_file(MOTION)}


@pytest.mark.slow
def test_image_text_manifest_gives_keyframe_ids_and_caption(capsys, tmp_path):
    from lavit.pipelines.tokenize import keyframe_code_ids
    from lavit.tokenizers.keyframe_loading import load_keyframe_tokenizer
    from PIL import Image

    torch.manual_seed(0)
    weights = save_keyframe_tokenizer(KeyframeTokenizer.with_encoder("tiny").eval(), tmp_path / "kf.safetensors")
    images = tmp_path / "images"
    images.mkdir()
    rgb = [np.random.default_rng(i).integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8) for i in range(2)]
    for i, x in enumerate(rgb):
        Image.fromarray(x).save(images / f"im{i}.png")
        (images / f"im{i}.txt").write_text(f"picture {i}")
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    rc, stdout, err = _lavit(capsys, "preprocess", images, "-o", out, "--stage", "tokens", "--images", "--keyframe-tokenizer", weights)
    assert rc == 0, err
    assert "wrote 2 samples" in stdout and "1 inputs skipped" in err
    assert [json.loads(x)["video"] for x in (out / "skipped.jsonl").read_text().splitlines()] == [str(images / "broken.png")]
    shards = read_shards(out)
    model = load_keyframe_tokenizer(weights)
    for i, x in enumerate(rgb):
        s = shards[(str(images / f"im{i}.png"), 0)]
        assert s["caption"] == f"picture {i}" and "motion_ids" not in s
        assert s["keyframe_ids"].tolist() == keyframe_code_ids(model, x[None])[0]


RUN = """
import sys
from lavit.shards.preprocess import preprocess
from datamodules.manifest import read_manifest
if __name__ == "__main__":
    preprocess(read_manifest(sys.argv[1]), sys.argv[2], "motion", int(sys.argv[3]), max_clips=2, chunk_bytes=30000)
"""


def _run(manifest, out, workers, kill_after_chunk=False):
    """Preprocess in a subprocess (chunks of ~1 clip); with ``kill_after_chunk``, SIGKILL its process group once a chunk
    file exists and return {chunk name: mtime} of the chunks written by then."""
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(manifest), str(out), str(workers)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not kill_after_chunk:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        return None
    deadline = time.monotonic() + 120
    # kill once a chunk is on disk and every worker has returned a sample (under load one worker can lag the other)
    while not (list(out.glob("chunk-*.bin")) and len(list((out / ".samples").glob("*.log"))) == workers):
        assert proc.poll() is None and time.monotonic() < deadline, "finished or stuck before the first chunk"
        time.sleep(0.02)
    time.sleep(0.1)  # let the checkpoint beside the chunk be written
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return {p.name: p.stat().st_mtime_ns for p in out.glob("chunk-*.bin")}


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_chunks_and_2_workers_equal_1(tmp_path, manifest):
    _run(manifest, tmp_path / "one", 1)
    reference = read_shards(tmp_path / "one")
    assert len(reference) == 8

    two = tmp_path / "two"
    _run(manifest, two, 2)
    _assert_same(read_shards(two), reference)

    killed = tmp_path / "killed"
    before = _run(manifest, killed, 2, kill_after_chunk=True)
    assert not (killed / "index.json").exists(), "the run finished before the kill"
    assert sorted(p.name for p in (killed / ".samples").glob("*.log")) == ["0.log", "1.log"]  # one log per litdata worker
    _run(manifest, killed, 2)
    after = {p.name: p.stat().st_mtime_ns for p in killed.glob("chunk-*.bin")}
    kept = {name for name, mtime in before.items() if after.get(name) == mtime}
    assert kept, f"every chunk written before the kill was written again: {before} -> {after}"
    _assert_same(read_shards(killed), reference)
    skipped = [json.loads(line)["video"] for line in (killed / "skipped.jsonl").read_text().splitlines()]
    assert sorted(os.path.basename(v) for v in skipped) == ["broken.mp4", "missing.mp4"]
