"""``lavit tokenize --keyframe-tokenizer``: one JSON line per clip with the keyframe's codebook ids beside the motion ids."""

import json

import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import: before capsys swaps it
import pytest
import torch

import lavit
from lavit.tokenizers import KeyframeTokenizer
from lavit.tokenizers.keyframe_loading import save_keyframe_tokenizer
from lavit.video import extract_clips
from lavit.video.keyframes import CLIP_MEAN, CLIP_STD
from tests.conftest import SHARED
from tests.cli_runner import run_lavit

MOTION = SHARED / "reference" / "motion_tokenizer_tiny_parity.safetensors"  # needs --num-heads 4


@pytest.fixture(scope="module")
def keyframe_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = KeyframeTokenizer.with_encoder("tiny").eval()  # 56 x 56 input, 64 codes
    return save_keyframe_tokenizer(model, tmp_path_factory.mktemp("kf") / "kf.safetensors")


def _tokenize(capsys, tmp_path, real_clip, name, *extra):
    out = tmp_path / name
    rc, stdout, err = run_lavit(capsys, "tokenize", real_clip, "--checkpoint", MOTION, "--num-heads", 4, "--max-clips", 2, *extra, "-o", out)
    assert rc == 0, err
    assert "2 clips from 1 videos" in stdout
    return [json.loads(x) for x in out.read_text().splitlines()]


def _reference_ids(weights, keyframes):
    """The tokenizer called directly: keyframes resized (bicubic, antialiased) to 56 x 56 and CLIP-normalised here."""
    x = torch.as_tensor(keyframes).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(56, 56), mode="bicubic", antialias=True).clamp(0, 1)
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return [ids.tolist() for ids in lavit.load_keyframe_tokenizer(weights).tokenize(x, selection="deterministic")]


def test_one_line_per_clip_with_keyframe_and_motion_ids(capsys, tmp_path, real_clip, keyframe_weights):
    lines = _tokenize(capsys, tmp_path, real_clip, "a.jsonl", "--keyframe-tokenizer", keyframe_weights)
    clips = extract_clips(real_clip, max_clips=2)
    assert [(x["video"], x["clip"], x["start"]) for x in lines] == [(str(real_clip), k, s) for k, s in enumerate(clips.starts)]
    assert [list(x) for x in lines] == [["video", "clip", "start", "keyframe_ids", "motion_ids"]] * 2
    motion = lavit.load_motion_tokenizer(MOTION, num_heads=4).tokenize(clips.motion)
    assert [x["motion_ids"] for x in lines] == motion.tolist()
    expected = _reference_ids(keyframe_weights, clips.keyframes)
    assert [x["keyframe_ids"] for x in lines] == expected
    assert all(1 <= len(ids) <= 16 and 0 <= min(ids) and max(ids) < 64 for ids in expected)
    assert lines[0]["keyframe_ids"] != lines[1]["keyframe_ids"]  # two different keyframes, two different token sets
    assert _tokenize(capsys, tmp_path, real_clip, "b.jsonl", "--keyframe-tokenizer", keyframe_weights) == lines  # reproducible


def test_without_keyframe_tokenizer_no_keyframe_ids(capsys, tmp_path, real_clip):
    lines = _tokenize(capsys, tmp_path, real_clip, "m.jsonl")
    assert [list(x) for x in lines] == [["video", "clip", "start", "motion_ids"]] * 2


def test_missing_keyframe_tokenizer_is_one_line_exit_2(capsys, tmp_path, real_clip):
    rc, _, err = run_lavit(capsys, "tokenize", real_clip, "--checkpoint", MOTION, "--num-heads", 4, "--keyframe-tokenizer",
                        tmp_path / "nowhere.bin", "-o", tmp_path / "x.jsonl")
    assert rc == 2 and len(err) == 1 and "nowhere.bin" in err[0]
