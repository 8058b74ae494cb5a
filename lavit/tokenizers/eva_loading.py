"""Load the EVA-CLIP ViT-g/14 encoder of the keyframe tokenizer: the official ``eva_vitg_psz14.bin``, a
``.safetensors`` file, a checkpoint holding it under a prefix, or a state dict. Reading, strict loading and
their errors are :mod:`lavit.weights`'s."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from lavit.tokenizers.eva_vit import EVAVisionConfig, EVAVisionEncoder
from lavit.weights import KNOWN_WEIGHTS, check_finite, load_state_dict_strict, read_state_dict, resolve_weights, strip_prefix

WEIGHTS_KEY = "eva_vit_g"  # lavit.weights.KNOWN_WEIGHTS entry of the official file
# The official code's name first; issue 12 spells it eva_vit_psz14.bin.
FILE_NAMES = (KNOWN_WEIGHTS[WEIGHTS_KEY].name, "eva_vit_psz14.bin")
# The first key of the encoder, whatever prefix a checkpoint adds (``encoder.``,
# ``model.visual_tokenizer.encoder.``, a parity file's ``model.``).
ANCHOR = "patch_embed.proj.weight"


def eva_weights_path(source: str | os.PathLike | None = None) -> Path:
    """The encoder's weight file: ``source`` itself, or inside the folder ``source`` (also its
    ``visual_tokenizer/``, the layout of rain1011/Video-LaVIT-v1) under either file name; None looks in
    ``$LAVIT_WEIGHTS_DIR``.

    Raises:
        FileNotFoundError: nothing found; the message names the file, where to obtain it and how to point at it.
    """
    if source is None:
        directory = os.environ.get("LAVIT_WEIGHTS_DIR")
        folder = Path(directory).expanduser() if directory else None
    else:
        folder = Path(source).expanduser() if Path(source).expanduser().is_dir() else None
    if folder is not None:
        for candidate in (folder / sub / name for sub in (".", "visual_tokenizer") for name in FILE_NAMES):
            if candidate.is_file():
                return resolve_weights(WEIGHTS_KEY, candidate)
    return resolve_weights(WEIGHTS_KEY, source)


def load_eva_encoder(
    source: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    config: EVAVisionConfig | str | Mapping[str, Any] = "paper",
) -> EVAVisionEncoder:
    """Build the EVA-CLIP encoder and load its weights strictly.

    Args:
        source: ``eva_vitg_psz14.bin`` (official; pickles load with ``weights_only=True``), a ``.safetensors``
            file, a checkpoint holding the encoder under a prefix (``encoder.``, ``model.``...; other keys
            are dropped), a folder holding the file (see :func:`eva_weights_path`), or a state dict; None:
            ``$LAVIT_WEIGHTS_DIR``.
        config: the architecture: a preset name ("paper", "tiny"), an :class:`EVAVisionConfig` or a mapping.

    Returns:
        The encoder, frozen and in eval mode.

    Raises:
        FileNotFoundError: the file is missing (the message says where to obtain the official one).
        lavit.weights.WeightsError: a corrupt, empty or unsafe file, non-finite weights, or keys and shapes that
            do not match the config (each named; a ValueError).
    """
    if isinstance(source, Mapping):
        state, where = strip_prefix(dict(source), ANCHOR), "state dict"
        check_finite(state, where)
    else:
        file = eva_weights_path(source)
        state, where = strip_prefix(read_state_dict(file), ANCHOR), str(file)
    with torch.device("meta"):  # no memory (nor initialisation) for weights about to be replaced
        model = EVAVisionEncoder(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # float32, as the official model
    load_state_dict_strict(model, state, where, assign=True)
    return model.freeze()
