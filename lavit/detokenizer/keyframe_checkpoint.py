"""Keyframe detokenizer checkpoints trained by ``lightning_modules.KeyframeDetokenizer`` -> a ready
:class:`KeyframeDetokenizerPipeline`, and the frozen keyframe-tokenizer parts (tokenizer, code-to-feature decoder,
codebook) such a checkpoint names.

A checkpoint holds the trained U-Net (``state_dict``: ``unet.*``; ``condition_heads.*``: the decoder's conditioning
heads when they were trained, replacing the tokenizer checkpoint's) and, under ``"keyframe_detokenizer"``: ``keyframe_tokenizer``
(path of the ``KeyframeTokenizer`` Lightning checkpoint whose decoder and codebook condition the U-Net), ``unet``
(the resolved ``UNet2DConditionModel`` config), ``vae`` (None = pixel space, else a local ``AutoencoderKL`` folder),
``scheduler`` (the ``DDIMScheduler`` config of training) and ``image_size`` ``(h, w)``. Read with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from lavit.detokenizer.components import MissingComponentError
from lavit.detokenizer.keyframe_decoder import KeyframeDecoderConfig, KeyframeFeatureDecoder, load_keyframe_decoder
from lavit.tokenizers.keyframe_config import KeyframeTokenizerConfig

__all__ = ["COMPONENTS_KEY", "CONDITION_HEADS", "DEFAULT_SCHEDULER", "load_keyframe_detokenizer_checkpoint", "load_keyframe_tokenizer_parts",
           "tokenizer_decoder_config"]

# The decoder's U-Net conditioning heads (features -> prompt / pooled), trained with the U-Net; checkpointed as
# condition_heads.<name>.* they replace the keyframe tokenizer checkpoint's.
CONDITION_HEADS = ("unet_proj_1", "unet_proj_2", "unet_attnpool")
COMPONENTS_KEY = "keyframe_detokenizer"  # the checkpoint entry naming the parts (module docstring)
# SDXL's DDIM training schedule (stabilityai/stable-diffusion-xl-base-1.0 scheduler_config.json, DDIM form).
DEFAULT_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
                         timestep_spacing="leading")
HOW_TO_GET_TOKENIZER = ("a KeyframeTokenizer Lightning checkpoint: `lightning fit -c configs/keyframe_tokenizer/demo.yaml` "
                        "writes outputs/keyframe_tokenizer_demo/checkpoints/last.ckpt")


def tokenizer_decoder_config(tokenizer: KeyframeTokenizerConfig, overrides: Mapping[str, Any] | None = None) -> KeyframeDecoderConfig:
    """The decoder that fits ``tokenizer``: codes of ``code_dim`` in, one query per patch, features of the encoder's
    ``width`` out, the merger's width, depth and heads (the paper's decoder for the paper's tokenizer); ``overrides``
    change any :class:`KeyframeDecoderConfig` field (``hyper_parameters["decoder"]`` of a ``KeyframeTokenizer``)."""
    t = tokenizer
    base = dict(in_channels=t.code_dim, dim=t.width, depth=t.layers, num_heads=t.heads, num_queries=t.num_patches,
                decoder_out_dim=t.width)
    return KeyframeDecoderConfig.from_dict({**base, **dict(overrides or {})})


def load_keyframe_tokenizer_parts(path: str | os.PathLike[str]):
    """``(tokenizer, decoder, codebook (n_code, code_dim))`` of a ``KeyframeTokenizer`` Lightning checkpoint, in eval
    mode, frozen (no gradients).

    Raises:
        MissingComponentError: no file at ``path`` (named, with how to make one).
        ValueError: the file holds no code-to-feature decoder (``decoder.*``; e.g. a tokenizer-only safetensors file).
        lavit.weights.WeightsError: unsafe, corrupt or mismatched weights.
    """
    from lavit.tokenizers.keyframe_loading import load_keyframe_tokenizer
    from lavit.weights import read_checkpoint, state_dict_of

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingComponentError(path, "keyframe tokenizer checkpoint", HOW_TO_GET_TOKENIZER)
    obj = read_checkpoint(path)
    state = state_dict_of(obj, path)
    if not any(k.startswith("decoder.") for k in state):
        raise ValueError(f"{os.fspath(path)!r} holds no keyframe decoder (decoder.* tensors): the keyframe detokenizer "
                         f"needs {HOW_TO_GET_TOKENIZER}, not a tokenizer-only file")
    hparams = obj.get("hyper_parameters") or {}
    tokenizer = load_keyframe_tokenizer(path).eval().requires_grad_(False)
    config = tokenizer_decoder_config(tokenizer.config, hparams.get("decoder"))
    decoder = load_keyframe_decoder({k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}, config)
    codebook = tokenizer.quantize.embedding.weight.detach().float().clone()
    return tokenizer, decoder.requires_grad_(False), codebook


def _pixel_space_or_vae(vae: str | None):
    from lavit.detokenizer.autoencoder import PixelSpaceAutoencoder
    from lavit.detokenizer.components import load_image_vae

    return PixelSpaceAutoencoder() if vae is None else load_image_vae(vae).requires_grad_(False)


def build_unet(config: Mapping[str, Any]):
    """A diffusers ``UNet2DConditionModel`` from a config mapping (lists where diffusers takes tuples are fine)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**{k: tuple(v) if isinstance(v, list) else v for k, v in dict(config).items()})


