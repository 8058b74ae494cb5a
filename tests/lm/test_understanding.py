"""Understanding input: media spliced at <image> / <video> placeholders, parity with the official
``prepare_inputs_labels_for_multimodal`` on lm_understanding_tiny_parity.safetensors (stored Gumbel draws replayed),
the all-discrete variant, labels, padding, and the typed errors."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lavit.lm import MultimodalLMConfig
from lavit.lm.sequences import IGNORE_INDEX, ContextLengthError
from lavit.lm.understanding import (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, ImageFeatures, UnderstandingInputError,
                                    VideoFeatures, image_features, prepare_understanding_inputs, video_features)
from lavit.lm.vocabulary import ImageSegment, VideoSegment
from lavit.tokenizers import KeyframeTokenizer, KeyframeTokenizerConfig
from tests.conftest import SHARED

PARITY = SHARED / "reference" / "lm_understanding_tiny_parity.safetensors"


@pytest.fixture(scope="module")
def parity():
    with safe_open(str(PARITY), "pt") as f:
        metadata = f.metadata()
    return load_file(str(PARITY)), metadata


@pytest.fixture(scope="module")
def keyframe_tokenizer(parity):
    tensors, metadata = parity
    c = json.loads(metadata["visual_tokenizer_config"])
    config = KeyframeTokenizerConfig(img_size=c["img_size"], patch_size=c["patch_size"], width=c["width"], layers=c["layers"],
                                     heads=c["heads"], mlp_hidden=int(c["width"] * 4.3637), n_code=c["n_code"],
                                     code_dim=c["code_dim"], llm_embed_dim=c["vit_proj_out"], selection="gumbel", encoder=None)
    model = KeyframeTokenizer(config).eval()
    prefix = "model.model.visual_tokenizer."
    model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    return model


@pytest.fixture(scope="module")
def lm(parity):
    from transformers import LlamaForCausalLM

    tensors, metadata = parity
    config = MultimodalLMConfig.from_name("tiny")
    assert {k: v for k, v in config.llama_config().to_dict().items() if k in json.loads(metadata["lm_config"])} \
        | {"pretraining_tp": 1} == json.loads(metadata["lm_config"])
    model = LlamaForCausalLM(config.llama_config(attn_implementation="eager")).eval()
    state = {k[len("model."):]: v for k, v in tensors.items()
             if k.startswith("model.model.") and not k.startswith(("model.model.visual_tokenizer.", "model.model.motion_tokenizer."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # tied head: the fixture omits it
    return model


def _media(tag, tensors, keyframe_tokenizer):
    features = tensors[f"io.{tag}.encoder_output"][:, 1:]  # the encoder output with CLS (calling convention)
    draws = tensors[f"io.{tag}.gumbel_exp_draws"]
    if tag == "video":
        return video_features(keyframe_tokenizer, features, tensors["io.video.motion_code_ids"], exponential_draws=draws)
    return image_features(keyframe_tokenizer, features, exponential_draws=draws)[0]


@pytest.mark.parametrize("tag", ["video", "image"])
def test_spliced_embeddings_match_the_official(parity, keyframe_tokenizer, lm, tag):
    tensors, _ = parity
    with torch.no_grad():
        medium = _media(tag, tensors, keyframe_tokenizer)
        keyframes = medium.keyframes if tag == "video" else [medium.features]
        assert [len(k) for k in keyframes] == tensors[f"io.{tag}.token_nums"].tolist()
        out = prepare_understanding_inputs([tensors[f"io.{tag}.input_ids"]], lm.get_input_embeddings(), [medium],
                                           max_length=512)
    expected = tensors[f"io.{tag}.inputs_embeds"]
    assert out["inputs_embeds"].shape == (1, *expected.shape)
    assert (out["inputs_embeds"][0] - expected).abs().max() <= 1e-6
    assert torch.equal(out["position_ids"][0], torch.arange(len(expected)))
    assert bool(out["attention_mask"].all()) and out["labels"] is None


@pytest.mark.parametrize("tag", ["video", "image"])
def test_greedy_generation_matches_the_official(parity, keyframe_tokenizer, lm, tag):
    # output_ids = the input ids (placeholder kept) ++ the 5 new tokens of the official greedy generate.
    tensors, _ = parity
    input_ids = tensors[f"io.{tag}.input_ids"]
    with torch.no_grad():
        out = prepare_understanding_inputs([input_ids], lm.get_input_embeddings(), [_media(tag, tensors, keyframe_tokenizer)])
        new = lm.generate(inputs_embeds=out["inputs_embeds"], attention_mask=out["attention_mask"], do_sample=False,
                          min_new_tokens=2, max_new_tokens=5, suppress_tokens=list(range(32000, 49412)), eos_token_id=2,
                          pad_token_id=0)
    expected = tensors[f"io.{tag}.output_ids"]
    assert torch.equal(expected[:len(input_ids)], input_ids)
    assert new[0].tolist() == expected[len(input_ids):].tolist()
