"""Motion tokenizer: parity with the official module, paper-size layout, API errors, quantiser maths."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import lavit
from lavit.tokenizers import MotionTokenizer, MotionTokenizerConfig, NormEMAQuantizer
from tests.conftest import SHARED

PARITY = SHARED / "reference" / "motion_tokenizer_tiny_parity.safetensors"
REFERENCE_TSV = SHARED / "reference" / "motion_tokenizer_state_dict.tsv"


@pytest.fixture(scope="module")
def parity():
    return load_file(str(PARITY))


def test_parity_with_official_module(parity):
    model = lavit.load_motion_tokenizer(PARITY, num_heads=4)  # metadata: dim=64 num_heads=4 depth=12
    x = parity["io.input"]
    tokens = model.tokenize(x)
    assert tokens.dtype == torch.int64 and tuple(tokens.shape) == (2, 135)
    assert torch.equal(tokens, parity["io.tokens"])  # all 270
    q = model.encode(x)
    assert (q.quantized - parity["io.quantized"]).abs().max() <= 1e-5
    assert (model.decode(q.quantized) - parity["io.reconstruction"]).abs().max() <= 1e-5
    assert (model.reconstruct(x) - parity["io.reconstruction"]).abs().max() <= 1e-5
    assert (model.detokenize(tokens) - parity["io.reconstruction"]).abs().max() <= 1e-5


def test_paper_config_matches_reference_layout():
    expected = {}
    for line in REFERENCE_TSV.read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split("\t")[:2]
            expected[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    with torch.device("meta"):
        model = MotionTokenizer()
    assert sum(p.numel() for p in model.parameters()) == 158_476_322
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert model.token_grid == (3, 5, 9) and model.num_tokens == 135


def test_official_style_bin_loads_strictly_and_bad_keys_are_named(tmp_path, parity):
    state = {k[len("model."):]: v for k, v in parity.items() if k.startswith("model.")}
    torch.save(state, tmp_path / "motion_tokenizer.bin")
    model = lavit.load_motion_tokenizer(tmp_path / "motion_tokenizer.bin", num_heads=4)
    assert torch.equal(model.tokenize(parity["io.input"]), parity["io.tokens"])
    broken = dict(state)
    del broken["encoder.norm.weight"]
    broken["encoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['encoder.norm.weight'\]; unexpected keys \['encoder.extra.weight'\]"):
        lavit.load_motion_tokenizer(broken, num_heads=4)
    with pytest.raises(ValueError, match=r"size mismatch for encoder.pos_embed: \(1, 10, 64\) in the file, \(1, 720, 64\)"):
        lavit.load_motion_tokenizer({**state, "encoder.pos_embed": torch.zeros(1, 10, 64)}, num_heads=4)
    with pytest.raises(FileNotFoundError, match=r"(?s)motion_tokenizer.bin.*nope.bin.*obtain it from: https://huggingface.co/rain1011/Video-LaVIT-v1"):
        lavit.load_motion_tokenizer(tmp_path / "nope.bin")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.bin")
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        lavit.load_motion_tokenizer(tmp_path / "evil.bin")


def test_bad_tensor_input_names_expected_shape():
    model = MotionTokenizer(MotionTokenizerConfig(dim=32, num_heads=2, stage_depths=(1, 1, 1, 1))).eval()
    with pytest.raises(ValueError, match=r"shape \(B, 2, 24, 20, 36\), got \(1, 2, 24, 36, 20\)"):
        model.tokenize(torch.zeros(1, 2, 24, 36, 20))
    with pytest.raises(ValueError, match=r"floating-point.*torch.int64"):
        model.tokenize(torch.zeros(1, 2, 24, 20, 36, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 135\)"):
        model.detokenize(torch.zeros(1, 134, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 1024\)"):
        model.detokenize(torch.full((1, 135), 1024))
    with pytest.raises(ValueError, match="not divisible"):
        MotionTokenizer(MotionTokenizerConfig(dim=32, num_heads=2, num_frames=20))


def test_quantiser_nearest_code_and_straight_through():
    q = NormEMAQuantizer(num_codes=16, dim=4).eval()
    z = torch.randn(10, 4, requires_grad=True)
    out = q(z)
    zn = F.normalize(z.detach(), dim=-1)
    expected = (zn @ q.codebook.t()).argmax(1)  # max cosine = min Euclidean on the sphere
    assert torch.equal(out.indices, expected)
    torch.testing.assert_close(out.quantized.detach(), q.codebook[expected])
    out.quantized.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # gradients pass straight through


def test_ema_moves_codes_towards_assigned_means_and_keeps_unit_norm():
    torch.manual_seed(0)
    q = NormEMAQuantizer(num_codes=8, dim=3, decay=0.5).train()
    before = q.codebook.clone()
    z = torch.randn(64, 3)
    out = q(z)
    zn = F.normalize(z, dim=-1)
    for k in range(8):
        members = zn[out.indices == k]
        if len(members):
            target = F.normalize(members.mean(0), dim=0)
            torch.testing.assert_close(q.codebook[k], F.normalize(0.5 * before[k] + 0.5 * target, dim=0))
        else:
            torch.testing.assert_close(q.codebook[k], before[k])
    for _ in range(20):
        q(torch.randn(64, 3) * 5 + 1)
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(8))


def test_dead_codes_are_restarted_from_recent_outputs():
    torch.manual_seed(0)
    q = NormEMAQuantizer(num_codes=32, dim=4, dead_code_steps=2, restart_buffer=64).train()
    data = F.normalize(torch.randn(4, 4), dim=-1)  # only four distinct directions
    for _ in range(5):
        q(data.repeat(8, 1) + 0.01 * torch.randn(32, 4))
    # every code is now close to one of the four directions the encoder actually produces
    assert (q.codebook @ data.t()).max(1).values.min() > 0.95


def test_kmeans_init_covers_the_data():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(8, 16), dim=-1)
    z = centres.repeat_interleave(50, 0) + 0.02 * torch.randn(400, 16)
    q = NormEMAQuantizer(num_codes=8, dim=16, kmeans_init=True).train()
    out = q(z)
    assert out.usage == 1.0  # k-means spreads the codes over all eight clusters
    assert abs(out.perplexity.item() - 8) < 0.5


def test_safetensors_round_trip(tmp_path):
    model = MotionTokenizer(MotionTokenizerConfig(dim=32, num_heads=2, stage_depths=(1, 1, 1, 1), codebook_size=64, codebook_dim=8))
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    loaded = lavit.load_motion_tokenizer(tmp_path / "m.safetensors", num_heads=2)
    x = torch.randn(2, 2, 24, 20, 36)
    assert torch.equal(loaded.tokenize(x), model.eval().tokenize(x))


def test_warmup_passes_features_through_then_fits_codes():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(8, 16), dim=-1)
    z = centres.repeat_interleave(20, 0) + 0.02 * torch.randn(160, 16)
    q = NormEMAQuantizer(num_codes=8, dim=16, kmeans_init=True, warmup_steps=2).train()
    for _ in range(2):
        out = q(z)
        torch.testing.assert_close(out.quantized, F.normalize(z, dim=-1))  # unquantised
        assert out.loss == 0 and not bool(q.initialized)
    out = q(z)  # first step after warm-up: k-means on this batch, then quantise
    assert bool(q.initialized) and out.usage == 1.0
    assert out.loss > 0 and (out.quantized - F.normalize(z, dim=-1)).abs().max() > 1e-3  # now quantised


def test_loader_never_warms_up(tmp_path):
    model = MotionTokenizer(MotionTokenizerConfig(dim=32, num_heads=2, stage_depths=(1, 1, 1, 1), quantizer_warmup_steps=100))
    loaded = lavit.load_motion_tokenizer(model.state_dict(), num_heads=2, quantizer_warmup_steps=100)
    x = torch.randn(1, 2, 24, 20, 36)
    q = loaded.encode(x)
    torch.testing.assert_close(q.quantized, loaded.quantize.codebook[q.indices])


def test_input_scale_is_a_change_of_units():
    """With input_scale s the tokenizer sees s * motion and answers in the caller's units."""
    torch.manual_seed(0)
    plain = MotionTokenizer(MotionTokenizerConfig(dim=32, num_heads=2, stage_depths=(1, 1, 1, 1), codebook_size=64, codebook_dim=8)).eval()
    scaled = MotionTokenizer(MotionTokenizerConfig(dim=32, num_heads=2, stage_depths=(1, 1, 1, 1), codebook_size=64, codebook_dim=8, input_scale=0.25)).eval()
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(2, 2, 24, 20, 36)
    assert torch.equal(scaled.tokenize(x), plain.tokenize(0.25 * x))
    torch.testing.assert_close(scaled.reconstruct(x), plain.reconstruct(0.25 * x) / 0.25)
    tokens = scaled.tokenize(x)
    torch.testing.assert_close(scaled.detokenize(tokens), plain.detokenize(tokens) * 4)
    with pytest.raises(ValueError, match="input_scale"):
        MotionTokenizer(MotionTokenizerConfig(dim=32, num_heads=2, stage_depths=(1, 1, 1, 1), input_scale=0.0))
