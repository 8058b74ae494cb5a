"""MultimodalVocabulary: the official id layout, serialise / parse round trips, grammar errors."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from lavit.lm import (ImageSegment, MultimodalLMConfig, MultimodalVocabulary, SequenceGrammarError, TextSegment,
                      VideoSegment)

OFFICIAL = MultimodalVocabulary()


def test_official_layout_ids():
    """The constants of the official code (reference section 3): tokenize_image +32002, compute_motion_embeds
    +32000+16384+4, video_decoding > 48387, the understanding suppress range 32000..49411."""
    v = OFFICIAL
    assert (v.img_start, v.img_end, v.visual_offset, v.mov_start, v.mov_end, v.motion_offset, v.size) == (
        32000, 32001, 32002, 48386, 48387, 48388, 49412)
    assert v.visual_offset + 16384 - 1 == 48385 and v.motion_offset == 32000 + 16384 + 4
    assert v.media_range == range(32000, 49412)
    assert len(v.token_strings()) == 49412 - 32000


def _random_segments(g: torch.Generator, v: MultimodalVocabulary):
    def text(n):
        return TextSegment(torch.randint(0, v.text_size, (n,), generator=g))

    def codes(n, high):
        return torch.randint(0, high, (n,), generator=g)

    video = VideoSegment([codes(int(torch.randint(0, 9, (1,), generator=g)), v.visual_codes) for _ in range(3)],
                         [codes(v.motion_tokens_per_clip, v.motion_codes) for _ in range(3)])
    return [text(5), ImageSegment(codes(7, v.visual_codes)), text(3), video, ImageSegment(codes(1, v.visual_codes)),
            VideoSegment([codes(2, v.visual_codes)], [codes(v.motion_tokens_per_clip, v.motion_codes)]), text(2)]


@pytest.mark.parametrize("vocab", [OFFICIAL, MultimodalVocabulary(text_size=300, visual_codes=32, motion_codes=64,
                                                                  motion_tokens_per_clip=24)])
def test_serialize_then_parse_is_exact_for_images_multi_clip_videos_and_mixed_sequences(vocab):
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        segments = _random_segments(g, vocab)
        ids = vocab.serialize(segments)
        parsed = vocab.parse(ids)
        assert len(parsed) == len(segments)
        for a, b in zip(segments, parsed):
            assert type(a) is type(b)
            if isinstance(a, TextSegment):
                assert torch.equal(a.ids, b.ids)
            elif isinstance(a, ImageSegment):
                assert torch.equal(a.codes, b.codes)
            else:
                assert all(torch.equal(x, y) for x, y in zip(a.keyframes + a.motion, b.keyframes + b.motion))
        assert torch.equal(vocab.serialize(parsed), ids)
    # an image followed directly by a video stays two segments; consecutive clips form one video
    clip = vocab.video([torch.tensor([1])], [torch.zeros(vocab.motion_tokens_per_clip, dtype=torch.long)])
    kinds = [type(s).__name__ for s in vocab.parse(torch.cat([vocab.image([2]), clip, clip]))]
    assert kinds == ["ImageSegment", "VideoSegment"]


def test_modality_of_each_id():
    v = OFFICIAL
    ids = torch.tensor([5, v.img_start, v.visual_offset, v.img_end, v.mov_start, v.motion_offset + 3, v.mov_end, 2, -100])
    assert v.modality(ids).tolist() == [0, 1, 1, 1, 2, 2, 2, 0, 0]


@pytest.mark.parametrize("ids, message", [
    ([5, 32000, 32002], "never closed"),
    ([5, 32002], "outside its segment"),
    ([32000, 32002, 32001, 48386, 48388, 48387], "holds 1 motion codes, expected 135"),
    ([48386, 48388, 48387], r"\[MOV\] must follow"),
    ([32000, 48388, 32001], "inside the \\[IMG\\] segment"),
])
def test_grammar_errors_name_the_position(ids, message):
    with pytest.raises(SequenceGrammarError, match=message):
        OFFICIAL.parse(torch.tensor(ids))


def test_bad_codes_and_ids_are_value_errors():
    with pytest.raises(ValueError, match="visual code ids must be in 0..16383"):
        OFFICIAL.image([16384])
    with pytest.raises(ValueError, match="exactly 135 motion codes"):
        OFFICIAL.motion([1, 2])
    with pytest.raises(ValueError, match="outside the vocabulary 0..49411"):
        OFFICIAL.parse(torch.tensor([49412]))


def test_resize_embeddings_keeps_the_text_rows_and_draws_new_rows_near_their_mean():
    torch.manual_seed(0)
    text_only = MultimodalLMConfig.from_name("tiny").llama_config(vocab_size=32000)
    model = LlamaForCausalLM(text_only)
    before = model.get_input_embeddings().weight.detach().clone()
    OFFICIAL.resize_embeddings(model)
    after = model.get_input_embeddings().weight.detach()
    assert after.shape == (49412, 16) and torch.equal(after[:32000], before)
    assert (after[32000:].mean(0) - before.mean(0)).abs().max() < 0.01
