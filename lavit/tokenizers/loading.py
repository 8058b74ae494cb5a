"""Load motion-tokenizer weights: the official ``motion_tokenizer.bin``, safetensors, or our checkpoints."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from lavit.tokenizers.motion_tokenizer import MotionTokenizer

OFFICIAL_SOURCE = (
    "the official Video-LaVIT v1 release on Hugging Face (repository rain1011/Video-LaVIT-v1, file "
    "motion_tokenizer.bin); download it on a machine with network access and pass its local path"
)


def read_state_dict(path: str | os.PathLike, what: str = "checkpoint", source: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a torch pickle loaded with ``weights_only=True``.

    Lightning checkpoints (a dict with ``"state_dict"``) are unwrapped.

    Raises:
        FileNotFoundError: naming the file and, when given, where users obtain it.
    """
    path = Path(path)
    if not path.is_file():
        hint = f"; obtain it from {source}" if source else ""
        raise FileNotFoundError(f"{what} not found: {path}{hint}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return dict(obj)


def checkpoint_hyperparameters(path: str | os.PathLike) -> dict[str, Any]:
    """``hyper_parameters`` of a Lightning checkpoint (empty for other files)."""
    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file():
        return {}
    obj = torch.load(path, map_location="cpu", weights_only=True)
    hp = obj.get("hyper_parameters") if isinstance(obj, Mapping) else None
    return dict(hp) if isinstance(hp, Mapping) else {}


def strip_prefix(state: Mapping[str, torch.Tensor], anchor: str) -> dict[str, torch.Tensor]:
    """Drop whatever prefix stands before ``anchor`` in the keys (``model.``, ``tokenizer.``, ...)."""
    hits = [k for k in state if anchor in k]
    if not hits:
        return dict(state)
    prefix = hits[0][: hits[0].index(anchor)]
    if not prefix:
        return dict(state)
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def infer_motion_tokenizer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Config read off the tensor shapes (num_heads defaults to dim / 64; pass it for other layouts)."""
    config: dict[str, Any] = {}
    if "encoder.in_proj.weight" in state:
        dim, in_channels = state["encoder.in_proj.weight"].shape
        config.update(dim=int(dim), in_channels=int(in_channels), num_heads=max(1, int(dim) // 64))
    if "quantize.embedding.weight" in state:
        size, code_dim = state["quantize.embedding.weight"].shape
        config.update(codebook_size=int(size), codebook_dim=int(code_dim))
    if "encoder.temp_pos" in state:
        config["num_frames"] = int(state["encoder.temp_pos"].shape[1])
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("encoder.blocks.")}
    stages = sum(1 for k in state if k.startswith("encoder.down_sample_layers.") and k.endswith("conv.weight"))
    if blocks and stages and len(blocks) % stages == 0:
        config["stage_depths"] = (len(blocks) // stages,) * stages
    return config


def load_motion_tokenizer(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor], **config: Any) -> MotionTokenizer:
    """Build a MotionTokenizer and load weights strictly.

    Args:
        path_or_state_dict: ``motion_tokenizer.bin`` (official), a ``.safetensors`` file, one of our
            Lightning checkpoints (``.ckpt``), or a state dict. Pickles load with ``weights_only=True``.
        **config: MotionTokenizer arguments; unspecified ones come from a Lightning checkpoint's
            hyper-parameters, else are inferred from tensor shapes.

    Returns:
        The tokenizer in eval mode.

    Raises:
        FileNotFoundError: the file is missing (the message says where to get the official one).
        ValueError: missing / unexpected keys or mismatched shapes, each named.
    """
    saved: dict[str, Any] = {}
    if isinstance(path_or_state_dict, Mapping):
        state = dict(path_or_state_dict)
        name = "state dict"
    else:
        state = read_state_dict(path_or_state_dict, "motion tokenizer weights", OFFICIAL_SOURCE)
        name = str(path_or_state_dict)
        accepted = inspect.signature(MotionTokenizer).parameters
        saved = {k: v for k, v in checkpoint_hyperparameters(path_or_state_dict).items() if k in accepted}
    state = strip_prefix(state, "encoder.in_proj.weight")
    model = MotionTokenizer(**{**infer_motion_tokenizer_config(state), **saved, **config})
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} != expected {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
        if wrong:
            parts.append(f"shape mismatches: {'; '.join(wrong[:10])}")
        raise ValueError(f"{name} does not match the motion tokenizer: " + " | ".join(parts))
    model.load_state_dict(state, strict=True)
    model.quantize.warmup_steps = 0  # loaded codes are fitted: always quantise
    model.quantize.initialized.fill_(True)
    return model.eval()
