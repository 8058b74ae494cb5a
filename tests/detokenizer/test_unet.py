"""MotionConditionedUNet against the official reference: parity outputs, the paper state-dict layout, and the motion
routing checked against a hand-computed gather (not against the implementation's own F.interpolate)."""

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel
from safetensors import safe_open

from lavit.detokenizer.unet import (
    MOTION_TOKENS,
    MotionConditionedUNet,
    route_motion_context,
    unet_config,
)
from tests.conftest import SHARED

PARITY = SHARED / "reference" / "video_unet_tiny_parity.safetensors"
LAYOUT = SHARED / "reference" / "video_unet_state_dict.tsv"


@pytest.fixture(scope="module")
def parity():
    if not PARITY.is_file():
        pytest.fail(f"parity file missing: {PARITY}")
    with safe_open(PARITY, "pt") as f:
        metadata = f.metadata()
        weights = {key.removeprefix("model."): f.get_tensor(key) for key in f.keys() if key.startswith("model.")}
        io = {key.removeprefix("io."): f.get_tensor(key) for key in f.keys() if key.startswith("io.")}
    return metadata, weights, io


@pytest.fixture(scope="module")
def tiny_unet(parity):
    metadata, weights, _ = parity
    unet = MotionConditionedUNet(**json.loads(metadata["config"])).eval()
    unet.load_state_dict(weights, strict=True)
    return unet


def run(unet, io, encoder_hidden_states=None):
    with torch.no_grad():
        return unet(
            io["sample"],
            io["timestep"],
            encoder_hidden_states=io["encoder_hidden_states"] if encoder_hidden_states is None else encoder_hidden_states,
            added_time_ids=io["added_time_ids"],
            return_dict=False,
        )[0]


def test_tiny_config_is_the_parity_config(parity):
    assert unet_config("tiny") == json.loads(parity[0]["config"])


def test_parity_with_official_output(parity, tiny_unet):
    _, _, io = parity
    assert type(tiny_unet) is MotionConditionedUNet and tiny_unet.config.in_channels == 10
    out = run(tiny_unet, io)
    assert out.shape == io["output"].shape == (2, 4, 4, 12, 20)
    error = (out - io["output"]).abs().max().item()
    print(f"tiny parity max abs error {error:.3e}")
    assert error <= 1e-5


def test_paper_config_layout_matches_official_state_dict():
    with torch.device("meta"):
        unet = MotionConditionedUNet(**unet_config("paper"))
    rows = [line.split("\t") for line in LAYOUT.read_text().splitlines()[2:]]
    expected = [(name, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())) for name, shape, _ in rows]
    state = unet.state_dict()
    assert [(name, tuple(t.shape)) for name, t in state.items()] == expected
    assert len(state) == 1428 and not list(unet.buffers())
    assert sum(p.numel() for p in unet.parameters()) == 1_524_628_842
    assert unet.config.num_attention_heads == [5, 10, 10, 20]  # official code defaults, not SVD-xt's (5, 10, 20, 20)


def record_contexts(unet):
    """Hooks recording, per routing-transformer call, its feature map (h, w) and the contexts its attn2 layers get."""
    calls, handles = [], []

    def recorder(kind):
        def hook(module, args, kwargs):
            calls[-1].setdefault(kind, kwargs["encoder_hidden_states"])

        return hook

    for module in unet.modules():
        if not isinstance(module, TransformerSpatioTemporalModel):
            continue
        handles.append(module.register_forward_pre_hook(lambda m, args: calls.append({"hw": tuple(args[0].shape[-2:])})))
        for kind, blocks in (("space", module.transformer_blocks), ("time", module.temporal_transformer_blocks)):
            for block in blocks:
                handles.append(block.attn2.register_forward_pre_hook(recorder(kind), with_kwargs=True))
    return calls, handles


def nearest_cell_gather(motion, height, width):
    """Hand-computed truth: location (i, j) -> the T features of grid cell (floor(16 i / h), floor(16 j / w))."""
    batch, frames, _, channels = motion.shape
    rows = torch.arange(height) * 16 // height
    cols = torch.arange(width) * 16 // width
    cell = (rows[:, None] * 16 + cols[None, :]).reshape(-1)  # row-major token index per location
    return motion[:, :, cell, :].permute(0, 2, 1, 3).reshape(batch * height * width, frames, channels)


