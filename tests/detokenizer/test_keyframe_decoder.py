"""Keyframe code-to-feature decoder: parity with the official HighresVQDecoder, paper-size layout, the ids path,
padding independence, weights loading, errors."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lavit.detokenizer import KeyframeDecoderConfig, KeyframeFeatureDecoder, load_keyframe_decoder, load_keyframe_decoder_weights
from lavit.modules.spatiotemporal import Float32LayerNorm
from lavit.weights import KNOWN_WEIGHTS, UnsafeWeightsError, WeightsMismatchError
from tests.conftest import SHARED

PARITY = SHARED / "reference" / "keyframe_decoder_tiny_parity.safetensors"
REFERENCE_TSV = SHARED / "reference" / "keyframe_decoder_state_dict.tsv"
CODE_OFFSET = 32002  # LM id of visual code 0 (the official generate_image_embeds subtracts it)


@pytest.fixture(scope="module")
def parity():
    return load_file(str(PARITY))


@pytest.fixture(scope="module")
def tiny(parity):
    """The tiny preset holding the parity file's official weights (strict load of its model.* keys)."""
    return load_keyframe_decoder(PARITY, "tiny")


def _max_err(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_tiny_preset_is_the_parity_files_config():
    with safe_open(str(PARITY), "pt") as f:
        meta = f.metadata()
    official, c = json.loads(meta["config"]), KeyframeDecoderConfig.from_name("tiny")
    widths = official["tiny_hardcoded_widths"]
    assert (c.in_channels, c.dim, c.depth, c.num_heads, c.mlp_ratio, c.num_queries, c.eps) == (
        official["in_chans"], official["embed_dim"], official["depth"], official["num_heads"], official["mlp_ratio"],
        official["num_patches"], official["ln_eps"])
    assert (c.decoder_out_dim, *c.unet_proj_dims, c.pooled_dim) == (
        widths["decoder_out_dim"], widths["unet_proj_1"], widths["unet_proj_2"], widths["pooled"])
    paper, p = json.loads(meta["paper_size_config"]), KeyframeDecoderConfig.from_name("paper")
    assert (p.in_channels, p.dim, p.depth, p.num_heads, p.mlp_hidden, p.decoder_out_dim, *p.unet_proj_dims, p.pooled_dim) == (
        paper["in_chans"], paper["embed_dim"], paper["depth"], paper["num_heads"], paper["mlp_hidden"],
        paper["decoder_out_dim"], paper["unet_proj_1"], paper["unet_proj_2"], paper["pooled"])
    assert p.num_queries == (paper["img_size"] // paper["patch_size"]) ** 2 == 256 and p.prompt_dim == 2048


def test_parity_with_official_module(parity, tiny):
    codes, token_nums = parity["io.quantized"], parity["io.token_nums"]
    assert token_nums.tolist() == [3, 11, 6]  # different counts: the padding and the mask matter
    seen = {}
    hook = tiny.norm.register_forward_hook(lambda m, args, out: seen.update(blocks=args[0], normed=out))
    try:
        with torch.no_grad():
            padded, mask = tiny.embed_codes(codes, token_nums)
            rec = tiny.reconstruct_features(codes, token_nums)
            prompt, pooled = tiny.condition(rec)
            prompt_fwd, pooled_fwd = tiny(codes, token_nums)
    finally:
        hook.remove()
    assert torch.equal(mask, parity["io.codes_mask"])
    assert _max_err(padded, parity["io.codes_padded_plus_pos"]) <= 1e-6  # measured 0
    assert _max_err(seen["blocks"], parity["io.queries_after_blocks"]) <= 1e-5  # measured 1.7e-6
    assert _max_err(seen["normed"], parity["io.queries_normed"]) <= 1e-5  # measured 1.3e-6
    # measured 1.4e-6 (visual_rec), 1.3e-6 (prompt), 4.2e-7 (pooled); values up to 2.0
    assert _max_err(rec, parity["io.visual_rec"]) <= 1e-5
    assert _max_err(prompt, parity["io.prompt_embeds"]) <= 1e-5
    assert _max_err(pooled, parity["io.pooled_prompt_embeds"]) <= 1e-5
    assert torch.equal(prompt_fwd, prompt) and torch.equal(pooled_fwd, pooled)
    assert tuple(rec.shape) == (3, 16, 48) and tuple(prompt.shape) == (3, 16, 64) and tuple(pooled.shape) == (3, 40)


def test_ids_path_equals_codes_path(parity, tiny):
    llm_ids = [parity[f"io.llm_ids.{i}"] for i in range(3)]
    code_ids = [ids[ids - CODE_OFFSET >= 0] - CODE_OFFSET for ids in llm_ids]  # drops [/IMG] and text ids
    assert [len(i) for i in code_ids] == parity["io.token_nums"].tolist()
    assert torch.equal(torch.cat(code_ids), parity["io.code_ids"])
    codebook = parity["codebook.weight"]
    with torch.no_grad():
        prompt, pooled = tiny.decode_ids(code_ids, codebook)
        expected = tiny(parity["io.quantized"], parity["io.token_nums"])
        via_embedding = tiny.decode_ids(code_ids, torch.nn.Embedding.from_pretrained(codebook))
    assert torch.equal(prompt, expected[0]) and torch.equal(pooled, expected[1])
    assert torch.equal(via_embedding[0], prompt)
    assert _max_err(prompt, parity["io.prompt_embeds"]) <= 1e-5
    # the rows as stored: the parity codebook is not unit-norm, so a normalising lookup would differ
    assert (codebook.norm(dim=1) - 1).abs().max() > 0.1


def test_paper_config_matches_reference_layout():
    expected, total = [], None
    for line in REFERENCE_TSV.read_text().splitlines()[1:]:
        if line.startswith("# total"):
            total = int(line.split("\t")[1])
        elif line and not line.startswith("#"):
            name, shape = line.split("\t")[:2]
            expected.append((name, tuple(json.loads(shape))))
    with torch.device("meta"):
        model = KeyframeFeatureDecoder(KeyframeDecoderConfig.from_name("paper"))
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert dict(got) == dict(expected)  # names and shapes, order-free
    assert got == expected  # and the official order
    assert len(got) == 287
    assert sum(p.numel() for p in model.parameters()) == total == 414_002_304
    assert not list(model.buffers())


def test_paper_size_outputs_and_limit_on_meta():
    with torch.device("meta"):
        model = KeyframeFeatureDecoder(KeyframeDecoderConfig.from_name("paper"))
        codes = torch.empty(90 + 256, 32)
        rec = model.reconstruct_features(codes, [90, 256])
        prompt, pooled = model(codes, [90, 256])
        assert tuple(rec.shape) == (2, 256, 1408) and tuple(prompt.shape) == (2, 256, 2048) and tuple(pooled.shape) == (2, 1280)
        with pytest.raises(ValueError, match=r"image 1 has 257 codes, more than the decoder's limit of 256"):
            model(torch.empty(90 + 257, 32), [90, 257])


def test_an_images_output_does_not_depend_on_the_batch(parity, tiny):
    g = torch.Generator().manual_seed(0)
    codebook = parity["codebook.weight"]
    code_ids = [torch.randint(0, 64, (n,), generator=g) for n in (1, 16, 5, 9)]
    with torch.no_grad():
        batch = tiny.decode_ids(code_ids, codebook)
        alone = [tiny.decode_ids([ids], codebook) for ids in code_ids]  # independent truth: no padding at all
        for i, (prompt, pooled) in enumerate(alone):
            assert _max_err(batch[0][i:i + 1], prompt) <= 1e-5  # measured 1.2e-6 (1.9 with the mask disabled)
            assert _max_err(batch[1][i:i + 1], pooled) <= 1e-5
        # teeth: images differ, and one changed code changes that image (and only that one)
        assert (batch[0][0] - batch[0][2]).abs().max() > 0.1
        changed = [ids.clone() for ids in code_ids]
        changed[2][0] = (changed[2][0] + 1) % 64
        other = tiny.decode_ids(changed, codebook)
    assert (other[0][2] - batch[0][2]).abs().max() > 1e-3
    assert _max_err(other[0][[0, 1, 3]], batch[0][[0, 1, 3]]) <= 1e-5


def test_bfloat16_model_keeps_float32_norms(parity, tiny):
    model = KeyframeFeatureDecoder(KeyframeDecoderConfig.from_name("tiny")).eval()
    model.load_state_dict(tiny.state_dict())
    model.to(torch.bfloat16)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 3 * 2 + 1 and all(isinstance(m, Float32LayerNorm) for m in norms)
    with torch.no_grad():  # float32 codebook rows into a bf16 model: cast at in_proj, as official
        prompt, pooled = model(parity["io.quantized"], parity["io.token_nums"])
    assert prompt.dtype == pooled.dtype == torch.bfloat16
    assert _max_err(prompt.float(), parity["io.prompt_embeds"]) < 0.1


def test_bad_inputs_are_typed_errors(parity, tiny):
    codes, codebook = parity["io.quantized"], parity["codebook.weight"]
    with pytest.raises(ValueError, match=r"image 0 has 17 codes, more than the decoder's limit of 16"):
        tiny(torch.zeros(17, 8), [17])
    with pytest.raises(ValueError, match=r"token_nums sum to 19 but 20 codes were given"):
        tiny(codes, torch.tensor([3, 10, 6]))
    with pytest.raises(ValueError, match=r"image 1 has 0 codes; each image needs at least 1"):
        tiny(codes, [14, 0, 6])
    with pytest.raises(ValueError, match=r"token_nums must be a 1-D integer tensor"):
        tiny(codes, torch.tensor([3.0, 11.0, 6.0]))
    with pytest.raises(ValueError, match=r"token_nums is empty"):
        tiny(codes[:0], [])
    with pytest.raises(ValueError, match=r"shape \(sum n_i, 8\).*got \(20, 32\) torch.float32"):
        tiny(torch.zeros(20, 32), [20])
    with pytest.raises(ValueError, match=r"shape \(sum n_i, 8\).*got \(3, 11, 8\)"):
        tiny(torch.zeros(3, 11, 8), [11, 11, 11])
    with pytest.raises(ValueError, match=r"code_ids\[1\] holds id 64 outside the codebook's 0..63"):
        tiny.decode_ids([torch.tensor([1, 2]), torch.tensor([3, 64])], codebook)
    with pytest.raises(ValueError, match=r"code_ids\[0\] holds id -1 outside"):
        tiny.decode_ids([torch.tensor([-1])], codebook)
    with pytest.raises(ValueError, match=r"code_ids\[0\] must be a 1-D integer tensor"):
        tiny.decode_ids([torch.tensor([1.0])], codebook)
    with pytest.raises(ValueError, match=r"codebook must be a floating-point tensor of shape \(n_code, 8\), got \(64, 32\)"):
        tiny.decode_ids([torch.tensor([1])], torch.zeros(64, 32))
    with pytest.raises(ValueError, match=r"non-empty list"):
        tiny.decode_ids([], codebook)
    with pytest.raises(ValueError, match=r"decoder's limit of 16"):
        tiny.decode_ids([torch.zeros(17, dtype=torch.long)], codebook)
    with pytest.raises(ValueError, match=r"dim 60 is not divisible by num_heads 16"):
        KeyframeDecoderConfig(dim=60)
    with pytest.raises(ValueError, match=r"unknown keyframe decoder preset 'huge'"):
        KeyframeDecoderConfig.from_name("huge")


def test_weights_load_from_official_layouts(parity, tiny, tmp_path, monkeypatch):
    state = {k[len("model."):]: v for k, v in parity.items() if k.startswith("model.")}
    name = KNOWN_WEIGHTS["keyframe_decoder"].name
    assert name == "highres_tokenizer_decoder.bin" and "rain1011/Video-LaVIT-v1" in KNOWN_WEIGHTS["keyframe_decoder"].source_url
    (tmp_path / "visual_tokenizer").mkdir()
    torch.save(state, tmp_path / "visual_tokenizer" / name)  # a Video-LaVIT root, official key layout
    save_file(state, str(tmp_path / "decoder.safetensors"))
    x = (parity["io.quantized"], parity["io.token_nums"])
    with torch.no_grad():
        expected = tiny(*x)
        for source in (tmp_path, tmp_path / "visual_tokenizer", tmp_path / "visual_tokenizer" / name,
                       tmp_path / "decoder.safetensors", state):
            loaded = load_keyframe_decoder(source, "tiny")
            assert torch.equal(loaded(*x)[0], expected[0]), source
        monkeypatch.setenv("LAVIT_WEIGHTS_DIR", str(tmp_path / "visual_tokenizer"))
        assert torch.equal(load_keyframe_decoder(None, "tiny")(*x)[1], expected[1])
    model = KeyframeFeatureDecoder(KeyframeDecoderConfig.from_name("tiny"))
    assert load_keyframe_decoder_weights(model, tmp_path) is model


def test_weights_errors_name_the_problem(parity, tmp_path, monkeypatch):
    monkeypatch.delenv("LAVIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)highres_tokenizer_decoder.bin.*not published.*rain1011/Video-LaVIT-v1"):
        load_keyframe_decoder(None, "tiny")
    with pytest.raises(FileNotFoundError, match=r"(?s)highres_tokenizer_decoder.bin.*does not exist"):
        load_keyframe_decoder(tmp_path, "tiny")
    state = {k[len("model."):]: v for k, v in parity.items() if k.startswith("model.")}
    with torch.device("meta"), pytest.raises(WeightsMismatchError,
                                             match=r"size mismatch for in_proj.weight: \(64, 8\) in the file, \(1408, 32\)"):
        load_keyframe_decoder(state, KeyframeDecoderConfig(depth=2))  # the paper widths
    with pytest.raises(WeightsMismatchError, match=r"missing keys \['norm.bias'\]"):
        load_keyframe_decoder({k: v for k, v in state.items() if k != "norm.bias"}, "tiny")
    torch.save({"state": state, "extra": KeyframeDecoderConfig()}, tmp_path / "unsafe.bin")
    with pytest.raises(UnsafeWeightsError):
        load_keyframe_decoder(tmp_path / "unsafe.bin", "tiny")
