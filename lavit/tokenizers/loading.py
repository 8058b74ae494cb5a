"""Read, load and save motion-tokenizer weights with their config and data settings.

Files: the official ``motion_tokenizer.bin`` (no config: the paper's), ``.safetensors`` written by
:func:`save_motion_tokenizer` (config and data settings in the metadata), and ``MotionVQVAE`` Lightning
checkpoints (config in ``hyper_parameters["tokenizer"]``, or flat in checkpoints written before the
config was nested; data settings in ``datamodule_hyper_parameters``). Reading, strict loading and
their errors are :mod:`lavit.weights`'s.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import torch

from lavit.tokenizers.motion_config import ARCHITECTURE_FIELDS, MotionTokenizerConfig
from lavit.tokenizers.motion_tokenizer import MotionTokenizer
from lavit.video.defaults import CLIP_LEN, DEFAULT_FPS, FIELD_SIZE
from lavit.weights import (
    check_finite,
    load_state_dict_strict,
    read_checkpoint,
    read_json_metadata,
    resolve_weights,
    state_dict_of,
    strip_prefix,
)

WEIGHTS_KEY = "motion_tokenizer"  # lavit.weights.KNOWN_WEIGHTS entry of the official file
CONFIG_METADATA_KEY = "lavit.motion_tokenizer_config"
DATA_METADATA_KEY = "lavit.data_settings"
ANCHOR = "encoder.in_proj.weight"  # the first key of the tokenizer, whatever prefix a checkpoint adds
# The extraction settings a trained tokenizer expects (``lavit.video.extract_clips`` arguments).
DATA_SETTINGS = ("fps", "sampling", "normalization", "clip_len", "field_size")
PAPER_DATA_SETTINGS = dict(fps=DEFAULT_FPS, sampling="official", normalization="official", clip_len=CLIP_LEN, field_size=FIELD_SIZE)
_CONFIG_FIELDS = {f.name for f in fields(MotionTokenizerConfig)}


@dataclass
class MotionTokenizerCheckpoint:
    """What a motion-tokenizer file holds.

    Attributes:
        state: tokenizer state dict (prefixes such as ``tokenizer.`` removed).
        config: the saved config as a mapping, or None when the file carries none (official weights).
        data: saved data settings (a subset of ``DATA_SETTINGS``; {} when none are saved).
        source: the file, for messages.
    """

    state: dict[str, torch.Tensor]
    config: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    source: str = "state dict"


def is_legacy_hyperparameters(hparams: Mapping[str, Any]) -> bool:
    """Whether MotionVQVAE hyper-parameters hold the tokenizer arguments flat (checkpoints of 04a15bb and before)."""
    return "tokenizer" not in hparams and "dim" in hparams


def nest_legacy_hyperparameters(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Flat MotionVQVAE hyper-parameters -> ``{"tokenizer": {...}, <training arguments>}``."""
    hparams = dict(hparams)
    tokenizer = {k: hparams.pop(k) for k in list(hparams) if k in _CONFIG_FIELDS}
    return {**hparams, "tokenizer": MotionTokenizerConfig.from_dict(tokenizer).to_dict()}


def read_motion_tokenizer_checkpoint(path: str | os.PathLike | None = None) -> MotionTokenizerCheckpoint:
    """Read a motion-tokenizer file (None: ``$LAVIT_WEIGHTS_DIR/motion_tokenizer.bin``).

    Raises:
        FileNotFoundError: the file is missing (the message says where to obtain the official one).
        lavit.weights.WeightsError: empty, truncated or corrupt file, pickled objects, non-finite values.
    """
    file = resolve_weights(WEIGHTS_KEY, path)
    raw = read_checkpoint(file)
    config: dict[str, Any] | None = None
    data: dict[str, Any] = {}
    if "state_dict" in raw:  # a Lightning checkpoint
        hparams = raw.get("hyper_parameters") or {}
        if isinstance(hparams.get("tokenizer"), Mapping):
            config = dict(hparams["tokenizer"])
        elif is_legacy_hyperparameters(hparams):
            config = nest_legacy_hyperparameters(hparams)["tokenizer"]
        data_hparams = raw.get("datamodule_hyper_parameters") or {}
        data = {k: data_hparams[k] for k in DATA_SETTINGS if data_hparams.get(k) is not None}
    else:  # safetensors written by save_motion_tokenizer carry both in the metadata; .bin files neither
        config = read_json_metadata(file, CONFIG_METADATA_KEY)
        data = read_json_metadata(file, DATA_METADATA_KEY) or {}
    state = strip_prefix(state_dict_of(raw, file), ANCHOR)
    check_finite(state, file)
    return MotionTokenizerCheckpoint(state, config, data, str(file))


