"""Load and save the LaVIT keyframe tokenizer: selector + merger + quantiser, its EVA-CLIP encoder, and the
understanding weights (merger + ``vit_proj`` trained with the LM).

Files (reference/official_lm_and_keyframe_tokenizer.md §1; visual_tokenizer_state_dict.tsv):

* ``visual_tokenizer/tokenizer_encoder.bin`` of rain1011/Video-LaVIT-v1: ``token_predictor.*`` (selector),
  ``causal_encoder.*`` (merger), ``quantize.embedding.weight``, ``encode_task_layer.*`` [, ``vit_proj.*``];
* ``visual_tokenizer/eva_vitg_psz14.bin``: the frozen encoder (:func:`lavit.tokenizers.load_eva_encoder`);
* ``visual_weight.bin`` (the LM folder of rain1011/Video-LaVIT-v1 or rain1011/LaVIT-7B-v2): the merger and
  ``vit_proj`` of the understanding path, replacing the tokenizer file's;
* ``.safetensors`` written by :func:`save_keyframe_tokenizer` (config in the metadata) and ``KeyframeTokenizer``
  Lightning checkpoints (config in ``hyper_parameters["tokenizer"]``; they hold ``encoder.*`` too).

Each component loads strictly on its own (every missing, unexpected and mis-shaped key named); pickles are read
with ``weights_only=True`` (:mod:`lavit.weights`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from lavit.tokenizers.eva_loading import load_eva_encoder
from lavit.tokenizers.keyframe_config import KeyframeTokenizerConfig
from lavit.tokenizers.keyframe_tokenizer import KeyframeTokenizer
from lavit.weights import (
    KNOWN_WEIGHTS,
    WeightsMismatchError,
    check_finite,
    load_state_dict_strict,
    read_checkpoint,
    read_json_metadata,
    read_state_dict,
    resolve_weights,
    state_dict_of,
    strip_prefix,
)

WEIGHTS_KEY = "keyframe_tokenizer"  # lavit.weights.KNOWN_WEIGHTS entry of tokenizer_encoder.bin
UNDERSTANDING_KEY = "keyframe_understanding"  # ... of visual_weight.bin
CONFIG_METADATA_KEY = "lavit.keyframe_tokenizer_config"
ANCHOR = "token_predictor.in_conv.0.weight"  # the first tokenizer key, whatever prefix a checkpoint adds
# Required components of the tokenizer file, and what each is (for messages).
COMPONENTS = {"token_predictor": "token selector", "causal_encoder": "token merger", "quantize": "codebook",
              "encode_task_layer": "quantiser input layer"}
UNDERSTANDING_COMPONENTS = {"causal_encoder": "token merger", "vit_proj": "understanding projection"}
# Where visual_weight.bin sits below a root folder (the LM folder of Video-LaVIT-v1 or LaVIT-7B-v2).
UNDERSTANDING_FOLDERS = (".", "language_model_sft", "language_model")


def _find(folder: Path, name: str, subfolders: tuple[str, ...]) -> Path | None:
    for sub in subfolders:
        if (folder / sub / name).is_file():
            return folder / sub / name
    return None


def keyframe_tokenizer_path(source: str | os.PathLike | None = None) -> Path:
    """The tokenizer file: ``source`` itself, ``tokenizer_encoder.bin`` inside the folder ``source`` (or its
    ``visual_tokenizer/``, the Video-LaVIT layout); None: ``$LAVIT_WEIGHTS_DIR`` (same two places).

    Raises:
        FileNotFoundError: the message names the file, rain1011/Video-LaVIT-v1 and how to point at it.
    """
    if source is None:
        directory = os.environ.get("LAVIT_WEIGHTS_DIR")
        folder = Path(directory).expanduser() if directory else None
    else:
        folder = Path(source).expanduser() if Path(source).expanduser().is_dir() else None
    if folder is not None:
        found = _find(folder, KNOWN_WEIGHTS[WEIGHTS_KEY].name, (".", "visual_tokenizer"))
        if found is not None:
            return found
    return resolve_weights(WEIGHTS_KEY, source)


def understanding_weights_path(source: str | os.PathLike) -> Path:
    """``visual_weight.bin``: ``source`` itself or inside the folder ``source`` (also its ``language_model_sft/``,
    ``language_model/``). Raises FileNotFoundError naming the file and where to obtain it."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        found = _find(folder, KNOWN_WEIGHTS[UNDERSTANDING_KEY].name, UNDERSTANDING_FOLDERS)
        if found is not None:
            return found
    return resolve_weights(UNDERSTANDING_KEY, source)


def read_keyframe_tokenizer_checkpoint(source: str | os.PathLike | Mapping[str, torch.Tensor] | None = None
                                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str]:
    """(state with the prefix before ``token_predictor.`` removed, the stored config or None, source name).

    ``source``: a state dict, a file (official ``.bin``, ``.safetensors``, Lightning checkpoint) or a folder (see
    :func:`keyframe_tokenizer_path`).
    """
    config = None
    if isinstance(source, Mapping):
        state, where = state_dict_of(source, "state dict"), "state dict"
        check_finite(state, where)
    else:
        path = keyframe_tokenizer_path(source)
        where = str(path)
        obj = read_checkpoint(path)
        hparams = obj.get("hyper_parameters")
        if isinstance(hparams, Mapping) and isinstance(hparams.get("tokenizer"), (Mapping, str)):
            config = hparams["tokenizer"]
            config = dict(config) if isinstance(config, Mapping) else KeyframeTokenizerConfig.from_name(config).to_dict()
        else:
            config = read_json_metadata(path, CONFIG_METADATA_KEY)
        state = state_dict_of(obj, path)
        check_finite(state, path)
    return strip_prefix(state, ANCHOR), config, where


