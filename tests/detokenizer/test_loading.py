"""load_video_detokenizer / save_video_detokenizer / load_svd_unet_weights: every source form round-trips to identical
outputs; the paper config is what the reference layout shows; bad sources give typed errors naming what is wrong."""

import pytest
import torch
from diffusers import UNetSpatioTemporalConditionModel
from safetensors.torch import save_file

import lavit
from lavit.detokenizer.components import MissingComponentError
from lavit.detokenizer.config import VideoDetokenizerConfig
from lavit.detokenizer.loading import (
    VideoDetokenizerCheckpoint,
    load_svd_unet_weights,
    load_video_detokenizer,
    save_pretrained,
    save_video_detokenizer,
    split_state,
    video_detokenizer_config,
)
from lavit.detokenizer.model import VideoDetokenizerModel
from lavit.detokenizer.unet import MotionConditionedUNet, unet_config
from lavit.weights import UnsafeWeightsError, WeightsError, WeightsMismatchError
from tests.conftest import SHARED

UNET_TSV = SHARED / "reference" / "video_unet_state_dict.tsv"
ENCODER_TSV = SHARED / "reference" / "motion_condition_encoder_state_dict.tsv"
TINY_HEADS = dict(unet_config={"num_attention_heads": [2, 2]}, encoder_config={"num_heads": 2})