def load_keyframe_detokenizer_checkpoint(
    path: str | os.PathLike[str],
    keyframe_tokenizer: str | os.PathLike[str] | None = None,
    vae: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
):
    """A :class:`KeyframeDetokenizerPipeline` from a ``KeyframeDetokenizer`` checkpoint (see the module docstring).

    Args:
        path: the ``.ckpt`` file.
        keyframe_tokenizer: replaces the stored keyframe tokenizer checkpoint path (e.g. after moving files).
        vae: replaces the stored VAE folder (only for checkpoints trained with one).
        device, dtype: passed to :meth:`KeyframeDetokenizerPipeline.to`.

    Returns:
        The pipeline; ``pipeline.image_size`` is the ``(h, w)`` it was trained at, ``pipeline.keyframe_tokenizer`` the
        frozen tokenizer (images -> code ids).

    Raises:
        MissingComponentError: the checkpoint or the keyframe tokenizer checkpoint is missing (each named).
        ValueError: not a keyframe detokenizer checkpoint.
        lavit.weights.WeightsError / WeightsMismatchError: unsafe or mismatched weights.
    """
    from diffusers import DDIMScheduler

    from lavit.detokenizer.keyframe_pipeline import KeyframeDetokenizerPipeline
    from lavit.weights import load_state_dict_strict, read_checkpoint, state_dict_of

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingComponentError(path, "keyframe detokenizer checkpoint",
                                    "`lightning fit -c configs/keyframe_detokenizer/demo.yaml` (or your own training run)")
    obj = read_checkpoint(path)
    hparams = obj.get(COMPONENTS_KEY)
    needed = ("keyframe_tokenizer", "unet", "scheduler", "image_size")
    if not isinstance(hparams, Mapping) or any(k not in hparams for k in needed):
        raise ValueError(f"{os.fspath(path)!r} is not a KeyframeDetokenizer checkpoint: no {COMPONENTS_KEY!r} entry with "
                         f"{list(needed)}")
    tokenizer_path = keyframe_tokenizer if keyframe_tokenizer is not None else hparams["keyframe_tokenizer"]
    tokenizer, decoder, codebook = load_keyframe_tokenizer_parts(tokenizer_path)
    unet = build_unet(hparams["unet"])
    state = state_dict_of(obj, path)
    load_state_dict_strict(unet, {k[len("unet."):]: v for k, v in state.items() if k.startswith("unet.")}, f"{path} [unet]")
    heads = {k[len("condition_heads."):]: v for k, v in state.items() if k.startswith("condition_heads.")}
    if heads:
        for name in CONDITION_HEADS:
            part = {k[len(name) + 1:]: v for k, v in heads.items() if k.startswith(name + ".")}
            load_state_dict_strict(getattr(decoder, name), part, f"{path} [condition_heads.{name}]")
    stored_vae = vae if vae is not None else hparams.get("vae")
    scheduler = DDIMScheduler.from_config(dict(hparams["scheduler"]))
    pipe = KeyframeDetokenizerPipeline(decoder, codebook, unet, _pixel_space_or_vae(stored_vae), scheduler).to(device, dtype)
    pipe.image_size = tuple(int(s) for s in hparams["image_size"])
    pipe.keyframe_tokenizer = tokenizer if device is None else tokenizer.to(device)
    return pipe