def _split(state: Mapping[str, torch.Tensor], names) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """{component: its keys without the component prefix}, and the keys of no component."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    rest = []
    for key, value in state.items():
        head, _, tail = key.partition(".")
        if head in names:
            parts.setdefault(head, {})[tail] = value
        else:
            rest.append(key)
    return parts, rest


def _load_components(model: KeyframeTokenizer, parts: dict[str, dict[str, torch.Tensor]], where: str) -> None:
    for name, state in parts.items():
        load_state_dict_strict(getattr(model, name), state, f"{where} [{name}]")


def load_keyframe_tokenizer(
    source: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    config: KeyframeTokenizerConfig | str | Mapping[str, Any] | None = None,
    *,
    eva_weights: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    understanding_weights: str | os.PathLike | None = None,
    with_encoder: bool = True,
    **overrides: Any,
) -> KeyframeTokenizer:
    """Build the keyframe tokenizer and load its weights, strictly per component, in eval mode.

    Args:
        source: ``tokenizer_encoder.bin``, a ``.safetensors`` file, a ``KeyframeTokenizer`` Lightning checkpoint,
            a state dict, or a folder holding ``tokenizer_encoder.bin`` (a Video-LaVIT root: ``visual_tokenizer/``);
            None: ``$LAVIT_WEIGHTS_DIR``.
        config: the architecture (config, preset name or mapping); None: the file's stored config, else the paper's.
        eva_weights: the encoder's file, folder or state dict; None: ``encoder.*`` of ``source`` when it holds them,
            else ``eva_vitg_psz14.bin`` beside the tokenizer file (a folder source: inside it).
        understanding_weights: ``visual_weight.bin`` (or a folder holding it): replaces the merger and provides
            ``vit_proj`` for ``encode_features``; None: a folder source's, when it has one.
        with_encoder: False: no encoder (features in; ``encoder.*`` in the file are ignored).
        overrides: config fields to change (``selection="gumbel"``...).

    Returns:
        The tokenizer; ``loaded_components`` (an attribute) names the components that came from files. Without
        ``vit_proj`` in any file it stays at its random initialisation (only ``encode_features`` uses it).

    Raises:
        FileNotFoundError: a missing file, named with where to obtain it (rain1011/Video-LaVIT-v1, LaVIT-7B-v2).
        lavit.weights.WeightsError: corrupt / unsafe files; a component missing from the file or not matching
            the config (WeightsMismatchError naming the component and its keys).
    """
    state, stored, where = read_keyframe_tokenizer_checkpoint(source)
    base = config if config is not None else (stored if stored is not None else "paper")
    cfg = KeyframeTokenizerConfig.coerce(base)
    if overrides:
        cfg = cfg.replace(**overrides)
    parts, rest = _split(state, set(COMPONENTS) | {"vit_proj", "encoder"})
    if rest:
        raise WeightsMismatchError(where, f"unexpected keys outside the tokenizer's components {sorted(rest)[:10]}")
    absent = [f"{name}.* ({what})" for name, what in COMPONENTS.items() if name not in parts]
    if absent:
        raise WeightsMismatchError(where, f"holds no {', '.join(absent)} tensors: not a keyframe tokenizer file")
    encoder_state = parts.pop("encoder", None)
    model = KeyframeTokenizer(cfg)
    _load_components(model, parts, where)
    loaded = list(parts)

    folder = None
    if source is not None and not isinstance(source, Mapping) and Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
    if understanding_weights is None and folder is not None:
        understanding_weights = _find(folder, KNOWN_WEIGHTS[UNDERSTANDING_KEY].name, UNDERSTANDING_FOLDERS)
    if understanding_weights is not None:
        path = understanding_weights_path(understanding_weights)
        extra = read_state_dict(path)
        extra = strip_prefix(extra, "vit_proj.weight") if any("vit_proj.weight" in k for k in extra) else extra
        extra_parts, extra_rest = _split(extra, set(UNDERSTANDING_COMPONENTS))
        if extra_rest or "vit_proj" not in extra_parts:
            raise WeightsMismatchError(path, "expected the understanding merger and projection (causal_encoder.*, "
                                             f"vit_proj.*); unexpected keys {sorted(extra_rest)[:10]}")
        _load_components(model, extra_parts, str(path))
        loaded += [f"{name} ({path.name})" for name in extra_parts]

    if with_encoder:
        if eva_weights is None and encoder_state is not None:
            eva_weights = encoder_state
        elif eva_weights is None:
            eva_weights = folder if folder is not None else (None if source is None or isinstance(source, Mapping)
                                                             else Path(where).parent)
        model.encoder = load_eva_encoder(eva_weights, cfg.encoder)
        loaded.append("encoder")
    model.loaded_components = tuple(loaded)
    return model.eval()


def save_keyframe_tokenizer(model: KeyframeTokenizer, path: str | os.PathLike, with_encoder: bool = True) -> Path:
    """Write ``model``'s weights (``encoder.*`` too unless ``with_encoder`` is False) and config as ``.safetensors``;
    :func:`load_keyframe_tokenizer` reads it back with no other argument."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if with_encoder or not k.startswith("encoder.")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())})
    return path
