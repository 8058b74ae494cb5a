"""Read, load and save video-detokenizer weights (``VideoDetokenizerModel``: ``unet.*`` + ``motion_encoder.*``).

Sources :func:`load_video_detokenizer` takes:

- the official ``video_3d_unet.bin`` (rain1011/Video-LaVIT-v1; torch pickle with keys ``unet.*`` and
  ``motion_encoder.*``) or a Video-LaVIT root folder holding it;
- a ``.safetensors`` file: :func:`save_video_detokenizer`'s (config in the metadata) or bare keys;
- a diffusers ``unet/`` folder (``config.json`` + ``diffusion_pytorch_model.{safetensors,bin}``): its file may
  hold the motion encoder too (``motion_encoder.*`` keys); otherwise ``motion_encoder.safetensors`` next to the
  folder (or inside it, :func:`save_pretrained`'s layout) supplies it;
- a ``VideoDetokenizer`` Lightning checkpoint (``.ckpt``: config in ``hyper_parameters["detokenizer"]``,
  weights ``model.*`` and ``ema.*``);
- an in-memory state dict (any of the key layouts above).

Pickles load with ``weights_only=True`` (lavit.weights). A file without config gets the paper config with the
sizes its tensors show (:func:`infer_unet_config`, :func:`infer_encoder_config`); attention heads show in no
shape, so they come from ``unet_config`` / ``encoder_config`` or the paper's (when they fit the inferred sizes).
"""

from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from lavit.detokenizer.components import MissingComponentError
from lavit.detokenizer.config import VideoDetokenizerConfig
from lavit.detokenizer.model import VideoDetokenizerModel
from lavit.detokenizer.motion_encoder import MotionConditionEncoderConfig
from lavit.detokenizer.unet import MotionConditionedUNet, unet_config as named_unet_config
from lavit.weights import (
    KNOWN_WEIGHTS,
    WeightsMismatchError,
    check_finite,
    load_state_dict_strict,
    read_checkpoint,
    read_json_metadata,
    resolve_weights,
)

WEIGHTS_KEY = "video_detokenizer"  # lavit.weights.KNOWN_WEIGHTS entry of the official video_3d_unet.bin
CONFIG_METADATA_KEY = "lavit.video_detokenizer_config"
UNET_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)
ENCODER_FILE = "motion_encoder.safetensors"
_UNET_ARGS = set(inspect.signature(MotionConditionedUNet.__init__).parameters) - {"self"}
_OFFICIAL_WHERE = KNOWN_WEIGHTS[WEIGHTS_KEY].source_url


@dataclass
class VideoDetokenizerCheckpoint:
    """What a video-detokenizer source holds.

    Attributes:
        unet: U-Net state dict (stock diffusers names, no prefix).
        motion_encoder: motion encoder state dict (no prefix), or None when the source has none.
        config: a saved ``VideoDetokenizerConfig.to_dict()``, or None.
        unet_config: a diffusers ``config.json`` of the U-Net (constructor arguments), or None.
        source: the file, for messages.
    """

    unet: dict[str, torch.Tensor]
    motion_encoder: dict[str, torch.Tensor] | None
    config: dict[str, Any] | None = None
    unet_config: dict[str, Any] | None = None
    source: str = "state dict"


# ---- key layouts -------------------------------------------------------------------------------
def _model_prefix(state: Mapping[str, Any], use_ema: bool) -> str | None:
    """The prefix before ``unet.conv_in.weight`` to read (``""``, ``"model."``, ``"ema."``...), None for bare U-Net keys."""
    prefixes = sorted({k[: -len("unet.conv_in.weight")] for k in state if k.endswith("unet.conv_in.weight")})
    if not prefixes:
        return None
    ema = [p for p in prefixes if p.startswith("ema")]
    rest = [p for p in prefixes if not p.startswith("ema")]
    if use_ema and ema:
        return ema[0]
    return ("model." if "model." in rest else rest[0]) if rest else ema[0]


