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


def test_all_discrete_variant_embeds_the_serialised_ids(lm):
    # Analytic truth: splicing code ids equals embedding the id sequence vocab.serialize would write.
    vocab = MultimodalLMConfig.from_name("tiny").vocabulary
    embed = lm.get_input_embeddings()
    keyframes = [torch.tensor([3, 0, 16383]), torch.tensor([7])]
    motion = torch.randint(0, 1024, (2, 135), generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([1, 500, VIDEO_PLACEHOLDER, 600, 2])
    with torch.no_grad():
        out = prepare_understanding_inputs([ids], embed, [VideoSegment(keyframes, list(motion))], vocab)
        serial = torch.cat([ids[:2], vocab.video(keyframes, motion), ids[3:]])
        assert torch.equal(out["inputs_embeds"][0], embed(serial))
        image = prepare_understanding_inputs([torch.tensor([IMAGE_PLACEHOLDER, 9])], embed, [ImageSegment(torch.tensor([5]))])
        assert torch.equal(image["inputs_embeds"][0], embed(torch.tensor([32000, 32002 + 5, 32001, 9])))


def test_labels_padding_and_positions(lm):
    embed = lm.get_input_embeddings()
    features = torch.randn(3, 16)
    ids = [torch.tensor([1, IMAGE_PLACEHOLDER, 10, 11]), torch.tensor([1, 12])]
    labels = [torch.tensor([IGNORE_INDEX, IGNORE_INDEX, 10, 11]), torch.tensor([1, 12])]
    with torch.no_grad():
        for side in ("right", "left"):
            out = prepare_understanding_inputs(ids, embed, [ImageFeatures(features), None], labels=labels,
                                               padding_side=side, pad_id=0)
            assert out["inputs_embeds"].shape == (2, 1 + 5 + 2, 16)  # [IMG] 3 features [/IMG] = 5 positions
            long = [IGNORE_INDEX] * 6 + [10, 11]
            short = [1, 12] + [IGNORE_INDEX] * 6 if side == "right" else [IGNORE_INDEX] * 6 + [1, 12]
            assert out["labels"].tolist() == [long, short]
            mask = [1, 1] + [0] * 6 if side == "right" else [0] * 6 + [1, 1]
            assert out["attention_mask"].tolist() == [[1] * 8, mask]
            assert out["position_ids"].tolist() == [list(range(8)), [0, 1] + [0] * 6 if side == "right" else [0] * 6 + [0, 1]]
            row = out["inputs_embeds"][0]
            assert torch.equal(row[2:5], features) and torch.equal(row[1], embed.weight[32000])
            pad_rows = out["inputs_embeds"][1, 2:] if side == "right" else out["inputs_embeds"][1, :6]
            assert torch.equal(pad_rows, embed.weight[0].expand(6, -1))
    # a (B, L) batch with an attention mask: padding dropped before splicing, same result
    batch = torch.tensor([[0, 0, 1, 12]])
    a = prepare_understanding_inputs(batch, embed, [None], attention_mask=torch.tensor([[0, 0, 1, 1]]))
    assert torch.equal(a["inputs_embeds"], embed(torch.tensor([[1, 12]])))


def test_bad_input_is_a_typed_error(lm):
    embed = lm.get_input_embeddings()
    image = ImageFeatures(torch.randn(2, 16))
    video = VideoFeatures([torch.randn(2, 16)], torch.zeros(1, 135, dtype=torch.long))
    with pytest.raises(UnderstandingInputError, match="1 media placeholders .* but 0 media"):
        prepare_understanding_inputs([torch.tensor([1, IMAGE_PLACEHOLDER])], embed, [None])
    with pytest.raises(UnderstandingInputError, match="0 media placeholders .* but 1 media"):
        prepare_understanding_inputs([torch.tensor([1, 2])], embed, [image])
    with pytest.raises(UnderstandingInputError, match="placeholder -200 .* VideoFeatures"):
        prepare_understanding_inputs([torch.tensor([IMAGE_PLACEHOLDER])], embed, [video])
    with pytest.raises(UnderstandingInputError, match=r"outside the vocabulary 0..49411.*\[49412, -5\]"):
        prepare_understanding_inputs([torch.tensor([1, 49412, -5])], embed, [None])
    bad_motion = VideoFeatures([torch.randn(2, 16)], torch.full((1, 135), 1024))
    with pytest.raises(UnderstandingInputError, match=r"clip 0: motion code ids must be in 0..1023, got \[1024"):
        prepare_understanding_inputs([torch.tensor([VIDEO_PLACEHOLDER])], embed, [bad_motion])
    short = VideoFeatures([torch.randn(2, 16)], torch.zeros(1, 134, dtype=torch.long))
    with pytest.raises(UnderstandingInputError, match="exactly 135 motion codes, got 134"):
        prepare_understanding_inputs([torch.tensor([VIDEO_PLACEHOLDER])], embed, [short])
    with pytest.raises(UnderstandingInputError, match=r"keyframe code ids must be in 0..16383, got \[16384\]"):
        prepare_understanding_inputs([torch.tensor([IMAGE_PLACEHOLDER])], embed, [ImageSegment(torch.tensor([16384]))])
    with pytest.raises(UnderstandingInputError, match=r"float \(n, 16\) tensor"):
        prepare_understanding_inputs([torch.tensor([IMAGE_PLACEHOLDER])], embed, [ImageFeatures(torch.randn(2, 8))])
    with pytest.raises(ContextLengthError, match="spliced sequence of 141 positions is longer than the context of 140"):
        prepare_understanding_inputs([torch.tensor([VIDEO_PLACEHOLDER])], embed, [video], max_length=140)


def test_left_padded_batch_generates_what_each_sample_does_alone(parity, keyframe_tokenizer, lm):
    # Batched generation: video and image in one left-padded batch (the config gives pad_id 0 and the context).
    tensors, _ = parity
    config = MultimodalLMConfig.from_name("tiny")
    with torch.no_grad():
        out = prepare_understanding_inputs([tensors["io.video.input_ids"], tensors["io.image.input_ids"]],
                                           lm.get_input_embeddings(),
                                           [_media(t, tensors, keyframe_tokenizer) for t in ("video", "image")],
                                           config, padding_side="left")
        assert out["attention_mask"].sum(1).tolist() == [307, 17]
        new = lm.generate(inputs_embeds=out["inputs_embeds"], attention_mask=out["attention_mask"], do_sample=False,
                          min_new_tokens=2, max_new_tokens=5, suppress_tokens=list(range(32000, 49412)), eos_token_id=2,
                          pad_token_id=0)
    for row, tag in zip(new.tolist(), ("video", "image")):
        assert row == tensors[f"io.{tag}.output_ids"][len(tensors[f"io.{tag}.input_ids"]):].tolist()
