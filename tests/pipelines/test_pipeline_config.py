"""PipelineConfig: YAML keys, interpolation, typed errors naming the key / path, nothing loaded."""

import pytest

from lavit.detokenizer.components import MissingComponentError
from lavit.pipelines import PipelineConfig
from lavit.pipelines.config import REQUIRED_CHECKPOINTS, GenerationSettings
from lavit.pipelines.stitch import clip_boundary_jumps, resize_images, stitch_clips, stitched_length

import torch


def test_demo_and_paper_configs_parse(monkeypatch, tmp_path):
    demo = PipelineConfig.from_file("configs/pipelines/demo.yaml")
    assert demo.path("lm").as_posix() == "outputs/multimodal_lm_demo/checkpoints/last.ckpt"
    assert demo.path("motion_tokenizer").as_posix() == "outputs/motion_vqvae_demo/checkpoints/last.ckpt"
    assert demo.generation.add_bos and demo.generation.chaining == "renoise"
    monkeypatch.setenv("LAVIT_WEIGHTS_DIR", str(tmp_path))
    paper = PipelineConfig.from_file("configs/pipelines/paper.yaml")
    assert paper.path("video_detokenizer") == tmp_path / "video_3d_unet.bin"
    g = paper.generation
    assert (g.keyframe_guidance, g.motion_guidance, g.top_k, g.keyframe_steps, g.keyframe_cfg, g.video_steps) == (4.0, 7.0, 50, 50, 3.0, 25)
    assert (g.keyframe_size, g.video_size, g.inverse_rate, g.add_bos) == ((576, 1024), (320, 576), 0.85, False)
    assert paper.torch_dtype == torch.bfloat16


def test_paper_config_without_the_variable_names_it(monkeypatch):
    monkeypatch.delenv("LAVIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(ValueError, match="LAVIT_WEIGHTS_DIR"):
        PipelineConfig.from_file("configs/pipelines/paper.yaml")


@pytest.mark.parametrize("values, key", [
    ({"checkpoint": {}}, "'checkpoint'"),
    ({"checkpoints": {"lmm": "x"}}, "'lmm'"),
    ({"generation": {"guidance": 3}}, "'guidance'"),
])
def test_unknown_keys_name_the_key_and_the_allowed_ones(values, key):
    with pytest.raises(ValueError, match=key) as err:
        PipelineConfig.from_dict(values)
    assert "allowed:" in str(err.value)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="chaining"):
        GenerationSettings(chaining="sdedit")
    with pytest.raises(ValueError, match="inverse_rate"):
        GenerationSettings(inverse_rate=1.5)
    with pytest.raises(ValueError, match="dtype"):
        PipelineConfig.from_dict({"dtype": "float8"})
    with pytest.raises(ValueError, match="'steps'"):
        GenerationSettings().replace(steps=3)


def test_check_names_the_first_missing_checkpoint(tmp_path):
    present = {name: str(tmp_path) for name in REQUIRED_CHECKPOINTS}
    config = PipelineConfig.from_dict({"checkpoints": {**present, "video_detokenizer": str(tmp_path / "nope.ckpt")}})
    with pytest.raises(MissingComponentError, match="'video_detokenizer'") as err:
        config.check()
    assert str(tmp_path / "nope.ckpt") in str(err.value)
    with pytest.raises(FileNotFoundError, match="checkpoints.lm"):
        PipelineConfig.from_dict({"checkpoints": {}}).check(("lm",))
    assert config.check(("lm",)) is config  # each pipeline checks only its own parts


def test_stitching_drops_each_further_first_frame_and_measures_the_jumps():
    clips = [torch.full((24, 2, 2, 3), 10 * k, dtype=torch.uint8) for k in range(3)]
    for k, clip in enumerate(clips):
        clip[0] = 200  # the first frame of each clip is marked
    video = stitch_clips(clips)
    assert video.shape[0] == stitched_length(3) == 24 + 23 * 2
    assert (video[:, 0, 0, 0] == 200).sum() == 1  # only clip 0's first frame survives
    assert clip_boundary_jumps(video, 3) == [10.0, 10.0]  # last of clip k (10 k) -> second of clip k + 1 (10 (k + 1))
    with pytest.raises(ValueError, match="70"):
        clip_boundary_jumps(video[:-1], 3)


def test_resize_images_crops_to_the_aspect_ratio_then_resizes():
    image = torch.zeros(1, 4, 8, 3, dtype=torch.uint8)
    image[:, :, 2:6] = 255  # the centre half of the columns
    out = resize_images(image, (2, 2))  # square: the centre 4 x 4 is kept, which is all white
    assert out.shape == (1, 2, 2, 3) and bool((out == 255).all())
    assert resize_images(image, (4, 8)) is image