def _config_from_shapes(state: Mapping[str, torch.Tensor], source: str, overrides: Mapping[str, Any]) -> MotionTokenizerConfig:
    """The paper config with the sizes the tensors show; num_heads is not visible in any shape, so a
    width other than the paper's needs it given."""
    sizes: dict[str, Any] = {}
    if ANCHOR in state:
        dim, in_channels = state[ANCHOR].shape
        sizes.update(dim=int(dim), in_channels=int(in_channels))
    if "quantize.embedding.weight" in state:
        size, code_dim = state["quantize.embedding.weight"].shape
        sizes.update(codebook_size=int(size), codebook_dim=int(code_dim))
    if "encoder.temp_pos" in state:
        sizes["num_frames"] = int(state["encoder.temp_pos"].shape[1])
    if "encoder.blocks.0.mlp.fc1.weight" in state:
        sizes["mlp_ratio"] = state["encoder.blocks.0.mlp.fc1.weight"].shape[0] / state["encoder.blocks.0.mlp.fc1.weight"].shape[1]
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("encoder.blocks.")}
    stages = sum(1 for k in state if k.startswith("encoder.down_sample_layers.") and k.endswith("conv.weight"))
    if blocks and stages and len(blocks) % stages == 0:
        sizes["stage_depths"] = (len(blocks) // stages,) * stages
    paper = MotionTokenizerConfig()
    if sizes.get("dim", paper.dim) != paper.dim and "num_heads" not in overrides:
        raise ValueError(
            f"{source} carries no config and its width {sizes['dim']} is not the paper's {paper.dim}, so its number of "
            "attention heads is unknown: pass num_heads (lavit --num-heads)"
        )
    return MotionTokenizerConfig.from_dict({**paper.to_dict(), **sizes, **overrides})


def motion_tokenizer_config(checkpoint: MotionTokenizerCheckpoint, config: MotionTokenizerConfig | str | Mapping[str, Any] | None = None,
                            **overrides: Any) -> MotionTokenizerConfig:
    """The config to build for ``checkpoint``: ``config`` if given, else the saved one, else the paper's with
    the sizes read off the tensors; then ``overrides``.

    Raises:
        ValueError: an override of an architecture field that contradicts the saved config, or
            num_heads missing for a file without config whose width is not the paper's.
    """
    if config is not None:
        return MotionTokenizerConfig.coerce(config).replace(**overrides)
    if checkpoint.config is None:
        return _config_from_shapes(checkpoint.state, checkpoint.source, overrides)
    saved = MotionTokenizerConfig.from_dict(checkpoint.config)
    for name, value in overrides.items():
        if name in ARCHITECTURE_FIELDS and MotionTokenizerConfig.from_dict({**saved.to_dict(), name: value}) != saved:
            raise ValueError(f"{name}={value!r} contradicts the config saved in {checkpoint.source} ({name}={getattr(saved, name)!r})")
    return saved.replace(**overrides)


def load_motion_tokenizer(
    source: str | os.PathLike | Mapping[str, torch.Tensor] | MotionTokenizerCheckpoint | None = None,
    config: MotionTokenizerConfig | str | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> MotionTokenizer:
    """Build a MotionTokenizer from a file's config and load its weights strictly.

    Args:
        source: ``motion_tokenizer.bin`` (official), a ``.safetensors`` file, a MotionVQVAE checkpoint
            (``.ckpt``, also of the pre-config format), a state dict, or a read checkpoint; None looks
            up ``$LAVIT_WEIGHTS_DIR/motion_tokenizer.bin``. Pickles load with ``weights_only=True``.
        config: the config to build (a preset name, a config or a mapping) instead of the saved one.
        **overrides: config fields to change; for a file that carries a config, architecture fields
            must agree with it. Files without config (official weights, bare state dicts) get the
            paper config with the sizes their tensors show, plus these (``num_heads=...`` for widths
            other than 512).

    Returns:
        The tokenizer in eval mode, quantising from the first call (no warm-up).

    Raises:
        FileNotFoundError: the file is missing (the message says where to get the official one).
        lavit.weights.WeightsError: a corrupt, empty or unsafe file, non-finite weights, or keys and
            shapes that do not match the config (each named; a ValueError).
        ValueError: an inconsistent config or one that contradicts the file's.
    """
    if isinstance(source, MotionTokenizerCheckpoint):
        checkpoint = source
    elif isinstance(source, Mapping):
        state = strip_prefix(dict(source), ANCHOR)
        check_finite(state, "state dict")
        checkpoint = MotionTokenizerCheckpoint(state)
    else:
        checkpoint = read_motion_tokenizer_checkpoint(source)
    model = MotionTokenizer(motion_tokenizer_config(checkpoint, config, **overrides))
    load_state_dict_strict(model, checkpoint.state, checkpoint.source)
    model.quantize.warmup_steps = 0  # loaded codes are fitted: always quantise
    model.quantize.initialized.fill_(True)
    return model.eval()


def save_motion_tokenizer(model: MotionTokenizer, path: str | os.PathLike, data_settings: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights as safetensors with its config (and the data settings it was trained on,
    a subset of ``DATA_SETTINGS``) in the metadata, so :func:`load_motion_tokenizer` needs no arguments."""
    from safetensors.torch import save_file

    unknown = sorted(set(data_settings or {}) - set(DATA_SETTINGS))
    if unknown:
        raise ValueError(f"unknown data settings {unknown}; known: {list(DATA_SETTINGS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())}
    if data_settings:
        metadata[DATA_METADATA_KEY] = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in data_settings.items()})
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
    return path


def clip_options(checkpoint: MotionTokenizerCheckpoint, config: MotionTokenizerConfig, **explicit: Any) -> dict[str, Any]:
    """``extract_clips`` settings for a tokenizer: the paper's, then the checkpoint's data settings, then
    the model's clip shape, then ``explicit`` ones that are not None.

    Raises:
        ValueError: an explicit ``field_size`` or ``clip_len`` the model cannot take.
    """
    options = {**PAPER_DATA_SETTINGS, **checkpoint.data, "field_size": config.field_size, "clip_len": config.num_frames}
    options["field_size"] = tuple(options["field_size"])
    for name, model_value in (("field_size", config.field_size), ("clip_len", config.num_frames)):
        given = explicit.get(name)
        if given is not None and (tuple(given) if name == "field_size" else given) != model_value:
            raise ValueError(f"{name} {given} contradicts the tokenizer of {checkpoint.source}, which takes {name} {model_value}")
    return {**options, **{k: v for k, v in explicit.items() if v is not None}}
