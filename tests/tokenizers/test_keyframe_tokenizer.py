"""Keyframe tokenizer (selector, merger, quantiser, vit_proj): parity with the official module on the tiny
file (stored Gumbel draws replayed), paper-size layout, reproducible selection, LM ids, input errors."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lavit.tokenizers import KeyframeTokenizer, KeyframeTokenizerConfig
from tests.conftest import SHARED

PARITY = SHARED / "reference" / "visual_tokenizer_tiny_parity.safetensors"
REFERENCE_TSV = SHARED / "reference" / "visual_tokenizer_state_dict.tsv"


@pytest.fixture(scope="module")
def parity():
    return load_file(str(PARITY))


@pytest.fixture(scope="module")
def model(parity):
    m = KeyframeTokenizer("tiny").eval()
    m.load_state_dict({k[len("model."):]: v for k, v in parity.items() if k.startswith("model.")}, strict=True)
    return m


@pytest.fixture(scope="module")
def features(parity):
    return parity["io.input"][:, 1:]  # metadata calling_convention: io.input is the encoder output with CLS


def test_tiny_preset_is_the_parity_files_config():
    import json

    with safe_open(str(PARITY), "pt") as f:
        ref = json.loads(f.metadata()["config"])
    c = KeyframeTokenizerConfig.from_name("tiny")
    assert (c.img_size, c.patch_size, c.width, c.layers, c.heads, c.mlp_hidden, c.n_code, c.code_dim, c.num_patches) == (
        ref["img_size"], ref["patch_size"], ref["width"], ref["layers"], ref["heads"], ref["mlp_hidden"], ref["n_code"],
        ref["code_dim"], ref["num_patches"])
    assert (c.llm_embed_dim, c.llm_code_offset, c.img_start, c.img_end, c.ln_eps) == (
        ref["llm_embed_dim"], ref["llm_code_offset"], ref["img_start"], ref["img_end"], ref["ln_eps"])


def test_gumbel_parity_with_replayed_draws(model, parity, features):
    draws = parity["io.tokenize.gumbel_exp_draws"]
    out = model.encode(features, selection="gumbel", exponential_draws=draws)
    assert (out.pred_score - parity["io.tokenize.pred_score"]).abs().max() <= 1e-5
    assert torch.equal(out.keep.detach(), parity["io.tokenize.keep_mask"])
    assert torch.equal(out.token_nums, parity["io.tokenize.token_nums"])
    # measured 0.0 on CPU float32 (bit-identical); the acceptance bound is 1e-5
    assert (out.merged - parity["io.tokenize.merged"]).abs().max() <= 1e-5
    assert (out.to_quantizer - parity["io.tokenize.to_quantizer"]).abs().max() <= 1e-5
    assert (out.quantized - parity["io.tokenize.quantized"]).abs().max() <= 1e-5
    assert torch.equal(out.code_ids, parity["io.tokenize.code_ids"])
    keep = model.select(features, selection="gumbel", exponential_draws=draws)
    assert keep.dtype == torch.bool and torch.equal(keep, parity["io.tokenize.keep_mask"].bool())
    ids = model.tokenize_features(features, selection="gumbel", exponential_draws=draws)
    assert [len(i) for i in ids] == parity["io.tokenize.token_nums"].tolist() and all(i.dtype == torch.int64 for i in ids)
    assert torch.equal(torch.cat(ids), parity["io.tokenize.code_ids"])
    assert torch.equal(torch.cat(model.to_lm_ids(ids, add_special=False)), parity["io.tokenize.llm_ids"])
    assert torch.equal(torch.cat(model.to_lm_ids(ids)), parity["io.tokenize.llm_ids_with_special"])


def test_gumbel_from_a_generator_reproduces_the_official_draws(model, parity, features):
    # metadata gumbel_replay: the draws came from the CPU generator right after torch.manual_seed(1234)
    keep = model.select(features, selection="gumbel", generator=torch.Generator().manual_seed(1234))
    assert torch.equal(keep, parity["io.tokenize.keep_mask"].bool())


def test_merger_blocks_match_stored_intermediates(model, parity, features):
    keep = parity["io.tokenize.keep_mask"]
    x_origin = model.causal_encoder.ln_vision(features)
    assert (x_origin - parity["io.tokenize.x_origin"]).abs().max() <= 1e-5
    x = features
    for i, block in enumerate(model.causal_encoder.blocks):
        x = block(x, x_origin, keep)
        assert (x - parity[f"io.tokenize.merger_block{i}"]).abs().max() <= 1e-5


def test_deterministic_selection_matches_io_det(model, parity, features):
    assert model.selection == "deterministic"  # the config default
    out = model.encode(features)
    assert torch.equal(out.keep, parity["io.det.keep_mask"])
    assert torch.equal(out.token_nums, parity["io.det.token_nums"])
    assert (out.merged - parity["io.det.merged"]).abs().max() <= 1e-5
    assert torch.equal(out.code_ids, parity["io.det.code_ids"])
    assert (out.quantized - parity["io.det.quantized"]).abs().max() <= 1e-5
    assert (torch.cat(model.encode_features(features)) - parity["io.det.features"]).abs().max() <= 1e-5
    first, second = model.tokenize_features(features), model.tokenize_features(features.clone())
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert torch.equal(torch.cat(first), parity["io.det.code_ids"])


def test_understanding_features_parity(model, parity, features):
    feats = model.encode_features(features, selection="gumbel", exponential_draws=parity["io.understand.gumbel_exp_draws"])
    assert [len(f) for f in feats] == parity["io.understand.token_nums"].tolist()
    assert all(f.shape[1] == 4096 for f in feats)
    assert (torch.cat(feats) - parity["io.understand.features"]).abs().max() <= 1e-5


def test_seeded_gumbel_is_reproducible_and_seeds_differ(model):
    x = torch.randn(8, 16, 64, generator=torch.Generator().manual_seed(0))
    a = model.select(x, selection="gumbel", generator=torch.Generator().manual_seed(7))
    b = model.select(x, selection="gumbel", generator=torch.Generator().manual_seed(7))
    c = model.select(x, selection="gumbel", generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    ids_a = model.tokenize_features(x, selection="gumbel", generator=torch.Generator().manual_seed(7))
    ids_b = model.tokenize_features(x, selection="gumbel", generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(p, q) for p, q in zip(ids_a, ids_b))


def test_gumbel_keep_carries_straight_through_gradient(model, features):
    x = features.clone().requires_grad_(True)
    out = model.encode(x, selection="gumbel", generator=torch.Generator().manual_seed(0))
    assert set(out.keep.detach().unique().tolist()) <= {0.0, 1.0}
    out.merged.sum().backward()
    assert model.token_predictor.out_conv[4].weight.grad is not None
    assert model.token_predictor.out_conv[4].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_paper_config_matches_reference_layout():
    expected, total = {}, None
    for line in REFERENCE_TSV.read_text().splitlines():
        if line.startswith("# total"):
            total = int(line.split("\t")[1])
        elif line and not line.startswith("#") and not line.startswith("name\t"):
            name, shape = line.split("\t")[:2]
            expected[name] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    with torch.device("meta"):
        model = KeyframeTokenizer("paper")
    assert model.encoder is None  # the tsv holds no encoder.* (EVA: eva_vit_g_state_dict.tsv)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert total == 409_819_394 == sum(p.numel() for p in model.parameters())
    assert model.num_patches == 256 and model.config.selection == "deterministic"


def test_lm_id_helpers_round_trip_and_reject_foreign_ids(model):
    codes = torch.tensor([0, 5, 63])
    assert model.to_lm_ids(codes).tolist() == [32000, 32002, 32007, 32065, 32001]
    assert model.to_lm_ids(codes, add_special=False).tolist() == [32002, 32007, 32065]
    assert torch.equal(model.from_lm_ids(model.to_lm_ids(codes)), codes)
    assert torch.equal(model.from_lm_ids(model.to_lm_ids(codes, add_special=False)), codes)
    with pytest.raises(ValueError, match=r"outside the visual range 32002\.\.32065.*\[32066\]"):
        model.from_lm_ids(torch.tensor([32000, 32002, 32066, 32001]))  # tiny codebook: 64 codes
    with pytest.raises(ValueError, match=r"outside the visual range.*\[1\]"):
        model.from_lm_ids(torch.tensor([1, 32002]))
    with pytest.raises(ValueError, match=r"code ids must lie in \[0, 64\), got \[-1, 5\]"):
        model.to_lm_ids(torch.tensor([-1, 5]))
    with pytest.raises(ValueError, match=r"code ids must lie in \[0, 64\), got \[0, 64\]"):
        model.to_lm_ids(torch.tensor([0, 64]))


def test_bad_input_names_expected_shape(model, parity):
    with pytest.raises(ValueError, match=r"shape \(B, 16, 64\).*got \(3, 17, 64\)"):
        model.tokenize_features(parity["io.input"])  # CLS not dropped
    with pytest.raises(ValueError, match=r"shape \(B, 16, 64\).*got \(2, 16, 32\)"):
        model.select(torch.zeros(2, 16, 32))
    with pytest.raises(ValueError, match=r"floating-point.*torch.int64"):
        model.encode_features(torch.zeros(1, 16, 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"non-finite"):
        model.tokenize_features(torch.full((1, 16, 64), float("nan")))
    with pytest.raises(ValueError, match=r"selection must be one of"):
        model.tokenize_features(torch.zeros(1, 16, 64), selection="argmax")
    with pytest.raises(ValueError, match=r"selection must be one of"):
        KeyframeTokenizerConfig(selection="argmax")
    with pytest.raises(ValueError, match=r"exponential_draws must have the selector's shape \(1, 16, 2\)"):
        model.select(torch.zeros(1, 16, 64), selection="gumbel", exponential_draws=torch.ones(1, 16, 3))
    with pytest.raises(ValueError, match=r"images must be .* \(B, 3, 56, 56\)"):
        KeyframeTokenizer("tiny", encoder=torch.nn.Identity()).tokenize(torch.zeros(1, 3, 224, 224))
    with pytest.raises(RuntimeError, match=r"no encoder"):
        model.tokenize(torch.zeros(1, 3, 56, 56))


def test_quantizer_tokenize_equals_its_training_lookup(model):
    z = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    q, idx = model.quantize.tokenize(z)
    out = model.quantize.eval()(z)
    assert torch.equal(idx, out.indices) and torch.allclose(q, out.quantized, atol=1e-6)


def test_sdpa_attention_matches_the_exact_soft_policy_on_the_parity_inputs(model, parity, features):
    """config attention="sdpa" (scaled_dot_product_attention, additive log-policy mask) against the official exact
    soft-policy path: same keep masks and code ids, merged and understanding features within 5e-5 (the dropped eps
    terms of the official softmax; measured 1.8e-5 at most), for the
    replayed Gumbel draws and the deterministic selection."""
    sdpa = KeyframeTokenizer({**model.config.to_dict(), "attention": "sdpa"}).eval()
    sdpa.load_state_dict(model.state_dict(), strict=True)
    assert sdpa.causal_encoder.blocks[0].token_cross_attn.attention == "sdpa"
    with torch.no_grad():
        for kwargs, prefix in ((dict(selection="gumbel", exponential_draws=parity["io.tokenize.gumbel_exp_draws"]), "io.tokenize"),
                               (dict(selection="deterministic"), "io.det")):
            out = sdpa.encode(features, **kwargs)
            assert torch.equal(out.keep, parity[f"{prefix}.keep_mask"])
            assert (out.merged - parity[f"{prefix}.merged"]).abs().max() <= 5e-5  # measured 1.8e-5 (eps terms dropped)
            assert torch.equal(out.code_ids, parity[f"{prefix}.code_ids"])
        feats = sdpa.encode_features(features, selection="gumbel", exponential_draws=parity["io.understand.gumbel_exp_draws"])
        assert (torch.cat(feats) - parity["io.understand.features"]).abs().max() <= 5e-5


def test_sdpa_policy_attention_rows_without_visible_keys_and_gradients():
    from lavit.tokenizers.keyframe_tokenizer import policy_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=g) for _ in range(3))
    policy = torch.ones(2, 1, 1, 5)
    policy[0] = 0  # image 0 keeps every patch: its cross-attention sees no dropped key -> the official uniform row
    policy[1, ..., 3] = 0
    exact = policy_attention(q, k, v, policy, 0.5, 1e-6, "exact")
    sdpa = policy_attention(q, k, v, policy, 0.5, 1e-6, "sdpa")
    assert torch.allclose(exact[0], v[0].mean(-2, keepdim=True).expand_as(exact[0]), atol=1e-6)
    assert (sdpa - exact).abs().max() <= 1e-5 and torch.isfinite(sdpa).all()
    # a policy with a gradient (straight-through Gumbel keep in training) runs the exact path: the selector's signal
    soft = policy.clone().requires_grad_(True)
    policy_attention(q, k, v, soft, 0.5, 1e-6, "sdpa").sum().backward()
    assert soft.grad is not None and torch.isfinite(soft.grad).all() and soft.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"attention must be one of \('exact', 'sdpa'\), got 'flash'"):
        policy_attention(q, k, v, policy, 0.5, 1e-6, "flash")
    with pytest.raises(ValueError, match="attention must be one of"):
        KeyframeTokenizerConfig(attention="flash")
