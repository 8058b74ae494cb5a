"""Video-LaVIT in plain PyTorch: compressed-video decomposition, tokenizers, detokenizers, LM.

Nothing in this package imports Lightning; the training loops live in ``lightning_modules``.
"""

__version__ = "0.1.0"


def load_motion_tokenizer(source=None, config=None, **overrides):
    """Build the motion tokenizer from a file's config and load its weights strictly; see
    ``lavit.tokenizers.load_motion_tokenizer``."""
    from lavit.tokenizers.loading import load_motion_tokenizer as load

    return load(source, config, **overrides)


def load_video_detokenizer(source=None, unet_config=None, encoder_config=None, *, use_ema=True):
    """Build the video detokenizer (motion encoder + 3D U-Net) for a file or state dict and load it strictly;
    see ``lavit.detokenizer.loading.load_video_detokenizer``."""
    from lavit.detokenizer.loading import load_video_detokenizer as load

    return load(source, unet_config, encoder_config, use_ema=use_ema)


def load_keyframe_detokenizer(source=None, **config):
    """Build the keyframe detokenizer pipeline (code-to-feature decoder, codebook, SDXL-shaped U-Net, VAE, scheduler)
    from a Video-LaVIT root or explicit parts; see ``lavit.detokenizer.keyframe_pipeline.load_keyframe_detokenizer``."""
    from lavit.detokenizer.keyframe_pipeline import load_keyframe_detokenizer as load

    return load(source, **config)


def load_keyframe_tokenizer(source=None, config=None, **kwargs):
    """Build the keyframe tokenizer (EVA encoder, selector, merger, quantiser) and load its weights strictly per
    component; see ``lavit.tokenizers.keyframe_loading.load_keyframe_tokenizer``."""
    from lavit.tokenizers.keyframe_loading import load_keyframe_tokenizer as load

    return load(source, config, **kwargs)


def load_multimodal_lm(source, config=None, **vocabulary):
    """A transformers ``LlamaForCausalLM`` (eval mode) with the multimodal vocabulary from a Hugging Face Llama folder
    (official language_model / language_model_sft, or Llama-2-7B with its embeddings resized), a .safetensors state
    dict or a MultimodalLM checkpoint; see ``lavit.lm.loading.load_multimodal_lm``."""
    from lavit.lm.loading import load_multimodal_lm as load

    return load(source, config, **vocabulary)
