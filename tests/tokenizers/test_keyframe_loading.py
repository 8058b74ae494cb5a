"""lavit.load_keyframe_tokenizer: official file layout (tokenizer_encoder.bin + eva_vitg_psz14.bin [+ visual_weight.bin])
in a Video-LaVIT root folder, safetensors round trip, strict per-component errors, missing files named. Tiny random
components saved by the test itself."""

from __future__ import annotations

import pytest
import torch

import lavit
from lavit.tokenizers import KeyframeTokenizer
from lavit.tokenizers.keyframe_loading import save_keyframe_tokenizer
from lavit.weights import WeightsMismatchError

COMPONENTS = ("token_predictor.", "causal_encoder.", "quantize.", "encode_task_layer.")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return KeyframeTokenizer.with_encoder("tiny").eval()


@pytest.fixture()
def root(tmp_path, model):
    """A Video-LaVIT root: visual_tokenizer/{tokenizer_encoder.bin, eva_vitg_psz14.bin}, language_model_sft/visual_weight.bin."""
    state = model.state_dict()
    (tmp_path / "visual_tokenizer").mkdir()
    (tmp_path / "language_model_sft").mkdir()
    torch.save({k: v for k, v in state.items() if k.startswith(COMPONENTS)}, tmp_path / "visual_tokenizer" / "tokenizer_encoder.bin")
    torch.save({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")},
               tmp_path / "visual_tokenizer" / "eva_vitg_psz14.bin")
    # the understanding weights as the HF model names them (prefix model.visual_tokenizer.)
    torch.save({f"model.visual_tokenizer.{k}": v for k, v in state.items() if k.startswith(("causal_encoder.", "vit_proj."))},
               tmp_path / "language_model_sft" / "visual_weight.bin")
    return tmp_path


def images(n=3, seed=1):
    return torch.randn(n, 3, 56, 56, generator=torch.Generator().manual_seed(seed))


def assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_root_folder_loads_every_component(root, model):
    loaded = lavit.load_keyframe_tokenizer(root, "tiny")
    assert_same(loaded, model)
    assert "encoder" in loaded.loaded_components and "vit_proj (visual_weight.bin)" in loaded.loaded_components
    x = images()
    assert [t.tolist() for t in loaded.tokenize(x)] == [t.tolist() for t in model.tokenize(x)]
    feats, ref = loaded.encode_features(x), model.encode_features(x)
    assert all(torch.equal(a, b) for a, b in zip(feats, ref))


def test_tokenizer_file_finds_the_encoder_beside_it(root, model):
    loaded = lavit.load_keyframe_tokenizer(root / "visual_tokenizer" / "tokenizer_encoder.bin", "tiny")
    assert torch.equal(loaded.encoder.patch_embed.proj.weight, model.encoder.patch_embed.proj.weight)
    assert "vit_proj" not in " ".join(loaded.loaded_components)  # no visual_weight.bin given


def test_understanding_weights_replace_the_merger(root, model):
    other = {k: v + 1.0 for k, v in model.state_dict().items() if k.startswith(("causal_encoder.", "vit_proj."))}
    torch.save(other, root / "visual_weight_other.bin")
    loaded = lavit.load_keyframe_tokenizer(root / "visual_tokenizer", "tiny", understanding_weights=root / "visual_weight_other.bin")
    assert torch.equal(loaded.vit_proj.weight, model.vit_proj.weight + 1.0)
    assert torch.equal(loaded.causal_encoder.norm.weight, model.causal_encoder.norm.weight + 1.0)
    assert torch.equal(loaded.token_predictor.in_conv[1].weight, model.token_predictor.in_conv[1].weight)


def test_safetensors_round_trip_keeps_config_and_overrides(tmp_path, model):
    path = save_keyframe_tokenizer(model, tmp_path / "kf.safetensors")
    loaded = lavit.load_keyframe_tokenizer(path)  # config from the metadata
    assert loaded.config == model.config
    assert_same(loaded, model)
    assert lavit.load_keyframe_tokenizer(path, selection="gumbel").selection == "gumbel"
    bare = lavit.load_keyframe_tokenizer(save_keyframe_tokenizer(model, tmp_path / "b.safetensors", with_encoder=False),
                                         with_encoder=False)
    assert bare.encoder is None


def test_missing_tokenizer_file_names_it_and_its_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer_encoder\.bin.*\n(.*\n)*.*rain1011/Video-LaVIT-v1"):
        lavit.load_keyframe_tokenizer(tmp_path, "tiny")


def test_missing_encoder_and_understanding_files_are_named(root):
    (root / "visual_tokenizer" / "eva_vitg_psz14.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"eva_vitg_psz14\.bin"):
        lavit.load_keyframe_tokenizer(root, "tiny")
    with pytest.raises(FileNotFoundError, match=r"visual_weight\.bin(.*\n)*.*LaVIT-7B-v2"):
        lavit.load_keyframe_tokenizer(root, "tiny", with_encoder=False, understanding_weights=root / "nope.bin")


def test_component_missing_or_mismatched_is_named(root, model):
    state = {k: v for k, v in model.state_dict().items() if k.startswith(COMPONENTS)}
    no_quant = {k: v for k, v in state.items() if not k.startswith("quantize.")}
    with pytest.raises(WeightsMismatchError, match=r"quantize\.\* \(codebook\)"):
        lavit.load_keyframe_tokenizer(no_quant, "tiny", with_encoder=False)
    short = {k: v for k, v in state.items() if k != "causal_encoder.norm.bias"}
    with pytest.raises(WeightsMismatchError, match=r"\[causal_encoder\].*missing keys \['norm\.bias'\]"):
        lavit.load_keyframe_tokenizer(short, "tiny", with_encoder=False)
    with pytest.raises(WeightsMismatchError, match=r"size mismatch for embedding\.weight"):
        lavit.load_keyframe_tokenizer(state, "tiny", with_encoder=False, n_code=32)
    with pytest.raises(WeightsMismatchError, match=r"unexpected keys.*lm_head\.weight"):
        lavit.load_keyframe_tokenizer({**state, "lm_head.weight": torch.zeros(2)}, "tiny", with_encoder=False)


class Evil:
    """Any non-tensor object: ``torch.load(weights_only=True)`` refuses to unpickle it."""


def test_pickled_objects_are_refused(tmp_path):
    from lavit.weights import UnsafeWeightsError

    torch.save({"token_predictor.in_conv.0.weight": Evil()}, tmp_path / "tokenizer_encoder.bin")
    with pytest.raises(UnsafeWeightsError):
        lavit.load_keyframe_tokenizer(tmp_path, "tiny")
