"""EVA-CLIP ViT-g/14 encoder: parity with the official module, paper-size layout, input errors, bf16, loading."""

import contextlib
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.nn.attention import SDPBackend, sdpa_kernel

from lavit.tokenizers import EVAVisionConfig, EVAVisionEncoder, load_eva_encoder
from lavit.video.keyframes import preprocess_keyframes
from lavit.weights import WeightsMismatchError, safetensors_metadata
from tests.conftest import SHARED

PARITY = SHARED / "reference" / "eva_vit_tiny_parity.safetensors"
REFERENCE_TSV = SHARED / "reference" / "eva_vit_g_state_dict.tsv"


@pytest.fixture(scope="module")
def parity():
    return load_file(str(PARITY))


@pytest.fixture(scope="module")
def tiny():
    return load_eva_encoder(PARITY, "tiny")


def test_tiny_preset_is_the_parity_files_config():
    official = json.loads(safetensors_metadata(PARITY)["config"])
    assert EVAVisionConfig.from_official(official) == EVAVisionConfig.from_name("tiny")
    assert EVAVisionConfig.from_official(json.loads(safetensors_metadata(PARITY)["paper_size_config"])) == EVAVisionConfig()


@pytest.mark.parametrize("backend", [None, SDPBackend.MATH])
def test_parity_with_official_module(tiny, parity, backend):
    image = parity["io.image"]
    with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():  # None: what SDPA picks
        features, patches = tiny(image), tiny.patch_features(image)
    assert features.shape == parity["io.all_features"].shape == (3, 17, 64)
    assert (features - parity["io.all_features"]).abs().max() <= 1e-5  # measured 1.7e-6 (default), 0 (math)
    assert torch.equal(patches, features[:, 1:])
    # norm and head are unused by LaVIT; this checks they sit under the official names
    assert (tiny.head(tiny.norm(features)[:, 0]) - parity["io.head_output"]).abs().max() <= 1e-5


def _reference_layout():
    expected, totals = {}, {}
    for line in REFERENCE_TSV.read_text().splitlines()[1:]:
        if line.startswith("# group") or line.startswith("# total"):
            fields = line[2:].split("\t")
            totals[fields[-2]] = int(fields[-1])
        elif line and not line.startswith("#"):
            name, shape = line.split("\t")[:2]
            expected[name] = tuple(int(s) for s in shape.strip("[]").split(","))
    return expected, totals


def test_paper_config_matches_reference_layout():
    expected, totals = _reference_layout()
    with torch.device("meta"):
        model = EVAVisionEncoder("paper")
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(layout.items()) == list(expected.items())  # names, shapes and order
    count = sum(p.numel() for p in model.parameters())
    assert count == totals["total"] == 1_012_588_928  # incl. the unused norm (2,816) and head (1,442,816)
    assert sum(p.numel() for p in model.blocks.parameters()) == totals["blocks"] == 1_009_950_720
    assert sum(p.numel() for m in (model.norm, model.head) for p in m.parameters()) == 1_445_632
    c = model.config
    assert (c.mlp_hidden, c.num_patches, c.width // c.num_heads) == (6144, 256, 88)


def test_frozen():
    model = EVAVisionEncoder("tiny")
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


def test_bad_images_are_named(tiny):
    with pytest.raises(ValueError, match=r"shape \(B, 3, 56, 56\), got \(1, 3, 56, 55\)"):
        tiny(torch.zeros(1, 3, 56, 55))
    with pytest.raises(ValueError, match=r"shape \(B, 3, 56, 56\), got \(3, 56, 56\)"):
        tiny(torch.zeros(3, 56, 56))
    with pytest.raises(ValueError, match=r"floating-point.*torch.uint8"):
        tiny(torch.zeros(1, 3, 56, 56, dtype=torch.uint8))
    pixels = torch.randint(0, 256, (1, 3, 56, 56)).float()
    with pytest.raises(ValueError, match=r"not look CLIP-normalised.*CLIP_MEAN / CLIP_STD"):
        tiny(pixels)
    with pytest.raises(ValueError, match=r"not look CLIP-normalised"):
        tiny.patch_features(torch.full((1, 3, 56, 56), float("nan")))


def test_clip_normalised_extremes_pass(tiny):
    frames = torch.zeros(2, 56, 56, 3, dtype=torch.uint8)
    frames[1] = 255  # black and white images: the ends of the CLIP-normalised range
    features = tiny.patch_features(preprocess_keyframes(frames.numpy(), size=56))
    assert features.shape == (2, 16, 64) and torch.isfinite(features).all()


def test_bfloat16_autocast_and_cast_module_are_close_to_float32(tiny, parity):
    image = parity["io.image"]
    reference = tiny(image)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = tiny(image)
    cast = load_eva_encoder(PARITY, "tiny").to(torch.bfloat16)
    half = cast(image)
    assert mixed.dtype == torch.float32 and half.dtype == torch.bfloat16
    for out in (mixed, half.float()):  # measured 0.5% (autocast) and 0.6% (bf16 module)
        assert (out - reference).norm() / reference.norm() < 0.02
        assert torch.nn.functional.cosine_similarity(out, reference, dim=-1).min() > 0.999


def test_loading_formats_and_errors(tmp_path, parity, monkeypatch):
    state = {k[len("model."):]: v for k, v in parity.items() if k.startswith("model.")}
    image, want = parity["io.image"], parity["io.all_features"]
    folder = tmp_path / "Video-LaVIT-v1" / "visual_tokenizer"
    folder.mkdir(parents=True)
    torch.save(state, folder / "eva_vitg_psz14.bin")  # official name and layout, read with weights_only=True
    for source in (folder / "eva_vitg_psz14.bin", folder.parent, folder):
        assert (load_eva_encoder(source, "tiny")(image) - want).abs().max() <= 1e-5
    monkeypatch.setenv("LAVIT_WEIGHTS_DIR", str(folder))
    assert (load_eva_encoder(config="tiny")(image) - want).abs().max() <= 1e-5
    prefixed = tmp_path / "tokenizer.safetensors"
    save_file({f"encoder.{k}": v for k, v in state.items()}, str(prefixed))
    assert (load_eva_encoder(prefixed, "tiny")(image) - want).abs().max() <= 1e-5
    other = tmp_path / "other"
    other.mkdir()
    torch.save(state, other / "eva_vit_psz14.bin")  # the spelling
    assert (load_eva_encoder(other, "tiny")(image) - want).abs().max() <= 1e-5
    assert (load_eva_encoder(state, EVAVisionConfig.from_name("tiny"))(image) - want).abs().max() <= 1e-5

    broken = dict(state)
    del broken["norm.weight"]
    with pytest.raises(WeightsMismatchError, match=r"missing keys \['norm.weight'\]"):
        load_eva_encoder(broken, "tiny")
    with pytest.raises(WeightsMismatchError, match=r"size mismatch for pos_embed: \(1, 17, 64\) in the file, \(1, 257, 1408\)"):
        load_eva_encoder(state)  # the paper config needs the paper-size file
    with pytest.raises(FileNotFoundError, match=r"(?s)eva_vitg_psz14.bin.*obtain it from: https://huggingface.co/rain1011/Video-LaVIT-v1"):
        load_eva_encoder(tmp_path / "empty-dir-that-does-not-exist")
