"""MotionTokenizerConfig: presets, validation at construction, the model built from the whole config."""

import pytest
import torch

from lavit.tokenizers import MOTION_TOKENIZER_CONFIGS, MotionTokenizer, MotionTokenizerConfig


def test_presets_in_one_table():
    assert set(MOTION_TOKENIZER_CONFIGS) == {"paper", "demo", "tiny"}
    paper = MotionTokenizerConfig.from_name("paper")
    with torch.device("meta"):
        assert sum(p.numel() for p in MotionTokenizer(paper).parameters()) == 158_476_322
    assert paper.num_tokens == 135 and paper.token_grid == (3, 5, 9) and paper.input_shape == (2, 24, 20, 36)
    demo = MotionTokenizerConfig.from_name("demo")
    assert (demo.dim, demo.field_size, demo.codebook_size, demo.input_scale, demo.init_std) == (32, (8, 16), 256, 0.3, None)
    assert demo.num_tokens == 24  # (3, 2, 4): the 8 x 16 grid after the strides
    assert MotionTokenizerConfig.from_name("tiny", codebook_size=16).codebook_size == 16
    with pytest.raises(ValueError, match="unknown motion tokenizer preset 'huge'.*demo"):
        MotionTokenizerConfig.from_name("huge")


def test_round_trip_through_plain_values():
    config = MotionTokenizerConfig.from_name("demo")
    values = config.to_dict()
    assert values["field_size"] == [8, 16] and values["strides"][0] == [1, 2, 2]  # YAML / JSON friendly
    assert MotionTokenizerConfig.from_dict(values) == config
    assert MotionTokenizerConfig.coerce(values) == MotionTokenizerConfig.coerce("demo") == config
    with pytest.raises(ValueError, match=r"unknown motion tokenizer config keys \['depth'\]"):
        MotionTokenizerConfig.from_dict({**values, "depth": 3})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(dim=32, num_heads=3), "dim 32 is not divisible by num_heads 3"),
        (dict(num_frames=20), r"clip shape \(20, 20, 36\) is not divisible by the strides"),
        (dict(field_size=(21, 36)), r"clip shape \(24, 21, 36\) is not divisible"),
        (dict(stage_depths=(1, 1, 1)), "need one entry per stage"),
        (dict(dim=0), "dim must be positive, got 0"),
        (dict(num_heads=-2), "num_heads must be positive, got -2"),
        (dict(codebook_size=0), "codebook_size must be positive"),
        (dict(field_size=(0, 36)), "field_size must be two positive sizes"),
        (dict(stage_depths=(3, 0, 3, 3)), "stage_depths must be one positive block count"),
        (dict(strides=((1, 2, 2), (2, 1, 1), (2, 1, 1), (2, 0, 2))), "strides must be positive"),
        (dict(input_scale=0.0), "input_scale must be positive"),
        (dict(decay=1.0), r"decay must lie in \[0, 1\)"),
        (dict(dead_code_steps=0), "dead_code_steps must be positive or None"),
    ],
)
def test_inconsistent_sizes_raise_at_config_construction(changes, message):
    with pytest.raises(ValueError, match=message):
        MotionTokenizerConfig(**changes)


def test_model_takes_the_whole_config():
    config = MotionTokenizerConfig.from_name("tiny")
    model = MotionTokenizer(config)
    assert model.config is config and model.num_tokens == 135 and model.input_shape == (2, 24, 20, 36)
    with pytest.raises(TypeError, match="MotionTokenizerConfig"):
        MotionTokenizer({"dim": 32})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_motion_is_refused(bad):
    model = MotionTokenizer(MotionTokenizerConfig.from_name("tiny")).eval()
    motion = torch.randn(3, 2, 24, 20, 36)
    motion[1, 0, 5, 3, 4] = bad
    with pytest.raises(ValueError, match=r"non-finite values .* in clips \[1\]"):
        model.tokenize(motion)
    with pytest.raises(ValueError, match="non-finite"):
        model(motion)  # the training forward too