def read_tsv(path):
    rows = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and not line.startswith("name\t"):
            name, shape = line.split("\t")[:2]
            rows.append((name, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return rows


def perturbed(model, seed=0):
    """Every tensor moved off its initial value, so a tensor the loader forgets shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return perturbed(VideoDetokenizerModel("tiny"))


def outputs(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    c = model.config.latent_channels
    noisy = torch.randn(1, 3, c, 8, 8, generator=g)
    motion = model.motion_condition(torch.randn(1, 2, 3, 20, 36, generator=g), (8, 8))
    with torch.no_grad():
        return model.denoise(noisy, torch.tensor([2.0]), noisy[:, 0], motion)


def assert_same(loaded, model):
    assert type(loaded) is VideoDetokenizerModel and not loaded.training
    def sizes(config):  # num_frames shows in no shape and is unused in the forward pass
        return {k: v for k, v in config.unet.items() if k != "num_frames"}

    assert sizes(loaded.config) == sizes(model.config) and loaded.config.motion_encoder == model.config.motion_encoder
    expected = model.state_dict()
    state = loaded.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)
    assert torch.equal(outputs(loaded), outputs(model))


# ---- the paper layout ---------------------------------------------------------------------------
def test_paper_config_is_inferred_from_the_reference_layout():
    unet_rows, encoder_rows = read_tsv(UNET_TSV), read_tsv(ENCODER_TSV)
    # an official video_3d_unet.bin made of the reference layout (meta tensors: no 1.5B values in memory)
    official = {f"unet.{n}": torch.empty(s, device="meta") for n, s in unet_rows}
    official.update({f"motion_encoder.{n}": torch.empty(s, device="meta") for n, s in encoder_rows})
    unet, encoder = split_state(official, "video_3d_unet.bin")
    config = video_detokenizer_config(VideoDetokenizerCheckpoint(unet, encoder))
    assert config == VideoDetokenizerConfig()  # the paper config, heads included (official defaults)
    with torch.device("meta"):
        model = VideoDetokenizerModel(config)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == [(f"unet.{n}", s) for n, s in unet_rows] + [(f"motion_encoder.{n}", s) for n, s in encoder_rows]
    assert sum(p.numel() for p in model.unet.parameters()) == 1_524_628_842
    assert sum(p.numel() for p in model.motion_encoder.parameters()) == 51_095_040


# ---- round trips --------------------------------------------------------------------------------
def test_state_dict_round_trip(tiny):
    assert_same(load_video_detokenizer(tiny.state_dict(), **TINY_HEADS), tiny)
    assert_same(lavit.load_video_detokenizer(tiny.state_dict(), "tiny", {"num_heads": 2}), tiny)


def test_official_style_bin_and_root_folder(tiny, tmp_path):
    path = tmp_path / "video_3d_unet.bin"
    torch.save({k: v.clone() for k, v in tiny.state_dict().items()}, path)  # keys unet.* + motion_encoder.*
    assert_same(load_video_detokenizer(path, **TINY_HEADS), tiny)
    assert_same(load_video_detokenizer(tmp_path, **TINY_HEADS), tiny)  # a Video-LaVIT root holding it


def test_heads_that_do_not_fit_the_inferred_sizes_are_asked_for(tiny):
    with pytest.raises(ValueError, match="num_attention_heads"):
        load_video_detokenizer(tiny.state_dict())  # 2 blocks: the paper's 4 head counts do not fit


def test_safetensors_with_config_and_bare(tiny, tmp_path):
    path = save_video_detokenizer(tiny, tmp_path / "detok.safetensors")
    loaded = load_video_detokenizer(path)  # config from the metadata: no arguments
    assert_same(loaded, tiny)
    assert loaded.config == tiny.config
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(bare))
    assert_same(load_video_detokenizer(bare, **TINY_HEADS), tiny)


def test_save_pretrained_folder_and_its_unet(tiny, tmp_path):
    folder = save_pretrained(tiny, tmp_path / "detok")
    assert (folder / "unet" / "config.json").is_file() and (folder / "motion_encoder.safetensors").is_file()
    assert type(MotionConditionedUNet.from_pretrained(folder / "unet")) is MotionConditionedUNet  # stock diffusers files
    assert_same(load_video_detokenizer(folder), tiny)
    loaded = load_video_detokenizer(folder / "unet")
    assert_same(loaded, tiny)
    assert loaded.config == tiny.config


def test_hub_style_unet_folder_holding_both_parts(tiny, tmp_path):
    tiny.unet.save_pretrained(tmp_path / "unet", safe_serialization=False)
    # the official hub file may hold unet + motion_encoder keys in one diffusion_pytorch_model.bin
    torch.save({k: v.clone() for k, v in tiny.state_dict().items()}, tmp_path / "unet" / "diffusion_pytorch_model.bin")
    assert_same(load_video_detokenizer(tmp_path / "unet", encoder_config={"num_heads": 2}), tiny)  # U-Net heads: config.json


def test_unet_folder_without_motion_encoder_names_what_is_missing(tiny, tmp_path):
    tiny.unet.save_pretrained(tmp_path / "unet")
    with pytest.raises(MissingComponentError) as error:
        load_video_detokenizer(tmp_path / "unet")
    message = str(error.value)
    assert str(tmp_path / "motion_encoder.safetensors") in message and "motion_encoder" in message
    assert "rain1011/Video-LaVIT-v1" in message


def test_lightning_checkpoint_picks_ema_or_model_weights(tiny, tmp_path):
    ema = perturbed(VideoDetokenizerModel("tiny"), seed=5)
    state = {**{f"model.{k}": v for k, v in tiny.state_dict().items()}, **{f"ema.{k}": v for k, v in ema.state_dict().items()}}
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"detokenizer": tiny.config.to_dict(), "lr": 1e-4},
                "epoch": 3, "global_step": 12}, path)
    assert_same(load_video_detokenizer(path), ema)
    assert_same(load_video_detokenizer(path, use_ema=False), tiny)
    without_ema = tmp_path / "no_ema.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in tiny.state_dict().items()},
                "hyper_parameters": {"detokenizer": tiny.config.to_dict()}}, without_ema)
    assert_same(load_video_detokenizer(without_ema), tiny)
    assert not torch.equal(outputs(ema), outputs(tiny))
    # a YAML config names the preset (`detokenizer: tiny`): the checkpoint stores the name, not the fields
    by_name = tmp_path / "by_name.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in tiny.state_dict().items()},
                "hyper_parameters": {"detokenizer": "tiny"}}, by_name)
    assert_same(load_video_detokenizer(by_name), tiny)


def test_sizes_are_inferred_only_heads_given(tmp_path):
    unet = {**unet_config("tiny"), "in_channels": 8, "out_channels": 3, "block_out_channels": [64, 96], "layers_per_block": 2,
            "cross_attention_dim": 48, "addition_time_embed_dim": 16, "projection_class_embeddings_input_dim": 48,
            "num_attention_heads": [2, 4]}
    config = VideoDetokenizerConfig(unet=unet, latent_channels=3,
                                    motion_encoder=dict(dim=64, num_heads=8, depth=2, out_channels=48, mlp_ratio=2.0))
    torch.manual_seed(3)
    model = perturbed(VideoDetokenizerModel(config))
    path = tmp_path / "other.bin"
    torch.save(model.state_dict(), path)
    loaded = load_video_detokenizer(path, unet_config={"num_attention_heads": [2, 4]})  # heads show in no shape
    assert_same(loaded, model)
    assert loaded.config.latent_channels == 3


# ---- bad sources --------------------------------------------------------------------------------
def test_mismatch_lists_every_key(tiny):
    state = dict(tiny.state_dict())
    state.pop("unet.conv_out.bias")
    state["unet.extra.weight"] = torch.zeros(1)
    state["motion_encoder.out_proj.bias"] = torch.zeros(7)
    with pytest.raises(WeightsMismatchError) as error:
        load_video_detokenizer(state, **TINY_HEADS)
    message = str(error.value)
    for name in ("unet.conv_out.bias", "unet.extra.weight", "motion_encoder.out_proj.bias"):
        assert name in message


class Payload:
    """Not a tensor: weights_only loading must refuse to build it."""


def test_pickle_with_objects_is_refused(tiny, tmp_path):
    path = tmp_path / "video_3d_unet.bin"
    torch.save({**tiny.state_dict(), "payload": Payload()}, path)
    with pytest.raises(UnsafeWeightsError, match="refusing to unpickle"):
        load_video_detokenizer(path, **TINY_HEADS)


def test_non_finite_weights_are_named(tiny):
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    state["unet.conv_in.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(WeightsError, match="conv_in.weight"):
        load_video_detokenizer(state, **TINY_HEADS)


def test_missing_sources_name_the_path_and_where_to_get_it(tmp_path, monkeypatch):
    for source in (tmp_path / "video_3d_unet.bin", tmp_path / "empty_root"):
        if source.name == "empty_root":
            source.mkdir()
        with pytest.raises(MissingComponentError) as error:
            load_video_detokenizer(source)
        assert isinstance(error.value, FileNotFoundError)
        message = str(error.value)
        assert str(source) in message and "rain1011/Video-LaVIT-v1" in message
    monkeypatch.delenv("LAVIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingComponentError, match="video_3d_unet.bin"):
        load_video_detokenizer()


def test_a_state_dict_without_motion_encoder_is_refused(tiny):
    state = {k: v for k, v in tiny.state_dict().items() if k.startswith("unet.")}
    with pytest.raises(WeightsMismatchError, match="motion_encoder"):
        load_video_detokenizer(state, **TINY_HEADS)


# ---- SVD initialisation -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def svd_folder(tmp_path_factory):
    """A tiny stock SVD U-Net (8 input channels, 16-d image cross-attention) saved as diffusers does: <root>/unet/."""
    root = tmp_path_factory.mktemp("svd")
    config = {k: v for k, v in unet_config("tiny").items() if k != "sample_size"}
    torch.manual_seed(7)
    stock = UNetSpatioTemporalConditionModel(**{**config, "in_channels": 8, "cross_attention_dim": 16})
    stock.save_pretrained(root / "unet")
    return root, stock.state_dict()


@pytest.mark.parametrize("form", ["root", "unet", "file"])
def test_svd_weights_initialise_all_but_conv_in_and_cross_attention(svd_folder, form):
    root, svd = svd_folder
    source = {"root": root, "unet": root / "unet", "file": root / "unet" / "diffusion_pytorch_model.safetensors"}[form]
    torch.manual_seed(0)
    unet = MotionConditionedUNet(**unet_config("tiny"))
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    left = load_svd_unet_weights(unet, source)
    after = unet.state_dict()
    assert left == sorted(k for k in after if "conv_in" in k or "attn2" in k)
    assert "conv_in.weight" in left and any(k.endswith("attn2.to_k.weight") for k in left)
    for name, value in after.items():
        if name in left:
            assert torch.equal(value, before[name]), name
        else:
            assert torch.equal(value, svd[name]), name
    assert len(left) < len(after) / 4  # most of the U-Net comes from SVD


def test_svd_shape_mismatch_outside_skip_is_an_error(svd_folder):
    root, _ = svd_folder
    unet = MotionConditionedUNet(**unet_config("tiny"))
    with pytest.raises(WeightsMismatchError, match=r"conv_in\.weight: \(32, 8, 3, 3\)"):
        load_svd_unet_weights(unet, root, skip=("attn2",))
    with pytest.raises(MissingComponentError, match="stable-video-diffusion-img2vid-xt"):
        load_svd_unet_weights(unet, root / "missing")
