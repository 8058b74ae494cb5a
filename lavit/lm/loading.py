"""Load and export the multimodal LM: a ``transformers.LlamaForCausalLM`` with the extended vocabulary.

Sources (:func:`load_multimodal_lm`):

* a Hugging Face Llama folder (``config.json`` + ``*.safetensors`` or ``pytorch_model*.bin``), read with
  ``from_pretrained(local_files_only=True)``: the official ``language_model`` / ``language_model_sft`` of
  rain1011/Video-LaVIT-v1 (49412 ids already; ``language_model_sft`` is a ``VideoLaVITLlamaForCausalLM`` whose
  ``model.visual_tokenizer.*`` / ``model.motion_tokenizer.*`` tensors are not the Llama's: they are skipped and
  reported in ``model.lavit_skipped``), or Llama-2-7B (meta-llama/Llama-2-7b-hf, 32000 ids), whose embeddings are
  resized to the vocabulary (``MultimodalVocabulary.resize_embeddings``, mean-resizing);
* a ``.safetensors`` file of a ``LlamaForCausalLM`` state dict (a prefix before ``model.embed_tokens.weight`` is
  dropped); its config from the metadata (``lavit.multimodal_lm_config``: ``MultimodalLMConfig.to_dict()``, or
  ``lm_config``: a ``LlamaConfig`` dict as the parity fixtures store), else ``config=`` is required;
* a Lightning checkpoint (``.ckpt``) of ``lightning_modules.MultimodalLM``: ``hyper_parameters["lm"]`` =
  ``MultimodalLMConfig.to_dict()``, the Llama under the ``state_dict`` keys ``lm.*``. A ``trainable: lora`` run holds
  peft's layout (``lm.base_model.model.*``, ``base_layer`` + ``lora_A`` / ``lora_B``): the adapters are merged into
  the base weights, ``W + (lora_alpha / lora_rank) B A`` (:func:`merge_lora`), so a plain Llama comes back.

Every load is strict (missing, unexpected and mis-shaped keys named, :mod:`lavit.weights`); pickles are read with
``weights_only=True``. :func:`save_multimodal_lm` writes a folder plain transformers users load with
``LlamaForCausalLM.from_pretrained`` (and ``AutoTokenizer.from_pretrained`` when a tokenizer was saved with it).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Mapping

import torch

from lavit.lm.config import MultimodalLMConfig
from lavit.lm.vocabulary import MultimodalVocabulary
from lavit.weights import (WeightsError, WeightsMismatchError, load_state_dict_strict, read_checkpoint, read_json_metadata,
                           safetensors_metadata, state_dict_of, strip_prefix)

log = logging.getLogger(__name__)

CONFIG_METADATA_KEY = "lavit.multimodal_lm_config"
LLAMA_METADATA_KEY = "lm_config"  # a LlamaConfig dict (lm_*_tiny_parity.safetensors)
VOCABULARY_CONFIG_KEY = "lavit_vocabulary"  # the MultimodalVocabulary fields, stored in an exported config.json
ANCHOR = "model.embed_tokens.weight"
# Tensors of a VideoLaVITLlamaForCausalLM checkpoint that are not the Llama's (its keyframe and motion tokenizers).
NON_LLAMA_PREFIXES = ("model.visual_tokenizer.", "model.motion_tokenizer.")
WHERE_TO_GET = ("obtain the official LM from https://huggingface.co/rain1011/Video-LaVIT-v1 (folders language_model/ for "
                "generation, language_model_sft/ for understanding) or Llama-2-7B from "
                "https://huggingface.co/meta-llama/Llama-2-7b-hf (vocabulary extended on load); nothing is downloaded here")


def _vocabulary_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(MultimodalVocabulary)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown vocabulary fields {unknown}; known: {sorted(names)}")
    return dict(values)


def _skip_non_llama(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Split off the tokenizers' tensors; -> (the Llama's, {prefix: tensor count})."""
    kept, skipped = {}, {}
    for key, value in state.items():
        prefix = next((p for p in NON_LLAMA_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            kept[key] = value
        else:
            skipped[prefix[:-1]] = skipped.get(prefix[:-1], 0) + 1
    return kept, skipped


def _finish(model, config: MultimodalLMConfig, skipped: Mapping[str, int], source) -> Any:
    vocab = config.vocabulary
    rows = model.get_input_embeddings().weight.shape[0]
    if rows == vocab.text_size != vocab.size:
        vocab.resize_embeddings(model)
        log.info("%s: %d text ids, embeddings resized to the %d-id vocabulary", source, rows, vocab.size)
    elif rows != vocab.size:
        raise WeightsError(source, f"{rows} embedding rows; the vocabulary has {vocab.size} ids ({vocab.text_size} text ids "
                                   "to be extended)")
    setattr(model.config, VOCABULARY_CONFIG_KEY, asdict(vocab))
    model.lavit_skipped = dict(skipped)
    if skipped:
        log.info("%s: skipped the non-Llama tensors %s (load them with lavit.load_keyframe_tokenizer / "
                 "lavit.load_motion_tokenizer)", source, skipped)
    return model.eval()


def _build(config: MultimodalLMConfig, vocab_size: int, state: dict[str, torch.Tensor], source, attn_implementation: str):
    """A LlamaForCausalLM of ``config`` with ``vocab_size`` rows, loaded strictly from ``state`` (assigned, no copy)."""
    from transformers import LlamaForCausalLM

    llama = config.llama_config(attn_implementation=attn_implementation)
    llama.vocab_size = vocab_size
    if config.tie_word_embeddings and "lm_head.weight" not in state and ANCHOR in state:
        state = {**state, "lm_head.weight": state[ANCHOR]}
    with torch.device("meta"):
        model = LlamaForCausalLM(llama)
    load_state_dict_strict(model, state, source, assign=True)
    model.model.rotary_emb = type(model.model.rotary_emb)(config=model.config)  # a non-persistent buffer: rebuilt
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise WeightsError(source, f"tensors left unloaded: {meta[:5]}")
    return model


def _sizes_check(config: MultimodalLMConfig, state: Mapping[str, torch.Tensor], source) -> int:
    """Compare the sizes the tensors show with ``config``; -> the embedding rows."""
    if ANCHOR not in state:
        raise WeightsError(source, f"not a LlamaForCausalLM state dict: no {ANCHOR!r} (keys {sorted(state)[:5]} ...)")
    rows, hidden = state[ANCHOR].shape
    layers = 1 + max((int(k.split(".")[2]) for k in state if k.startswith("model.layers.")), default=-1)
    inter = state["model.layers.0.mlp.gate_proj.weight"].shape[0] if "model.layers.0.mlp.gate_proj.weight" in state else None
    found = {"hidden_size": hidden, "num_hidden_layers": layers, "intermediate_size": inter}
    wrong = [f"{k} {v} in the file, {getattr(config, k)} in the config" for k, v in found.items()
             if v is not None and v != getattr(config, k)]
    if rows not in (config.text_size, config.vocab_size):
        wrong.append(f"{rows} embedding rows in the file, the config's vocabulary has {config.vocab_size} "
                     f"({config.text_size} text ids)")
    if wrong:
        raise WeightsMismatchError(source, "does not match the multimodal LM config: " + "; ".join(wrong))
    return rows


def _config_of(config, vocabulary: Mapping[str, Any]) -> MultimodalLMConfig:
    config = MultimodalLMConfig.coerce(config)
    return config.replace(**vocabulary) if vocabulary else config


def _from_state(state: dict[str, torch.Tensor], config, vocabulary, source, attn_implementation: str):
    state = strip_prefix(state, ANCHOR)
    state, skipped = _skip_non_llama(state)
    rows = _sizes_check(config, state, source)
    return _finish(_build(config, rows, state, source, attn_implementation), config, skipped, source)


def _load_folder(folder: Path, config, vocabulary, dtype, attn_implementation: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        raise FileNotFoundError(f"{folder}: no *.safetensors or pytorch_model*.bin weights beside config.json; {WHERE_TO_GET}")
    llama = LlamaConfig.from_pretrained(folder, local_files_only=True)
    stored = getattr(llama, VOCABULARY_CONFIG_KEY, None) or {}
    vocabulary = {**stored, **vocabulary}
    lm_config = (MultimodalLMConfig.from_llama_config(llama, **_vocabulary_fields(vocabulary)) if config is None
                 else _config_of(config, vocabulary))
    llama._attn_implementation = attn_implementation
    model, info = LlamaForCausalLM.from_pretrained(folder, config=llama, local_files_only=True, output_loading_info=True, weights_only=True,
                                                   dtype=dtype if dtype is not None else "auto")
    unexpected = sorted(info.get("unexpected_keys") or [])
    skipped: dict[str, int] = {}
    for key in unexpected:
        prefix = next((p for p in NON_LLAMA_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            skipped[prefix[:-1]] = skipped.get(prefix[:-1], 0) + 1
    unexpected = [k for k in unexpected if not k.startswith(NON_LLAMA_PREFIXES)]
    missing = sorted(k for k in info.get("missing_keys") or []
                     if not (k == "lm_head.weight" and llama.tie_word_embeddings))
    mismatched = [str(m) for m in info.get("mismatched_keys") or []]
    if missing or unexpected or mismatched:
        parts = [f"{name} {keys[:20]}" for name, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", mismatched)) if keys]
        raise WeightsMismatchError(folder, "does not match LlamaForCausalLM: " + "; ".join(parts))
    _sizes_check(lm_config, {k: v for k, v in model.state_dict().items()}, folder)
    return _finish(model, lm_config, skipped, folder)


PEFT_PREFIX = "base_model.model."


def merge_lora(state: Mapping[str, torch.Tensor], scaling: float, source: Any = "checkpoint") -> dict[str, torch.Tensor]:
    """A peft LoRA state dict (``base_model.model.`` prefix, ``X.base_layer.weight``, ``X.lora_A.<adapter>.weight``
    ``(r, in)``, ``X.lora_B.<adapter>.weight`` ``(out, r)``) -> the plain model's, each adapted weight replaced by
    ``W + scaling * B @ A`` (computed in float32, stored in W's dtype); a state without peft keys is returned as is.

    Raises:
        WeightsError: an adapter without its base weight, or more than one adapter name on a layer.
    """
    if not any(k.startswith(PEFT_PREFIX) for k in state):
        return dict(state)
    plain = {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v for k, v in state.items()}
    merged: dict[str, torch.Tensor] = {}
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in plain.items():
        if ".lora_A." in key or ".lora_B." in key:
            layer, rest = key.split(".lora_", 1)
            side, adapter = rest[0], rest.split(".")[1]
            adapters.setdefault(layer, {})[f"{side}.{adapter}"] = value
        else:
            merged[key.replace(".base_layer.", ".")] = value
    for layer, parts in adapters.items():
        names = {k.split(".", 1)[1] for k in parts}
        weight = merged.get(f"{layer}.weight")
        if weight is None or len(names) != 1 or len(parts) != 2:
            raise WeightsError(source, f"LoRA adapters of {layer!r} ({sorted(parts)}) need exactly one lora_A / lora_B "
                               "pair and the base_layer weight")
        (name,) = names
        delta = parts[f"B.{name}"].float() @ parts[f"A.{name}"].float()
        merged[f"{layer}.weight"] = (weight.float() + scaling * delta).to(weight.dtype)
    return merged


def load_multimodal_lm(source: str | os.PathLike, config: MultimodalLMConfig | str | Mapping[str, Any] | None = None,
                       *, dtype: torch.dtype | str | None = None, attn_implementation: str = "sdpa", **vocabulary: Any):
    """A ``transformers.LlamaForCausalLM`` (eval mode) with the multimodal vocabulary, from a folder or a file.

    Args:
        source: a Hugging Face Llama folder, a ``.safetensors`` state dict, or a ``MultimodalLM`` ``.ckpt`` (see the
            module docstring).
        config: a ``MultimodalLMConfig`` (or preset name / mapping). Folders and checkpoints carry their own
            (a folder's ``config.json``, a checkpoint's ``hyper_parameters["lm"]``); a ``.safetensors`` file without
            config metadata needs it (the tensors' hidden size, layers, MLP size and vocabulary are checked against it).
        dtype: the weights' dtype for folders (default: as stored, ``"auto"``); files keep their tensors' dtype.
        attn_implementation: ``"sdpa"`` (default) or ``"eager"``.
        vocabulary: ``MultimodalVocabulary`` fields (``text_size``, ``visual_codes``, ``motion_codes``, ...) when the
            layout is not the official one (an exported folder stores its own in config.json ``lavit_vocabulary``).

    Returns:
        The model; ``model.lavit_skipped`` = {prefix: tensor count} of the skipped non-Llama tensors
        (``language_model_sft``'s ``model.visual_tokenizer`` and ``model.motion_tokenizer``), and
        ``model.config.lavit_vocabulary`` the layout's fields. A 32000-id Llama comes back with its embeddings
        resized to the vocabulary's size (new rows mean-resized).

    Raises:
        FileNotFoundError: no such folder or file (the message says where to obtain the weights), or a folder
            without weights.
        WeightsError: unreadable file, pickles holding objects (``weights_only=True``), sizes that do not match the
            config; ``WeightsMismatchError`` names missing, unexpected and mis-shaped keys.
        ValueError: a ``.safetensors`` file without config metadata and no ``config``, unknown vocabulary fields.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"multimodal LM not found: {str(path)!r} does not exist; give a Hugging Face Llama folder "
                                f"(config.json + weights), a .safetensors state dict or a MultimodalLM .ckpt; {WHERE_TO_GET}")
    vocabulary = _vocabulary_fields(vocabulary)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json (not a Hugging Face model folder); {WHERE_TO_GET}")
        return _load_folder(path, config, vocabulary, dtype, attn_implementation)
    if path.suffix == ".safetensors":
        if config is None:
            stored = read_json_metadata(path, CONFIG_METADATA_KEY)
            if stored is not None:
                config = MultimodalLMConfig.from_dict(stored)
            else:
                text = safetensors_metadata(path).get(LLAMA_METADATA_KEY)
                if text is None:
                    raise ValueError(f"{path}: no {CONFIG_METADATA_KEY!r} or {LLAMA_METADATA_KEY!r} metadata; pass "
                                     "config= (a MultimodalLMConfig, a preset name such as 'llama2_7b' or 'tiny', or a mapping)")
                from transformers import LlamaConfig

                config = MultimodalLMConfig.from_llama_config(LlamaConfig(**json.loads(text)), **vocabulary)
        state = state_dict_of(read_checkpoint(path), path)
        return _from_state(state, _config_of(config, vocabulary), vocabulary, path, attn_implementation)
    checkpoint = read_checkpoint(path)
    if config is None:
        hyper = checkpoint.get("hyper_parameters") if isinstance(checkpoint.get("hyper_parameters"), Mapping) else {}
        if "lm" not in hyper:
            raise ValueError(f"{path}: no hyper_parameters['lm'] (a MultimodalLM checkpoint stores its MultimodalLMConfig "
                             "there); pass config=")
        config = hyper["lm"]
    state = state_dict_of(checkpoint, path)
    if "state_dict" in checkpoint:
        others = sorted({k.split(".")[0] for k in state if not k.startswith("lm.")})
        state = {k[len("lm."):]: v for k, v in state.items() if k.startswith("lm.")}
        if not state:
            raise WeightsError(path, f"no 'lm.*' tensors in the checkpoint's state_dict (top-level names: {others})")
        hyper = checkpoint.get("hyper_parameters") or {}
        state = merge_lora(state, float(hyper.get("lora_alpha", 16)) / float(hyper.get("lora_rank", 8)), path)
    return _from_state(state, _config_of(config, vocabulary), vocabulary, path, attn_implementation)


def save_multimodal_lm(model, folder: str | os.PathLike, text_tokenizer=None) -> Path:
    """Export ``model`` (a ``LlamaForCausalLM``) with ``save_pretrained`` (safetensors) and, if given, the text
    tokenizer (extended or not) with its ``save_pretrained``: plain transformers loads the folder with
    ``LlamaForCausalLM.from_pretrained(folder)``, :func:`load_multimodal_lm` with its vocabulary layout (config.json
    ``lavit_vocabulary``). -> the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if text_tokenizer is not None:
        text_tokenizer.save_pretrained(folder)
    return folder
