"""``lavit detokenize-image``: keyframe codebook ids (text or ``lavit tokenize`` output) -> PNG, on a tiny random
SDXL-shaped detokenizer saved as a Video-LaVIT root."""

import json

import lightning.pytorch  # noqa: F401  Lightning binds its log handler to sys.stderr at import: before capsys swaps it
import numpy as np
import pytest
import torch
from PIL import Image

from lavit.detokenizer import KeyframeDetokenizerPipeline
from lavit.pipelines.detokenize_image import parse_code_ids
from tests.detokenizer.test_keyframe_pipeline import N_CODE, _official_root, make_pipe
from tests.cli_runner import run_lavit

IDS = [3, 1, 4, 1, 5, 9, 2, 6]


@pytest.fixture(scope="module")
def pipe() -> KeyframeDetokenizerPipeline:
    return make_pipe()


@pytest.fixture(scope="module")
def root(tmp_path_factory, pipe):
    return _official_root(tmp_path_factory.mktemp("kfdetok"), pipe)


def _draw(capsys, root, ids, out, *extra):
    rc, stdout, err = run_lavit(capsys, "detokenize-image", ids, "--detokenizer", root, "--decoder-config", "tiny",
                             "--steps", 3, "-o", out, *extra)
    assert rc == 0, err
    assert stdout.strip() == str(out)
    return np.asarray(Image.open(out))


def test_png_of_the_requested_size_equals_generate(capsys, tmp_path, root, pipe):
    image = _draw(capsys, root, json.dumps(IDS), tmp_path / "a.png", "--size", "48x32", "--seed", 5, "--guidance", 2.0)
    assert image.shape == (32, 48, 3) and image.dtype == np.uint8  # WxH, as lavit reconstruct's --size
    with torch.no_grad():
        expected = pipe.generate([torch.tensor(IDS)], size=(32, 48), guidance=2.0, num_steps=3, seed=5).images[0].numpy()
    np.testing.assert_array_equal(image, expected)
    same = _draw(capsys, root, ",".join(map(str, IDS)), tmp_path / "b.png", "--size", "48x32", "--seed", 5, "--guidance", 2.0)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes() and np.array_equal(same, image)
    other = _draw(capsys, root, json.dumps(IDS), tmp_path / "c.png", "--size", "48x32", "--seed", 6, "--guidance", 2.0)
    assert not np.array_equal(other, image)


def test_reads_lavit_tokenize_output(capsys, tmp_path, root, pipe):
    tokens = tmp_path / "tokens.jsonl"
    second = [63, 0, 7]
    tokens.write_text("".join(json.dumps({"video": "v.mp4", "clip": k, "start": 12 * k, "keyframe_ids": ids, "motion_ids": [1, 2]}) + "\n"
                              for k, ids in enumerate([IDS, second])))
    first = _draw(capsys, root, tokens, tmp_path / "first.png", "--size", "32x32")
    line1 = _draw(capsys, root, tokens, tmp_path / "line1.png", "--size", "32x32", "--line", 1)
    with torch.no_grad():  # the defaults: seed 0, guidance 3.0
        e0 = pipe.generate([torch.tensor(IDS)], size=(32, 32), num_steps=3, seed=0).images[0].numpy()
        e1 = pipe.generate([torch.tensor(second)], size=(32, 32), num_steps=3, seed=0).images[0].numpy()
    np.testing.assert_array_equal(first, e0)
    np.testing.assert_array_equal(line1, e1)
    (tmp_path / "one.json").write_text(json.dumps({"keyframe_ids": second}))
    assert parse_code_ids(str(tmp_path / "one.json")) == second


@pytest.mark.parametrize("ids, extra, message", [
    ("[1, 2, x]", (), "not a JSON list"),
    ("1,2,,3", (), "expected a JSON list, comma-separated integers"),
    ("[]", (), "non-empty list of integer code ids"),
    (f"[1, {N_CODE}]", (), f"{N_CODE}"),  # outside the 64-code codebook
    (json.dumps(list(range(17))), (), "17"),  # the tiny decoder takes at most 16 codes (paper: 256)
    ("[1, 2]", ("--size", "40x32"), "multiple"),
    ("missing.jsonl", (), "missing.jsonl"),
    ("[1, 2]", ("--line", 1), "--line"),
])
def test_usage_errors_are_one_line_exit_2(capsys, tmp_path, root, ids, extra, message):
    rc, _, err = run_lavit(capsys, "detokenize-image", ids, "--detokenizer", root, "--decoder-config", "tiny", "--steps", 1,
                        "-o", tmp_path / "x.png", *extra)
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.png").exists()


def test_missing_detokenizer_files_are_named(capsys, tmp_path, root):
    rc, _, err = run_lavit(capsys, "detokenize-image", "[1, 2]", "--detokenizer", tmp_path / "nowhere", "-o", tmp_path / "x.png")
    assert rc == 2 and len(err) == 1 and "nowhere" in err[0] and "rain1011/Video-LaVIT-v1" in err[0]
