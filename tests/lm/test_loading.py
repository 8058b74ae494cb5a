"""load_multimodal_lm / save_multimodal_lm: HF folders (official language_model_sft layout with its tokenizer tensors,
a 32000-id Llama resized), .safetensors state dicts, MultimodalLM checkpoints, the export round trip, the errors,
and the llama2_7b layout against the reference state-dict table."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import lavit
from lavit.lm import MultimodalLMConfig
from lavit.lm.loading import load_multimodal_lm, save_multimodal_lm
from lavit.weights import UnsafeWeightsError, WeightsMismatchError
from tests.conftest import SHARED

PARITY = SHARED / "reference" / "lm_understanding_tiny_parity.safetensors"
REFERENCE_TSV = SHARED / "reference" / "lm_hf_state_dict.tsv"


@pytest.fixture(scope="module")
def official():
    """The fixture's VideoLaVITLlamaForCausalLM state dict (keys model.*, model.visual_tokenizer.*; tied head)."""
    return {k[len("model."):]: v for k, v in load_file(str(PARITY)).items() if k.startswith("model.")}


def _sft_folder(tmp_path, state, fmt="safetensors"):
    folder = tmp_path / "language_model_sft"
    folder.mkdir()
    llama = MultimodalLMConfig.from_name("tiny").llama_config().to_dict()
    llama["architectures"] = ["VideoLaVITLlamaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(llama))
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


def _logits(model, ids=(1, 500, 32000, 32005, 32001, 48386, 48390, 48387, 7)):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_official_sft_folder_loads_the_llama_and_skips_the_tokenizers(tmp_path, official, fmt):
    model = lavit.load_multimodal_lm(_sft_folder(tmp_path, official, fmt))
    assert not model.training and model.config.vocab_size == 49412
    assert model.lavit_skipped == {"model.visual_tokenizer": sum(k.startswith("model.visual_tokenizer.") for k in official)}
    assert torch.equal(model.model.embed_tokens.weight, official["model.embed_tokens.weight"])
    assert torch.equal(model.lm_head.weight, official["model.embed_tokens.weight"])  # tied
    assert torch.equal(model.model.layers[1].mlp.down_proj.weight, official["model.layers.1.mlp.down_proj.weight"])
    # the same model from the fixture file itself (LlamaConfig in its lm_config metadata)
    assert torch.equal(_logits(model), _logits(load_multimodal_lm(PARITY)))


def test_folder_with_unexpected_or_missing_llama_keys_is_named(tmp_path, official):
    state = dict(official)
    state["model.layers.0.extra.weight"] = torch.zeros(2)
    del state["model.norm.weight"]
    with pytest.raises(WeightsMismatchError, match=r"missing keys \['model.norm.weight'\].*unexpected keys \['model.layers.0.extra.weight'\]"):
        load_multimodal_lm(_sft_folder(tmp_path, state))


def test_text_only_llama_gets_its_embeddings_resized(tmp_path):
    from transformers import LlamaForCausalLM

    config = MultimodalLMConfig.from_name("tiny", tie_word_embeddings=False)
    llama = config.llama_config()
    llama.vocab_size = 32000
    torch.manual_seed(0)
    text = LlamaForCausalLM(llama)
    text.save_pretrained(tmp_path / "llama")
    model = load_multimodal_lm(tmp_path / "llama")
    old = text.model.embed_tokens.weight
    new = model.model.embed_tokens.weight
    assert new.shape == (49412, 16) and model.lm_head.weight.shape == (49412, 16)
    assert torch.equal(new[:32000], old)
    # mean resizing: the 17412 new rows are drawn around the old rows' mean (std 0.02 init -> mean ~0)
    assert (new[32000:].mean(0) - old.mean(0)).abs().max() < 0.01
    assert not torch.equal(new[32000], new[32001])


def test_safetensors_state_dict_needs_a_config_and_checks_sizes(tmp_path, official):
    llama = {k: v for k, v in official.items() if not k.startswith("model.visual_tokenizer.")}
    path = tmp_path / "lm.safetensors"
    save_file(llama, str(path))
    with pytest.raises(ValueError, match="pass config="):
        load_multimodal_lm(path)
    model = load_multimodal_lm(path, "tiny")
    assert torch.equal(_logits(model), _logits(load_multimodal_lm(PARITY)))
    with pytest.raises(WeightsMismatchError, match="hidden_size 16 in the file, 32 in the config"):
        load_multimodal_lm(path, MultimodalLMConfig.from_name("tiny", hidden_size=32))
    with pytest.raises(WeightsMismatchError, match="49412 embedding rows in the file, the config's vocabulary has 49420"):
        load_multimodal_lm(path, "tiny", motion_codes=1032)


def test_lightning_checkpoint(tmp_path, official):
    llama = {f"lm.{k}": v for k, v in official.items() if not k.startswith("model.visual_tokenizer.")}
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": llama, "hyper_parameters": {"lm": MultimodalLMConfig.from_name("tiny").to_dict()},
                "epoch": 0}, path)
    assert torch.equal(_logits(load_multimodal_lm(path)), _logits(load_multimodal_lm(PARITY)))
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": llama, "hyper_parameters": {"lm": object()}}, bad)
    with pytest.raises(UnsafeWeightsError):
        load_multimodal_lm(bad)


def test_export_round_trip_plain_transformers(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

    model = load_multimodal_lm(PARITY)
    words = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(words, unk_token="<unk>")), unk_token="<unk>",
                                  bos_token="<s>", eos_token="</s>")
    small = MultimodalLMConfig.from_name("tiny").vocabulary.__class__(text_size=4, visual_codes=8, motion_codes=4)
    small.extend_tokenizer(tok)
    folder = save_multimodal_lm(model, tmp_path / "export", text_tokenizer=tok)
    plain = LlamaForCausalLM.from_pretrained(folder)
    assert torch.equal(_logits(plain), _logits(model))
    again = load_multimodal_lm(folder)
    assert torch.equal(_logits(again), _logits(model)) and again.config.lavit_vocabulary["text_size"] == 32000
    assert len(AutoTokenizer.from_pretrained(folder)) == small.size


def test_missing_sources_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.*rain1011/Video-LaVIT-v1.*language_model_sft.*meta-llama/Llama-2-7b-hf"):
        load_multimodal_lm(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_multimodal_lm(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(MultimodalLMConfig.from_name("tiny").llama_config().to_dict()))
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors or pytorch_model\\*.bin"):
        load_multimodal_lm(tmp_path / "empty")


def test_llama2_7b_layout_equals_the_reference_table():
    from transformers import LlamaForCausalLM

    rows = [line.split("\t") for line in REFERENCE_TSV.read_text().splitlines()[1:] if not line.startswith("#")]
    expected = {name: json.loads(shape) for name, shape, _ in rows
                if not name.startswith(("model.visual_tokenizer.", "model.motion_tokenizer."))}
    with torch.device("meta"):
        model = LlamaForCausalLM(MultimodalLMConfig.from_name("llama2_7b").llama_config())
    got = {name: list(t.shape) for name, t in model.state_dict().items()}
    assert got == expected
    assert sum(t.numel() for t in model.parameters()) == 6_881_054_720