def split_state(state: Mapping[str, torch.Tensor], source: str, use_ema: bool = True
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """``(unet, motion_encoder or None)`` state dicts of any supported key layout.

    Layouts: ``unet.*`` + ``motion_encoder.*`` (official, ours; every other key is kept and reported as unexpected
    by the strict load), the same under a prefix (``model.``, ``ema.``: only that subtree is read; ``use_ema``
    prefers ``ema*``), or bare diffusers U-Net keys (``conv_in.weight``...) with optional ``motion_encoder.*``.
    """
    prefix = _model_prefix(state, use_ema)
    if prefix is None:
        if "conv_in.weight" not in state:
            raise WeightsMismatchError(source, "no U-Net weights: neither 'unet.conv_in.weight' nor 'conv_in.weight' "
                                               f"among its {len(state)} keys (first: {sorted(state)[:5]})")
        unet = {k: v for k, v in state.items() if not k.startswith("motion_encoder.")}
    else:
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            state = {k: v for k, v in state.items() if k.startswith(("unet.", "motion_encoder."))}
        unet = {k[len("unet."):] if k.startswith("unet.") else k: v for k, v in state.items()
                if not k.startswith("motion_encoder.")}
    encoder = {k[len("motion_encoder."):]: v for k, v in state.items() if k.startswith("motion_encoder.")}
    return unet, encoder or None


# ---- reading sources ---------------------------------------------------------------------------
def _unet_folder_files(folder: Path) -> tuple[Path, Path]:
    config = folder / "config.json"
    if not config.is_file():
        raise MissingComponentError(config, "U-Net config (diffusers unet/ folder)")
    for name in UNET_WEIGHTS:
        if (folder / name).is_file():
            return config, folder / name
    raise MissingComponentError(folder / UNET_WEIGHTS[0], f"U-Net weights ({' or '.join(UNET_WEIGHTS[:2])})")


def _read_unet_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r}: not a readable JSON config ({error})") from error
    return {k: v for k, v in config.items() if k in _UNET_ARGS}


def _hparams_config(hparams: Mapping[str, Any]) -> dict | None:
    """A ``VideoDetokenizer`` checkpoint's ``hyper_parameters["detokenizer"]`` as a config dict: a mapping, or a preset
    name (``detokenizer: demo`` in a YAML config) expanded to its preset."""
    value = hparams.get("detokenizer")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, VideoDetokenizerConfig)):
        return VideoDetokenizerConfig.coerce(value).to_dict()
    return None


def _read_file(path: Path, use_ema: bool) -> VideoDetokenizerCheckpoint:
    raw = read_checkpoint(path)
    config = None
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):  # a Lightning checkpoint
        config = _hparams_config(raw.get("hyper_parameters") or {})
        raw = raw["state_dict"]
    else:
        config = read_json_metadata(path, CONFIG_METADATA_KEY)
    return _checkpoint_of(raw, str(path), use_ema, config)


