"""Motion condition encoder: parity with the official module, paper-size layout, frame equivariance,
input preparation, errors."""

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from lavit.detokenizer.motion_encoder import MotionConditionEncoder, MotionConditionEncoderConfig, prepare_motion
from lavit.modules.spatiotemporal import Float32LayerNorm
from tests.conftest import SHARED

PARITY = SHARED / "reference" / "motion_condition_encoder_tiny_parity.safetensors"
REFERENCE_TSV = SHARED / "reference" / "motion_condition_encoder_state_dict.tsv"


@pytest.fixture(scope="module")
def parity():
    return load_file(str(PARITY))


@pytest.fixture(scope="module")
def tiny(parity):
    """The tiny preset holding the parity file's official weights (strict load)."""
    model = MotionConditionEncoder(MotionConditionEncoderConfig.from_name("tiny")).eval()
    model.load_state_dict({k[len("model."):]: v for k, v in parity.items() if k.startswith("model.")}, strict=True)
    return model


def test_tiny_preset_is_the_parity_files_config():
    with safe_open(str(PARITY), "pt") as f:
        meta = f.metadata()
    c = MotionConditionEncoderConfig.from_name("tiny")
    described = meta["config"]
    for expected in (f"in_channel={c.in_channels}", f"out_channel={c.out_channels}", f"dim={c.dim}", f"num_heads={c.num_heads}",
                     f"img_size={c.grid}".replace(" ", ""), f"depth={c.depth}", f"mlp_ratio={c.mlp_ratio:g}", "eps=1e-5"):
        assert expected in described, (expected, described)
    assert c.eps == 1e-5 and "no temporal position embedding" in described


def test_parity_with_official_module(parity, tiny):
    x, expected = parity["io.input"], parity["io.output"]
    assert tuple(x.shape) == (1, 2, 6, 16, 16) and tuple(expected.shape) == (1, 6, 256, 1024)
    with torch.no_grad():
        out = tiny(x)
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert (out - expected).abs().max() <= 1e-5  # measured 1.5e-6 (outputs up to 2.0)
    with torch.no_grad():  # a 16 x 16 input is left unchanged by the resize, so encode = forward
        assert (tiny.encode(x) - expected).abs().max() <= 1e-5


