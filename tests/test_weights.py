"""lavit.weights: every loader turns a corrupt, unsafe or non-finite weights file into one typed error
naming the file and the problem; strict loading names every mismatching key."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import lavit
from lavit.weights import (
    KNOWN_WEIGHTS,
    UnsafeWeightsError,
    WeightsError,
    WeightsMismatchError,
    load_state_dict_strict,
    read_checkpoint,
    read_state_dict,
    resolve_weights,
)
from metrics.extractors import ClipModel, InceptionFeatures
from metrics.networks import load_c3d, load_i3d


class _Evil:
    """Unpickling this would create ``marker``: a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _state() -> dict[str, torch.Tensor]:
    return {"layer.weight": torch.randn(4, 3), "layer.bias": torch.zeros(4)}


def _write_corrupt(kind: str, folder: Path) -> Path:
    """A weights file broken in one of the ways downloads and disks break them."""
    if kind == "empty":
        path = folder / "weights.bin"
        path.write_bytes(b"")
    elif kind == "truncated_safetensors":
        path = folder / "weights.safetensors"
        save_file(_state(), str(path))
        path.write_bytes(path.read_bytes()[:40])
    elif kind == "truncated_zip":
        path = folder / "weights.bin"
        torch.save(_state(), path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "truncated_legacy_pickle":
        path = folder / "weights.pt"
        torch.save(_state(), path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "text":
        path = folder / "weights.bin"
        path.write_text("<html>404 Not Found</html>\n")
    elif kind == "pickled_object":
        path = folder / "weights.bin"
        torch.save({"layer.weight": torch.zeros(1), "payload": _Evil(folder / "code_ran")}, path)
    else:
        raise AssertionError(kind)
    return path


CORRUPTIONS = {
    "empty": "empty file (0 bytes)",
    "truncated_safetensors": "truncated or corrupt safetensors file",
    "truncated_zip": "truncated or corrupt torch.save archive",
    "truncated_legacy_pickle": "truncated or corrupt",
    "text": "not a checkpoint",
    "pickled_object": "refusing to unpickle",
}

LOADERS = {
    "read_state_dict": read_state_dict,
    "motion_tokenizer": lavit.load_motion_tokenizer,
    "i3d": load_i3d,
    "c3d": load_c3d,
    "inception": InceptionFeatures,
    "clip": lambda path: ClipModel("ViT-B-16", path),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_files_raise_weights_error_naming_file_and_problem(tmp_path, kind, loader):
    path = _write_corrupt(kind, tmp_path)
    with pytest.raises(WeightsError) as info:
        LOADERS[loader](path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert CORRUPTIONS[kind] in info.value.reason
    assert not (tmp_path / "code_ran").exists()


def test_pickled_objects_are_also_an_unpickling_error(tmp_path):
    path = _write_corrupt("pickled_object", tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        read_state_dict(path)
    assert isinstance(UnsafeWeightsError(path, "x"), WeightsError)


@pytest.mark.parametrize("loader", ["read_state_dict", "motion_tokenizer", "i3d", "c3d", "inception", "clip"])
def test_non_finite_weights_name_file_and_first_bad_tensor(tmp_path, loader):
    state = {"a.weight": torch.ones(3), "b.weight": torch.tensor([1.0, float("nan"), float("inf")]), "c.weight": torch.full((2,), float("nan"))}
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError, match=r"nan.safetensors.*non-finite values in tensor 'b.weight' \(1 NaN, 1 Inf of 3\)"):
        LOADERS[loader](path)


def test_non_finite_state_dict_given_in_memory_is_refused():
    from lavit.tokenizers import MotionTokenizer, MotionTokenizerConfig

    state = MotionTokenizer(MotionTokenizerConfig.from_name("tiny")).state_dict()
    state["encoder.norm.weight"] = state["encoder.norm.weight"].clone().fill_(float("nan"))
    with pytest.raises(WeightsError, match="encoder.norm.weight"):
        lavit.load_motion_tokenizer(state, num_heads=2)


def test_strict_load_names_missing_unexpected_and_misshaped_keys_in_one_error():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = {"0.weight": torch.zeros(4, 3), "0.bias": torch.zeros(5), "1.weight": torch.zeros(2, 4), "extra": torch.zeros(1)}
    with pytest.raises(WeightsMismatchError) as info:
        load_state_dict_strict(model, state, "my.bin")
    message = str(info.value)
    assert "missing keys ['1.bias']" in message and "unexpected keys ['extra']" in message
    assert "size mismatch for 0.bias: (5,) in the file, (4,) in the model" in message and "my.bin" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)  # as load_state_dict raises


def test_lightning_checkpoint_is_unwrapped_and_other_objects_refused(tmp_path):
    torch.save({"state_dict": _state(), "epoch": 3, "hyper_parameters": {"lr": 1e-3}}, tmp_path / "x.ckpt")
    assert set(read_state_dict(tmp_path / "x.ckpt")) == {"layer.weight", "layer.bias"}
    assert read_checkpoint(tmp_path / "x.ckpt")["epoch"] == 3
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pt")
    torch.save({"a": torch.zeros(1), "b": 3}, tmp_path / "mixed.pt")
    with pytest.raises(WeightsError, match=r"not a state dict.*\['b'\]"):
        read_state_dict(tmp_path / "mixed.pt")


def test_motion_tokenizer_is_in_the_registry_and_found_via_env(tmp_path, monkeypatch):
    entry = KNOWN_WEIGHTS["motion_tokenizer"]
    assert entry.name == "motion_tokenizer.bin" and "rain1011/Video-LaVIT-v1" in entry.source_url
    monkeypatch.delenv("LAVIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)motion_tokenizer.bin.*obtain it from: https://huggingface.co/rain1011"):
        lavit.load_motion_tokenizer()
    from lavit.tokenizers import MotionTokenizer, MotionTokenizerConfig

    model = MotionTokenizer(MotionTokenizerConfig.from_name("paper", dim=64, num_heads=4, stage_depths=(1, 1, 1, 1)))
    torch.save(model.state_dict(), tmp_path / "motion_tokenizer.bin")
    monkeypatch.setenv("LAVIT_WEIGHTS_DIR", str(tmp_path))
    assert resolve_weights("motion_tokenizer") == tmp_path / "motion_tokenizer.bin"
    loaded = lavit.load_motion_tokenizer(num_heads=4)  # an official-style file: no config, sizes from its shapes
    assert loaded.config.dim == 64 and loaded.config.stage_depths == (1, 1, 1, 1)
    x = torch.randn(1, 2, 24, 20, 36)
    assert torch.equal(loaded.tokenize(x), model.eval().tokenize(x))