def _checkpoint_of(raw: Mapping[str, Any], source: str, use_ema: bool, config: dict | None = None
                   ) -> VideoDetokenizerCheckpoint:
    bad = [k for k, v in raw.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise WeightsMismatchError(source, f"not a state dict (a mapping of parameter names to tensors): {bad[:5]} are not tensors")
    unet, encoder = split_state(raw, source, use_ema)
    check_finite(unet, source)
    if encoder is not None:
        check_finite(encoder, source)
    return VideoDetokenizerCheckpoint(unet, encoder, config, None, source)


def _read_unet_folder(folder: Path, use_ema: bool) -> VideoDetokenizerCheckpoint:
    config_path, weights = _unet_folder_files(folder)
    checkpoint = _read_file(weights, use_ema)
    checkpoint.unet_config = _read_unet_config(config_path)
    if checkpoint.motion_encoder is None:
        candidates = [folder / ENCODER_FILE, folder.parent / ENCODER_FILE]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise MissingComponentError(
                candidates[1],
                f"motion condition encoder weights ({weights} holds only U-Net keys, no motion_encoder.*; "
                f"looked for {ENCODER_FILE} next to and inside {str(folder)!r})",
                where=f"{_OFFICIAL_WHERE}, whose video_3d_unet.bin holds both parts",
            )
        encoder = {k.removeprefix("motion_encoder."): v for k, v in read_checkpoint(found).items()}
        check_finite(encoder, str(found))
        checkpoint.motion_encoder = encoder
        checkpoint.config = checkpoint.config or read_json_metadata(found, CONFIG_METADATA_KEY)
    return checkpoint


def read_video_detokenizer_checkpoint(source: str | os.PathLike | Mapping[str, Any] | None = None,
                                      use_ema: bool = True) -> VideoDetokenizerCheckpoint:
    """Read any source :func:`load_video_detokenizer` takes (None: ``$LAVIT_WEIGHTS_DIR/video_3d_unet.bin``).

    Raises:
        MissingComponentError: a missing file or folder, or a U-Net folder without motion encoder weights.
        lavit.weights.WeightsError: empty, corrupt or unsafe files, non-tensor values, non-finite weights.
    """
    if isinstance(source, Mapping):
        config = None
        if "state_dict" in source and isinstance(source["state_dict"], Mapping):
            config = _hparams_config(source.get("hyper_parameters") or {})
            source = source["state_dict"]
        return _checkpoint_of(source, "state dict", use_ema, config)
    if source is None:
        try:
            return _read_file(resolve_weights(WEIGHTS_KEY), use_ema)
        except FileNotFoundError as error:
            raise MissingComponentError(os.environ.get("LAVIT_WEIGHTS_DIR", "$LAVIT_WEIGHTS_DIR"), str(error), _OFFICIAL_WHERE) from error
    path = Path(source).expanduser()
    if path.is_dir():
        official = path / KNOWN_WEIGHTS[WEIGHTS_KEY].name
        if official.is_file():
            return _read_file(official, use_ema)
        for folder in (path, path / "unet", path / "video_detokenizer" / "unet"):
            if (folder / "config.json").is_file():
                return _read_unet_folder(folder, use_ema)
        raise MissingComponentError(
            official, f"video detokenizer weights ({KNOWN_WEIGHTS[WEIGHTS_KEY].name}, or a diffusers unet/ folder with "
                      f"config.json: looked in {str(path)!r}, {str(path / 'unet')!r})", _OFFICIAL_WHERE)
    if not path.is_file():
        raise MissingComponentError(path, "video detokenizer weights file", _OFFICIAL_WHERE)
    return _read_file(path, use_ema)


# ---- configs -----------------------------------------------------------------------------------
def _block_indices(state: Mapping[str, Any], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def infer_unet_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ``MotionConditionedUNet`` arguments a U-Net state dict shows (no heads: they change no shape).

    in/out channels (``conv_in``, ``conv_out``), ``block_out_channels`` (first resnet of each down block),
    block types (a block with ``attentions`` is a cross-attention block), ``layers_per_block`` (resnets of down block
    0), ``transformer_layers_per_block``, ``cross_attention_dim`` (``attn2.to_k`` input), and the added-time
    embedding (``add_embedding.linear_1`` input = 3 ids x ``addition_time_embed_dim``).
    """
    sizes: dict[str, Any] = {}
    if "conv_in.weight" in state:
        sizes["in_channels"] = int(state["conv_in.weight"].shape[1])
    if "conv_out.weight" in state:
        sizes["out_channels"] = int(state["conv_out.weight"].shape[0])
    down = _block_indices(state, "down_blocks.")
    channels = [state.get(f"down_blocks.{i}.resnets.0.spatial_res_block.conv1.weight") for i in down]
    if down and all(c is not None for c in channels):
        sizes["block_out_channels"] = [int(c.shape[0]) for c in channels]
        attends = [any(k.startswith(f"down_blocks.{i}.attentions.") for k in state) for i in down]
        sizes["down_block_types"] = ["CrossAttnDownBlockSpatioTemporal" if a else "DownBlockSpatioTemporal" for a in attends]
        sizes["layers_per_block"] = len(_block_indices(state, "down_blocks.0.resnets."))
        depths = [len(_block_indices(state, f"down_blocks.{i}.attentions.0.transformer_blocks.")) if a else 1
                  for i, a in zip(down, attends)]
        sizes["transformer_layers_per_block"] = depths[0] if len(set(depths)) == 1 else depths
    up = _block_indices(state, "up_blocks.")
    if up:
        sizes["up_block_types"] = ["CrossAttnUpBlockSpatioTemporal" if any(k.startswith(f"up_blocks.{i}.attentions.") for k in state)
                                   else "UpBlockSpatioTemporal" for i in up]
    to_k = next((v for k, v in state.items() if k.endswith("attn2.to_k.weight")), None)
    if to_k is not None:
        sizes["cross_attention_dim"] = int(to_k.shape[1])
    if "add_embedding.linear_1.weight" in state:
        projection = int(state["add_embedding.linear_1.weight"].shape[1])
        sizes["projection_class_embeddings_input_dim"] = projection
        sizes["addition_time_embed_dim"] = projection // 3  # [fps, motion bucket, noise aug]
    return sizes


def infer_encoder_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ``MotionConditionEncoderConfig`` fields a motion-encoder state dict shows (not ``num_heads``)."""
    sizes: dict[str, Any] = {}
    if "in_proj.weight" in state:
        dim, in_channels = state["in_proj.weight"].shape
        sizes.update(dim=int(dim), in_channels=int(in_channels))
    if "out_proj.weight" in state:
        sizes["out_channels"] = int(state["out_proj.weight"].shape[0])
    blocks = _block_indices(state, "blocks.")
    if blocks:
        sizes["depth"] = len(blocks)
    if "blocks.0.mlp.fc1.weight" in state:
        hidden, dim = state["blocks.0.mlp.fc1.weight"].shape
        sizes["mlp_ratio"] = hidden / dim
    return sizes


def _overlay(value: Any, kind: str) -> dict[str, Any]:
    """A config argument as a mapping to lay over the base: a preset name or config is complete, a mapping partial."""
    if value is None:
        return {}
    if kind == "unet":
        return named_unet_config(value) if isinstance(value, str) else dict(value)
    if isinstance(value, (str, MotionConditionEncoderConfig)):
        return MotionConditionEncoderConfig.coerce(value).to_dict()
    return dict(value)


def _check_heads(unet: Mapping[str, Any], encoder: Mapping[str, Any], source: str) -> None:
    heads = unet["num_attention_heads"]
    channels = list(unet["block_out_channels"])
    per_block = list(heads) if isinstance(heads, (list, tuple)) else [heads] * len(channels)
    if len(per_block) != len(channels) or any(c % h for c, h in zip(channels, per_block)):
        raise ValueError(
            f"{source}: num_attention_heads {heads} does not fit block_out_channels {channels} (one head count per block, "
            "each dividing its channels); heads show in no weight shape: pass unet_config={'num_attention_heads': ...}")
    if encoder["dim"] % encoder["num_heads"]:
        raise ValueError(f"{source}: motion encoder num_heads {encoder['num_heads']} does not divide its width {encoder['dim']}; "
                         "heads show in no weight shape: pass encoder_config={'num_heads': ...}")


def video_detokenizer_config(checkpoint: VideoDetokenizerCheckpoint, unet_config: Mapping[str, Any] | str | None = None,
                             encoder_config: MotionConditionEncoderConfig | Mapping[str, Any] | str | None = None
                             ) -> VideoDetokenizerConfig:
    """The config to build for ``checkpoint``: the saved one, else the paper's with the diffusers ``config.json`` and
    the sizes the tensors show; then ``unet_config`` / ``encoder_config`` (a preset name or config replaces, a
    mapping overrides single fields).

    Raises:
        ValueError: heads that do not fit the sizes, or an inconsistent config (VideoDetokenizerConfig's checks).
    """
    if checkpoint.config is not None:
        base = VideoDetokenizerConfig.from_dict(checkpoint.config)
        unet = {**base.unet, **(checkpoint.unet_config or {})}
        encoder = base.motion_encoder.to_dict()
        rest = {k: v for k, v in base.to_dict().items() if k not in ("unet", "motion_encoder", "latent_channels")}
    else:
        paper = VideoDetokenizerConfig()
        unet = {**paper.unet, **(checkpoint.unet_config or {}), **infer_unet_config(checkpoint.unet)}
        encoder = {**paper.motion_encoder.to_dict(), **infer_encoder_config(checkpoint.motion_encoder or {})}
        rest = {k: v for k, v in paper.to_dict().items() if k not in ("unet", "motion_encoder", "latent_channels")}
    unet.update(_overlay(unet_config, "unet"))
    encoder.update(_overlay(encoder_config, "encoder"))
    _check_heads(unet, encoder, checkpoint.source)
    return VideoDetokenizerConfig(unet=unet, motion_encoder=encoder, latent_channels=int(unet.get("out_channels", 4)), **rest)


# ---- load / save -------------------------------------------------------------------------------
def load_video_detokenizer(
    source: str | os.PathLike | Mapping[str, Any] | VideoDetokenizerCheckpoint | None = None,
    unet_config: Mapping[str, Any] | str | None = None,
    encoder_config: MotionConditionEncoderConfig | Mapping[str, Any] | str | None = None,
    *,
    use_ema: bool = True,
) -> VideoDetokenizerModel:
    """Build a ``VideoDetokenizerModel`` for ``source`` and load its weights strictly.

    Args:
        source: see the module docstring (None: ``$LAVIT_WEIGHTS_DIR/video_3d_unet.bin``).
        unet_config: U-Net arguments to use instead of / over the saved or inferred ones (``"paper"``, ``"tiny"`` or a
            mapping, e.g. ``{"num_attention_heads": (2, 2)}``).
        encoder_config: likewise for the motion condition encoder.
        use_ema: read a Lightning checkpoint's EMA weights (``ema.*``) when it has them, else ``model.*``.

    Returns:
        The model in eval mode.

    Raises:
        MissingComponentError: a missing file / folder / motion encoder (names the path and where to get it).
        lavit.weights.WeightsError: corrupt or unsafe files (``UnsafeWeightsError``), non-finite weights, and
            missing / unexpected / mis-shaped keys (``WeightsMismatchError``, all listed).
        ValueError: heads that do not fit, or an inconsistent config.
    """
    checkpoint = source if isinstance(source, VideoDetokenizerCheckpoint) else read_video_detokenizer_checkpoint(source, use_ema)
    if checkpoint.motion_encoder is None:
        raise WeightsMismatchError(checkpoint.source, "no motion condition encoder weights (motion_encoder.* keys): the "
                                                      f"official {KNOWN_WEIGHTS[WEIGHTS_KEY].name} holds both parts")
    model = VideoDetokenizerModel(video_detokenizer_config(checkpoint, unet_config, encoder_config))
    state = {**{f"unet.{k}": v for k, v in checkpoint.unet.items()},
             **{f"motion_encoder.{k}": v for k, v in checkpoint.motion_encoder.items()}}
    load_state_dict_strict(model, state, checkpoint.source)
    return model.eval()


def _tensors(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def _metadata(model: VideoDetokenizerModel) -> dict[str, str]:
    return {"format": "pt", CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())}


def save_video_detokenizer(model: VideoDetokenizerModel, path: str | os.PathLike) -> Path:
    """Write ``model`` as one ``.safetensors`` file (keys ``unet.*`` + ``motion_encoder.*``, the official layout) with its
    ``VideoDetokenizerConfig`` in the metadata, so :func:`load_video_detokenizer` needs no config."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({**_tensors(model.unet, "unet."), **_tensors(model.motion_encoder, "motion_encoder.")}, str(path), metadata=_metadata(model))
    return path


def save_pretrained(model: VideoDetokenizerModel, folder: str | os.PathLike) -> Path:
    """Write ``model`` as a folder: ``unet/`` (diffusers ``save_pretrained`` of the U-Net: stock files, loadable by
    ``MotionConditionedUNet.from_pretrained``) and ``motion_encoder.safetensors`` (the encoder, with the whole
    ``VideoDetokenizerConfig`` in its metadata). :func:`load_video_detokenizer` takes the folder or its ``unet/``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.unet.save_pretrained(str(folder / "unet"))
    save_file(_tensors(model.motion_encoder), str(folder / ENCODER_FILE), metadata=_metadata(model))
    return folder


def _svd_state(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(source, Mapping):
        return split_state(source, "state dict")[0], "state dict"
    path = Path(source).expanduser()
    if path.is_dir():
        folder = next((f for f in (path, path / "unet") if (f / "config.json").is_file()), None)
        if folder is None:
            raise MissingComponentError(path / "unet" / "config.json", "SVD U-Net folder (diffusers unet/ with config.json)",
                                        "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt (folder unet/)")
        path = _unet_folder_files(folder)[1]
    elif not path.is_file():
        raise MissingComponentError(path, "SVD U-Net weights file",
                                    "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt (folder unet/)")
    raw = read_checkpoint(path)
    unet, _ = split_state(raw, str(path))
    check_finite(unet, str(path))
    return unet, str(path)


def load_svd_unet_weights(unet: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor],
                          skip: Iterable[str] = ("conv_in", "attn2")) -> list[str]:
    """Initialise ``unet`` (a ``MotionConditionedUNet``) from SVD img2vid-xt's U-Net (a diffusers folder, an SVD root
    with ``unet/``, a weights file or a state dict) for every parameter whose name contains none of ``skip``.

    Paper: the motion encoder, ``conv_in`` (10 input channels, SVD has 8) and every cross-attention layer (``attn2``,
    which reads motion instead of CLIP image embeddings) are trained from scratch, the rest starts from SVD.

    Returns:
        The names left at their initialisation (those matching ``skip``), sorted.

    Raises:
        MissingComponentError: a missing folder or file.
        lavit.weights.WeightsMismatchError: a tensor outside ``skip`` that the source lacks, has in another shape,
            or source tensors outside ``skip`` that the U-Net lacks (all listed).
    """
    skip = tuple(skip)
    state, name = _svd_state(source)
    expected = unet.state_dict()
    skipped = sorted(k for k in expected if any(s in k for s in skip))
    wanted = {k: v for k, v in expected.items() if k not in skipped}
    extra = {k for k in state if k not in expected and not any(s in k for s in skip)}
    problems = []
    missing = sorted(wanted.keys() - state.keys())
    if missing:
        problems.append(f"missing keys {missing[:20]}" + (f" ({len(missing) - 20} more)" if len(missing) > 20 else ""))
    if extra:
        problems.append(f"unexpected keys {sorted(extra)[:20]}" + (f" ({len(extra) - 20} more)" if len(extra) > 20 else ""))
    wrong = [f"size mismatch for {k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
             for k, v in wanted.items() if k in state and state[k].shape != v.shape]
    problems.extend(wrong[:10])
    if problems:
        raise WeightsMismatchError(name, f"does not match {type(unet).__name__} outside skip={skip}: " + "; ".join(problems))
    with torch.no_grad():
        for key, value in wanted.items():
            value.copy_(state[key])
    return skipped