def test_paper_config_matches_reference_layout():
    expected = []
    for line in REFERENCE_TSV.read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split("\t")[:2]
            expected.append((name, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    with torch.device("meta"):
        model = MotionConditionEncoder(MotionConditionEncoderConfig.from_name("paper"))
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert dict(got) == dict(expected)  # names and shapes, order-free
    assert got == expected  # and the official registration order
    assert len(got) == 247
    assert sum(p.numel() for p in model.parameters()) == 51_095_040
    assert not list(model.buffers())


def test_permuting_frames_permutes_the_output(tiny):
    # no temporal position embedding (docs/spec.md §4): attention over frames is a set operation
    x = torch.randn(2, 2, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out, out_permuted = tiny(x), tiny(x[:, :, perm])
    assert (out[:, 0] - out[:, 1]).abs().max() > 0.1  # the frames really differ, so the check has teeth
    assert (out_permuted - out[:, perm]).abs().max() <= 1e-5
    # and frames interact: changing one frame changes the others' features
    y = x.clone()
    y[:, :, 0] += 1.0
    with torch.no_grad():
        assert (tiny(y)[:, 1:] - out[:, 1:]).abs().max() > 1e-3


def test_prepare_motion_is_bicubic_per_frame():
    b, t, h, w = 2, 3, 5, 9
    motion = torch.arange(b * 2 * t * h * w, dtype=torch.float64).reshape(b, 2, t, h, w).sin()
    motion[1, 0, 2] = 0.0
    motion[0, 1, 1, 2, 4] = 5.0
    out = prepare_motion(motion)
    assert tuple(out.shape) == (b, 2, t, 16, 16) and out.dtype == torch.float32
    for i in range(t):
        frame = F.interpolate(motion[:, :, i].float(), size=(16, 16), mode="bicubic", align_corners=False)
        assert torch.equal(out[:, :, i], frame)
    # constant fields stay constant (bicubic weights sum to one), per channel and frame
    constant = torch.tensor([0.7, -1.3]).view(1, 2, 1, 1, 1).expand(1, 2, 4, 6, 11).to(torch.bfloat16)
    resized = prepare_motion(constant)
    assert resized.dtype == torch.float32
    assert torch.allclose(resized, constant.float()[..., :1, :1].expand(1, 2, 4, 16, 16), atol=1e-6)
    # at 16 x 16 the resize is the identity (source sample = destination sample)
    x = torch.randn(1, 2, 2, 16, 16)
    assert torch.allclose(prepare_motion(x), x, atol=1e-6)


def test_encoder_method_uses_its_grid():
    model = MotionConditionEncoder(MotionConditionEncoderConfig(dim=16, num_heads=2, depth=1, out_channels=8, grid=(4, 6))).eval()
    motion = torch.randn(1, 2, 3, 10, 18)
    prepared = model.prepare_motion(motion)
    assert torch.equal(prepared, prepare_motion(motion, (4, 6)))
    with torch.no_grad():
        out = model.encode(motion)
        assert tuple(out.shape) == (1, 3, 24, 8) and torch.equal(out, model(prepared))


def test_bfloat16_model_runs_with_float32_norms(tiny, parity):
    model = MotionConditionEncoder(MotionConditionEncoderConfig.from_name("tiny")).eval()
    model.load_state_dict(tiny.state_dict())
    model.to(torch.bfloat16)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 3 * 12 + 1 and all(isinstance(m, Float32LayerNorm) for m in norms)
    x = torch.randn(4, 64, dtype=torch.bfloat16) * 30 + 100
    n = norms[0]  # official LayerNorm: float32 statistics and affine, cast back to the input dtype
    assert torch.equal(n(x), F.layer_norm(x.float(), (64,), n.weight.float(), n.bias.float(), 1e-5).to(torch.bfloat16))
    with torch.no_grad():
        out = model(parity["io.input"])  # float32 motion into a bf16 model: cast at the input projection
    assert out.dtype == torch.bfloat16
    assert (out.float() - parity["io.output"]).abs().max() < 0.1  # measured 0.031 (outputs up to 2.0)


def test_bad_inputs_name_the_expected_shape(tiny):
    with pytest.raises(ValueError, match=r"shape \(B, 2, T, 16, 16\), got \(1, 2, 6, 8, 8\) torch.float32 \(resize it"):
        tiny(torch.zeros(1, 2, 6, 8, 8))
    with pytest.raises(ValueError, match=r"shape \(B, 2, T, 16, 16\), got \(1, 3, 6, 16, 16\)"):
        tiny(torch.zeros(1, 3, 6, 16, 16))
    with pytest.raises(ValueError, match=r"shape \(B, 2, T, 16, 16\), got \(2, 6, 16, 16\)"):
        tiny(torch.zeros(2, 6, 16, 16))
    with pytest.raises(ValueError, match=r"floating-point.*torch.int64"):
        tiny(torch.zeros(1, 2, 6, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(B, 2, T, 16, 16\), got list"):
        tiny([0.0])
    nan = torch.zeros(2, 2, 3, 16, 16)
    nan[1, 0, 2, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values \(1 NaN, 0 Inf\) in clips \[1\]"):
        tiny(nan)
    with pytest.raises(ValueError, match=r"shape \(B, 2, T, h, w\), got \(1, 1, 6, 40, 72\)"):
        tiny.encode(torch.zeros(1, 1, 6, 40, 72))
    with pytest.raises(ValueError, match=r"shape \(B, 2, T, h, w\), got \(2, 6, 40, 72\)"):
        prepare_motion(torch.zeros(2, 6, 40, 72))
    inf = torch.zeros(1, 2, 3, 40, 72)
    inf[0, 1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite values \(0 NaN, 1 Inf\) in clips \[0\]"):
        prepare_motion(inf)


def test_bad_configs_name_the_values():
    with pytest.raises(ValueError, match=r"dim 64 is not divisible by num_heads 5"):
        MotionConditionEncoderConfig(dim=64, num_heads=5)
    with pytest.raises(ValueError, match=r"depth must be positive, got 0"):
        MotionConditionEncoderConfig.from_name("tiny", depth=0)
    with pytest.raises(ValueError, match=r"out_channels must be positive, got -1"):
        MotionConditionEncoderConfig(out_channels=-1)
    with pytest.raises(ValueError, match=r"grid must be two positive sizes \(H, W\), got \(16,\)"):
        MotionConditionEncoderConfig(grid=(16,))
    with pytest.raises(ValueError, match=r"init_std must be positive or None, got 0"):
        MotionConditionEncoderConfig(init_std=0)
    with pytest.raises(ValueError, match=r"unknown motion condition encoder preset 'huge'; known: \['paper', 'tiny'\]"):
        MotionConditionEncoderConfig.from_name("huge")
    with pytest.raises(ValueError, match=r"unknown motion condition encoder config keys \['heads'\]"):
        MotionConditionEncoderConfig.from_dict({"heads": 4})
    with pytest.raises(TypeError, match=r"takes a MotionConditionEncoderConfig, got dict"):
        MotionConditionEncoder({"dim": 64})


def test_config_presets_and_round_trip():
    paper = MotionConditionEncoderConfig.from_name("paper")
    assert paper == MotionConditionEncoderConfig()
    assert (paper.in_channels, paper.out_channels, paper.dim, paper.num_heads, paper.depth, paper.mlp_ratio, paper.grid,
            paper.eps) == (2, 1024, 512, 8, 12, 4.0, (16, 16), 1e-5)
    assert paper.num_tokens == 256
    tiny = MotionConditionEncoderConfig.from_name("tiny", depth=2)
    assert (tiny.dim, tiny.num_heads, tiny.depth) == (64, 4, 2)
    d = tiny.to_dict()
    assert d["grid"] == [16, 16]
    assert MotionConditionEncoderConfig.from_dict(d) == tiny == MotionConditionEncoderConfig.coerce(d)
    assert MotionConditionEncoderConfig.coerce("tiny") == MotionConditionEncoderConfig.from_name("tiny")
    assert tiny.replace(depth=3).depth == 3