def test_spatial_attention_sees_only_its_own_frames_tokens(parity, tiny_unet):
    _, _, io = parity
    motion = io["encoder_hidden_states"]
    batch, frames = motion.shape[:2]
    changed = motion.clone()
    changed[1, 2] = torch.randn(MOTION_TOKENS, motion.shape[-1], generator=torch.Generator().manual_seed(0))

    calls, handles = record_contexts(tiny_unet)
    try:
        run(tiny_unet, io)
        before = list(calls)
        calls.clear()
        run(tiny_unet, io, changed)
    finally:
        for handle in handles:
            handle.remove()

    assert len(before) == len(calls) == 4  # down, mid and 2 up transformers
    for call_before, call_after in zip(before, calls):
        assert torch.equal(call_before["space"], motion.reshape(batch * frames, MOTION_TOKENS, -1))
        differs = (call_before["space"] != call_after["space"]).flatten(1).any(1)
        assert differs.tolist() == [row == 1 * frames + 2 for row in range(batch * frames)]


def test_temporal_attention_sees_its_nearest_grid_cell(parity, tiny_unet):
    _, _, io = parity
    calls, handles = record_contexts(tiny_unet)
    try:
        run(tiny_unet, io)
    finally:
        for handle in handles:
            handle.remove()
    assert sorted({call["hw"] for call in calls}) == [(6, 10), (12, 20)]
    for call in calls:
        assert torch.equal(call["time"], nearest_cell_gather(io["encoder_hidden_states"], *call["hw"]))


@pytest.mark.parametrize("height,width", [(1, 1), (5, 7), (9, 16), (16, 16), (40, 72), (72, 128)])
def test_route_motion_context_at_feature_map_sizes(height, width):
    motion = torch.randn(2, 3, MOTION_TOKENS, 4, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    space, time = route_motion_context(motion, height, width)
    assert torch.equal(space, motion.reshape(6, MOTION_TOKENS, 4))
    assert time.dtype == torch.bfloat16
    assert torch.equal(time, nearest_cell_gather(motion, height, width))


def bad_input_cases():
    ok = {"sample": (2, 4, 10, 12, 20), "ehs": (2, 4, 256, 32), "ids": (2, 3), "t": ()}
    yield "sample rank", {**ok, "sample": (8, 10, 12, 20)}, "sample must be (B, T, 10, h, w)"
    yield "sample channels", {**ok, "sample": (2, 4, 8, 12, 20)}, "sample must be (B, T, 10, h, w)"
    yield "empty width", {**ok, "sample": (2, 4, 10, 12, 0)}, "h, w >= 1"
    expected_ehs = "encoder_hidden_states must be (B, T, 256, cross_attention_dim) = (2, 4, 256, 32)"
    yield "stock SVD context", {**ok, "ehs": (2, 1, 32)}, expected_ehs
    yield "frames mismatch", {**ok, "ehs": (2, 3, 256, 32)}, expected_ehs
    yield "batch mismatch", {**ok, "ehs": (1, 4, 256, 32)}, expected_ehs
    yield "tokens", {**ok, "ehs": (2, 4, 135, 32)}, expected_ehs
    yield "channels", {**ok, "ehs": (2, 4, 256, 1024)}, expected_ehs
    yield "ids count", {**ok, "ids": (2, 2)}, "added_time_ids must be (B, 3) = (2, 3)"
    yield "ids batch", {**ok, "ids": (1, 3)}, "added_time_ids must be (B, 3) = (2, 3)"
    yield "timestep", {**ok, "t": (3,)}, "timestep must be a number, a 0-d tensor or (2,)"


@pytest.mark.parametrize("case,shapes,message", list(bad_input_cases()), ids=[c[0] for c in bad_input_cases()])
def test_bad_inputs_raise_value_error_naming_expected_shape(tiny_unet, case, shapes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_unet(
            torch.zeros(shapes["sample"]),
            torch.zeros(shapes["t"]),
            torch.zeros(shapes["ehs"]),
            torch.zeros(shapes["ids"]),
        )


def test_unknown_config_name():
    with pytest.raises(ValueError, match=re.escape("expected one of ['paper', 'tiny']")):
        unet_config("xl")


def test_save_and_load_round_trip(parity, tiny_unet, tmp_path: Path):
    _, _, io = parity
    tiny_unet.save_pretrained(tmp_path / "unet")
    assert json.loads((tmp_path / "unet" / "config.json").read_text())["_class_name"] == "MotionConditionedUNet"
    loaded = MotionConditionedUNet.from_pretrained(tmp_path / "unet").eval()
    rebuilt = MotionConditionedUNet.from_config(loaded.config)
    assert type(loaded) is type(rebuilt) is MotionConditionedUNet
    assert loaded.config.in_channels == rebuilt.config.in_channels == 10
    assert torch.equal(run(loaded, io), run(tiny_unet, io))


def test_default_in_channels_is_ten():
    config = {key: value for key, value in unet_config("tiny").items() if key != "in_channels"}
    unet = MotionConditionedUNet(**config)
    assert unet.config.in_channels == 10 and unet.conv_in.weight.shape[1] == 10
