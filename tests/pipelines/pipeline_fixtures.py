"""Tiny random components saved to files in their real formats, and the pipeline config naming them.

- LM: a 2-layer 16-wide Llama (``MultimodalLMConfig`` "tiny") whose vocabulary fits the components below, exported
  with ``save_multimodal_lm`` (an HF folder);
- text tokenizer: word level over a few captions (tests/lm/tokenizer_fixtures.py);
- motion tokenizer: the ``demo`` preset (8 x 16 fields, 256 codes), random, safetensors;
- keyframe tokenizer: the ``tiny`` preset (56 px, 64 codes), ``llm_embed_dim`` = the LM width (understanding);
- keyframe detokenizer: the tiny decoder / U-Net / VAE / DDIM of tests/detokenizer/test_keyframe_pipeline.py in the
  official root layout, its codebook the keyframe tokenizer's (64 x 8), 32 x 32 images;
- video detokenizer: the ``demo`` preset (pixel space), 32 x 64 frames.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

CAPTIONS = ["a red square moving left", "a blue circle moving right", "a green triangle moving up",
            "the camera pans left over a field", "what is moving in the video"]
KEYFRAME_SIZE = (32, 32)
VIDEO_SIZE = (8, 16)
FAST = dict(keyframe_steps=4, video_steps=1, min_keyframe_tokens=4, max_keyframe_tokens=12, top_k=0, add_bos=True,
            max_answer_tokens=6)


def build_pipeline_assets(root: Path) -> Path:
    """Save every component under ``root`` and write ``root/pipeline.yaml`` -> its path."""
    from transformers import LlamaForCausalLM

    from lavit.lm import MultimodalLMConfig, save_multimodal_lm
    from lavit.lm.loading import VOCABULARY_CONFIG_KEY
    from lavit.detokenizer import VideoDetokenizerModel
    from lavit.detokenizer.loading import save_video_detokenizer
    from lavit.tokenizers import KeyframeTokenizer, KeyframeTokenizerConfig
    from lavit.tokenizers.keyframe_loading import save_keyframe_tokenizer
    from lavit.tokenizers.loading import save_motion_tokenizer
    from lavit.tokenizers.motion_config import MotionTokenizerConfig
    from lavit.tokenizers.motion_tokenizer import MotionTokenizer
    from tests.detokenizer.test_keyframe_pipeline import ddim, tiny_unet, tiny_vae
    from tests.lm.tokenizer_fixtures import save_text_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    tokenizer = save_text_tokenizer(CAPTIONS, root / "text_tokenizer")
    torch.manual_seed(0)
    motion = MotionTokenizer(MotionTokenizerConfig.from_name("demo")).eval()
    save_motion_tokenizer(motion, root / "motion_tokenizer.safetensors", data_settings={"field_size": (8, 16), "clip_len": 24})
    lm_config = MultimodalLMConfig.from_name("tiny", text_size=len(tokenizer), visual_codes=64,
                                             motion_codes=motion.config.codebook_size, motion_tokens_per_clip=motion.num_tokens)
    torch.manual_seed(1)
    lm = LlamaForCausalLM(lm_config.llama_config()).eval()
    setattr(lm.config, VOCABULARY_CONFIG_KEY, asdict(lm_config.vocabulary))
    save_multimodal_lm(lm, root / "lm")

    torch.manual_seed(2)
    keyframe_config = KeyframeTokenizerConfig.from_name("tiny", llm_embed_dim=lm_config.hidden_size)
    keyframe = KeyframeTokenizer.with_encoder(keyframe_config).eval()
    with torch.no_grad():  # the random selector keeps almost nothing; bias it to keep most of the 16 patches
        keyframe.token_predictor.out_conv[4].bias.copy_(torch.tensor([2.0, 0.0]))
    save_keyframe_tokenizer(keyframe, root / "keyframe_tokenizer.safetensors")

    detok = root / "keyframe_detokenizer"
    (detok / "visual_tokenizer").mkdir(parents=True)
    from lavit.detokenizer import KeyframeDecoderConfig, KeyframeFeatureDecoder

    torch.manual_seed(3)
    decoder = KeyframeFeatureDecoder(KeyframeDecoderConfig.from_name("tiny"))
    torch.save(decoder.state_dict(), detok / "visual_tokenizer" / "highres_tokenizer_decoder.bin")
    torch.save({"quantize.embedding.weight": keyframe.quantize.embedding.weight.detach().clone()},
               detok / "visual_tokenizer" / "tokenizer_encoder.bin")
    tiny_unet().save_pretrained(detok / "image_detokenizer" / "unet")
    tiny_vae().save_pretrained(detok / "image_detokenizer" / "vae")
    ddim().save_pretrained(detok / "image_detokenizer" / "scheduler")

    torch.manual_seed(4)
    save_video_detokenizer(VideoDetokenizerModel("demo"), root / "video_detokenizer.safetensors")

    config = {
        "checkpoints": {"lm": str(root / "lm"), "text_tokenizer": str(root / "text_tokenizer"),
                        "motion_tokenizer": str(root / "motion_tokenizer.safetensors"),
                        "keyframe_tokenizer": str(root / "keyframe_tokenizer.safetensors"),
                        "keyframe_detokenizer": str(detok), "video_detokenizer": str(root / "video_detokenizer.safetensors")},
        "generation": {**FAST, "keyframe_size": list(KEYFRAME_SIZE), "video_size": list(VIDEO_SIZE)},
        "keyframe_decoder_config": "tiny",
        "device": "cpu",
        "dtype": "float32",
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_config(path: Path, base: Path, **changes) -> Path:
    """A copy of the config ``base`` with top-level / ``checkpoints`` / ``generation`` entries changed (``changes``:
    ``{"checkpoints": {...}, "generation": {...}, other: value}``; None values remove the entry) -> ``path``."""
    config = yaml.safe_load(Path(base).read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            for k, v in value.items():
                if v is None:
                    config[key].pop(k, None)
                else:
                    config[key][k] = v
        elif value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def pipeline_config(tmp_path_factory) -> Path:
    """The tiny components' ``pipeline.yaml`` (built once per session, reused by every pipeline test module)."""
    root = tmp_path_factory.getbasetemp() / "pipeline_assets"
    path = root / "pipeline.yaml"
    return path if path.is_file() else build_pipeline_assets(root)
