"""Feature networks for the video metrics: weight files on disk, strict safe loading, shapes.

No pretrained weights are available offline, so the networks are random-initialised, saved with
``torch.save(model.state_dict())`` and loaded back through the public loaders; the loaded model
must reproduce the original's outputs exactly.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from metrics.networks import (
    C3D,
    C3D_UCF101_CHANNEL_MEAN_BGR,
    KNOWN_WEIGHTS,
    InceptionI3d,
    StyleGANVI3D,
    c3d_preprocess,
    convert_tgan_c3d_npz,
    load_c3d,
    load_c3d_mean,
    load_i3d,
    resolve_weights,
    verify_sha256,
)
from metrics.networks.i3d import _same_padding

ENV = "LAVIT_WEIGHTS_DIR"


def _randomise_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN affine parameters and running statistics, so a lost buffer changes outputs."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


@pytest.fixture(autouse=True)
def _no_weights_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


# ----------------------------------------------------------------------------- I3D fixtures


@pytest.fixture(scope="module")
def i3d() -> InceptionI3d:
    torch.manual_seed(0)
    model = InceptionI3d(num_classes=400)
    _randomise_batch_norms(model, torch.Generator().manual_seed(1))
    return model.eval()


@pytest.fixture(scope="module")
def i3d_video() -> torch.Tensor:
    """Protocol shape (B=1, 3, T=16, 224, 224) in [-1, 1]."""
    return torch.rand(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(2)) * 2 - 1


@pytest.fixture(scope="module")
def i3d_file(i3d: InceptionI3d, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("i3d") / "rgb_imagenet.pt"
    torch.save(i3d.state_dict(), path)
    yield path
    path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- I3D



def _assert_same_logits(original: torch.nn.Module, loaded: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """A network reloaded from its saved file gives bit-identical, non-constant logits (1, num_classes)."""
    with torch.no_grad():
        expected = original(x)
        actual = loaded(x)
    assert expected.shape == actual.shape == (1, num_classes)
    assert expected.std() > 0
    assert torch.equal(actual, expected)

def test_i3d_state_dict_round_trip_gives_identical_logits(
    i3d: InceptionI3d, i3d_video: torch.Tensor, i3d_file: Path
) -> None:
    loaded = load_i3d(i3d_file)
    assert isinstance(loaded, InceptionI3d)
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    _assert_same_logits(i3d, loaded, i3d_video, num_classes=400)


def test_i3d_time_average_of_per_step_logits(i3d: InceptionI3d) -> None:
    # T = 24 leaves ceil(24 / 8) - 1 = 2 time steps after the final (2, 7, 7) average pool
    video = torch.rand(1, 3, 24, 224, 224, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        per_step = i3d.forward_per_time(video)
        averaged = i3d(video)
    assert per_step.shape == (1, 400, 2)
    torch.testing.assert_close(averaged, per_step.mean(dim=2), rtol=0, atol=0)


def test_i3d_rejects_too_few_frames(i3d: InceptionI3d) -> None:
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d(torch.zeros(1, 3, 8, 224, 224))


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 7, 2, (2, 3)), (16, 7, 2, (2, 3)), (112, 3, 2, (0, 1)),
        (56, 3, 1, (1, 1)), (7, 2, 2, (0, 1)), (4, 1, 1, (0, 0)),
    ],  # fmt: skip
)
def test_tf_same_padding(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    """TF "SAME": out = ceil(size / stride), total pad = (out - 1) * stride + kernel - size, extra at the back."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    assert expected == (total // 2, total - total // 2)
    assert _same_padding(size, kernel, stride) == expected


def test_i3d_parameter_names_follow_pytorch_i3d(i3d: InceptionI3d) -> None:
    state = i3d.state_dict()
    expected_shapes = {
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
        "Conv3d_1a_7x7.bn.weight": (64,),
        "Conv3d_1a_7x7.bn.bias": (64,),
        "Conv3d_1a_7x7.bn.running_mean": (64,),
        "Conv3d_1a_7x7.bn.running_var": (64,),
        "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
        "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
        "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
        "Mixed_3b.b1a.conv3d.weight": (96, 192, 1, 1, 1),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
        "Mixed_3b.b2a.bn.running_var": (16,),
        "Mixed_3b.b2b.conv3d.weight": (32, 16, 3, 3, 3),
        "Mixed_3b.b3b.conv3d.weight": (32, 192, 1, 1, 1),
        "Mixed_4f.b1b.bn.weight": (320,),
        "Mixed_5c.b1b.conv3d.weight": (384, 192, 3, 3, 3),
        "Mixed_5c.b3b.bn.running_mean": (128,),
        "logits.conv3d.weight": (400, 1024, 1, 1, 1),
        "logits.conv3d.bias": (400,),
    }
    for name, shape in expected_shapes.items():
        assert tuple(state[name].shape) == shape, name
    blocks = {name.split(".")[0] for name in state}
    assert blocks == {
        "Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c",
        "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c", "logits",
    }  # fmt: skip
    branches = {name.split(".")[1] for name in state if name.startswith("Mixed_")}
    assert branches == {"b0", "b1a", "b1b", "b2a", "b2b", "b3b"}
    # only convolutions carry weights; no bias except in the logits layer
    assert [n for n in state if n.endswith("conv3d.bias")] == ["logits.conv3d.bias"]
    norms = [m for m in i3d.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(norms) == 57 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in norms)


def _hand_counted_i3d_parameters(num_classes: int) -> int:
    """Closed form from the published layer table (Carreira & Zisserman 2017, fig. 3)."""

    def unit(cin: int, cout: int, k: int) -> int:  # bias-free conv + BN weight and bias
        return cin * cout * k**3 + 2 * cout

    def mixed(cin: int, widths: Sequence[int]) -> int:
        c0, c1a, c1b, c2a, c2b, c3b = widths
        return (
            unit(cin, c0, 1) + unit(cin, c1a, 1) + unit(c1a, c1b, 3)
            + unit(cin, c2a, 1) + unit(c2a, c2b, 3) + unit(cin, c3b, 1)
        )

    table = [
        (192, (64, 96, 128, 16, 32, 32)), (256, (128, 128, 192, 32, 96, 64)),
        (480, (192, 96, 208, 16, 48, 64)), (512, (160, 112, 224, 24, 64, 64)),
        (512, (128, 128, 256, 24, 64, 64)), (512, (112, 144, 288, 32, 64, 64)),
        (528, (256, 160, 320, 32, 128, 128)), (832, (256, 160, 320, 32, 128, 128)),
        (832, (384, 192, 384, 48, 128, 128)),
    ]  # fmt: skip
    stem = unit(3, 64, 7) + unit(64, 64, 1) + unit(64, 192, 3)
    return stem + sum(mixed(cin, widths) for cin, widths in table) + 1024 * num_classes + num_classes


def test_i3d_parameter_count(i3d: InceptionI3d) -> None:
    count = sum(p.numel() for p in i3d.parameters())
    assert count == _hand_counted_i3d_parameters(400) == 12_697_264


def _save_state(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(state, path)
    return path


def test_load_i3d_names_a_renamed_key(i3d: InceptionI3d, tmp_path: Path) -> None:
    state = dict(i3d.state_dict())
    state["Mixed_4c.b2b.bn.running_avg"] = state.pop("Mixed_4c.b2b.bn.running_mean")
    path = _save_state(tmp_path / "renamed.pt", state)
    with pytest.raises(RuntimeError) as info:
        load_i3d(path)
    message = str(info.value)
    assert "Mixed_4c.b2b.bn.running_mean" in message  # missing
    assert "Mixed_4c.b2b.bn.running_avg" in message  # unexpected
    assert "renamed.pt" in message


def test_load_i3d_names_an_extra_key(i3d: InceptionI3d, tmp_path: Path) -> None:
    state = dict(i3d.state_dict())
    state["Mixed_5c.b4.conv3d.weight"] = torch.zeros(1)
    path = _save_state(tmp_path / "extra.pt", state)
    with pytest.raises(RuntimeError, match=re.escape("unexpected keys ['Mixed_5c.b4.conv3d.weight']")):
        load_i3d(path)


def test_load_i3d_names_a_shape_mismatch(tmp_path: Path) -> None:
    path = _save_state(tmp_path / "charades.pt", InceptionI3d(num_classes=157).state_dict())
    with pytest.raises(RuntimeError, match=r"logits\.conv3d\.weight"):
        load_i3d(path)


def test_load_i3d_accepts_legacy_files_without_num_batches_tracked(i3d: InceptionI3d, tmp_path: Path) -> None:
    """pytorch-i3d's files predate BatchNorm's num_batches_tracked buffer and the zip format."""
    state = {k: v for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    loaded = load_i3d(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


class _TouchOnUnpickle:
    """Unpickling this object would create ``marker`` -- a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("loader", [load_i3d, load_c3d], ids=["i3d", "c3d"])
def test_loaders_refuse_pickled_objects(loader, tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "weights.pt"
    torch.save({"conv1a.weight": torch.zeros(1), "payload": _TouchOnUnpickle(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match="weights.pt"):
        loader(path)
    assert not marker.exists()


def test_load_i3d_refuses_non_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="not a state dict"):
        load_i3d(path)


# ----------------------------------------------------------------------------- TorchScript I3D


class _StyleGANVSignature(nn.Module):
    """Same call signature as StyleGAN-V's i3d_torchscript.pt; reports the flags it was called with.

    Defaults are the opposite of what the wrapper must pass, so a forgotten keyword shows up.
    Output (B, 400): [:, 0] rescale, [:, 1] resize, [:, 2] return_features, [:, 3] mean of x,
    [:, 4] number of frames.
    """

    def forward(
        self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False
    ) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 400, dtype=x.dtype, device=x.device)
        out[:, 0] = float(rescale)
        out[:, 1] = float(resize)
        out[:, 2] = float(return_features)
        out[:, 3] = x.flatten(1).mean(dim=1)
        out[:, 4] = float(x.shape[2])
        return out


# torch.jit.script / torch.jit.load emit FutureWarnings (deprecated in favour of torch.export)
_ignore_jit_deprecation = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


@pytest.fixture
def scripted_i3d(tmp_path: Path) -> Path:
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_StyleGANVSignature()).save(str(path))
    return path


@_ignore_jit_deprecation
def test_torchscript_i3d_called_with_documented_keywords(scripted_i3d: Path) -> None:
    model = load_i3d(scripted_i3d, torchscript=True)
    assert isinstance(model, StyleGANVI3D) and not model.training
    video = torch.rand(2, 3, 16, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    out = model(video)
    assert out.shape == (2, 400)
    assert out[:, :3].tolist() == [[0.0, 0.0, 1.0]] * 2  # rescale=False, resize=False, return_features=True
    torch.testing.assert_close(out[:, 3], video.flatten(1).mean(dim=1))  # input passed through unchanged
    assert out[:, 4].tolist() == [16.0, 16.0]


@_ignore_jit_deprecation
def test_torchscript_i3d_found_via_env_var(scripted_i3d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(scripted_i3d.parent))
    assert isinstance(load_i3d(torchscript=True), StyleGANVI3D)


@_ignore_jit_deprecation
def test_torchscript_archive_needs_explicit_opt_in(scripted_i3d: Path) -> None:
    with pytest.raises(ValueError, match="torchscript=True"):
        load_i3d(scripted_i3d)


# ----------------------------------------------------------------------------- weight files


def test_missing_file_names_file_source_and_both_ways_to_point_at_it() -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_i3d()
    message = str(info.value)
    assert "rgb_imagenet.pt" in message
    assert KNOWN_WEIGHTS["i3d_rgb_imagenet"].source_url in message
    assert ENV in message and "path=" in message and "unset" in message


def test_missing_torchscript_file_names_dropbox_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_i3d(torchscript=True)
    message = str(info.value)
    assert "i3d_torchscript.pt" in message
    assert "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt" in message
    assert str(tmp_path / "i3d_torchscript.pt") in message


def test_missing_explicit_c3d_path_explains_conversion(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_c3d(tmp_path / "nope.pt")
    message = str(info.value)
    assert "c3d_ucf101.pt" in message and str(tmp_path / "nope.pt") in message
    assert "conv3d_deepnetA_ucf.npz" in message and "convert_tgan_c3d_npz" in message
    assert ENV in message


def test_missing_file_states_published_sha256() -> None:
    with pytest.raises(FileNotFoundError, match=KNOWN_WEIGHTS["clip_vit_b16_openai"].sha256):
        resolve_weights("clip_vit_b16_openai")


def test_env_var_is_honoured(i3d: InceptionI3d, i3d_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(i3d_file.parent))
    assert resolve_weights("i3d_rgb_imagenet") == i3d_file
    loaded = load_i3d()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in i3d.state_dict().items())


def test_explicit_path_wins_over_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir, other = tmp_path / "env", tmp_path / "other"
    env_dir.mkdir()
    other.mkdir()
    (env_dir / "rgb_imagenet.pt").write_bytes(b"env")
    (other / "mine.pt").write_bytes(b"explicit")
    monkeypatch.setenv(ENV, str(env_dir))
    assert resolve_weights("i3d_rgb_imagenet") == env_dir / "rgb_imagenet.pt"
    assert resolve_weights("i3d_rgb_imagenet", other / "mine.pt") == other / "mine.pt"
    assert resolve_weights("i3d_rgb_imagenet", str(env_dir)) == env_dir / "rgb_imagenet.pt"  # a directory
    with pytest.raises(FileNotFoundError, match="SOME_OTHER_VAR"):
        resolve_weights("i3d_rgb_imagenet", env_var="SOME_OTHER_VAR")


def test_unknown_key() -> None:
    with pytest.raises(KeyError, match="i3d_rgb_imagenet"):
        resolve_weights("i3d_flow")


def test_resolve_does_not_hash_but_verify_sha256_does(tmp_path: Path) -> None:
    path = tmp_path / "ViT-B-32.pt"
    path.write_bytes(b"not the real checkpoint")
    # a published SHA-256 is known for this key, yet resolving never reads the file
    assert resolve_weights("clip_vit_b32_openai", path) == path
    digest = hashlib.sha256(b"not the real checkpoint").hexdigest()
    assert verify_sha256(path, digest.upper()) == digest
    with pytest.raises(ValueError, match=KNOWN_WEIGHTS["clip_vit_b32_openai"].sha256):
        verify_sha256(path, KNOWN_WEIGHTS["clip_vit_b32_openai"].sha256)


def test_known_weights_registry() -> None:
    names = {key: weights.name for key, weights in KNOWN_WEIGHTS.items()}
    assert names["i3d_torchscript"] == "i3d_torchscript.pt"
    assert names["i3d_rgb_imagenet"] == "rgb_imagenet.pt"
    assert names["inception_v3_fid"] == "weights-inception-2015-12-05-6726825d.pth"
    assert names["clip_vit_b16_openai"] == "ViT-B-16.pt" and names["clip_vit_b32_openai"] == "ViT-B-32.pt"
    assert names["c3d_ucf101"] == "c3d_ucf101.pt"
    for weights in KNOWN_WEIGHTS.values():
        assert weights.source_url.startswith("https://")
        assert weights.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", weights.sha256)
        if weights.sha256 is not None:  # OpenAI publishes the digest as the URL's directory
            assert weights.source_url.split("/")[-2] == weights.sha256
    with pytest.raises(AttributeError):
        KNOWN_WEIGHTS["i3d_torchscript"].name = "x"  # type: ignore[misc]


# ----------------------------------------------------------------------------- C3D


@pytest.fixture(scope="module")
def c3d() -> C3D:
    torch.manual_seed(5)
    return C3D(num_classes=101).eval()


@pytest.fixture(scope="module")
def c3d_file(c3d: C3D, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("c3d") / "c3d_ucf101.pt"  # ~314 MB, removed afterwards
    torch.save(c3d.state_dict(), path)
    yield path
    path.unlink(missing_ok=True)


def test_c3d_state_dict_round_trip_gives_identical_logits(c3d: C3D, c3d_file: Path) -> None:
    video = torch.randint(0, 256, (1, 16, 112, 112, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(6))
    x = c3d_preprocess(video)
    assert x.shape == (1, 3, 16, 112, 112)
    loaded = load_c3d(c3d_file)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    _assert_same_logits(c3d, loaded, x, num_classes=101)


def test_c3d_parameter_names_and_shapes(c3d: C3D) -> None:
    shapes = {name: tuple(t.shape) for name, t in c3d.state_dict().items()}
    assert shapes == {
        "conv1a.weight": (64, 3, 3, 3, 3), "conv1a.bias": (64,),
        "conv2a.weight": (128, 64, 3, 3, 3), "conv2a.bias": (128,),
        "conv3a.weight": (256, 128, 3, 3, 3), "conv3a.bias": (256,),
        "conv3b.weight": (256, 256, 3, 3, 3), "conv3b.bias": (256,),
        "conv4a.weight": (512, 256, 3, 3, 3), "conv4a.bias": (512,),
        "conv4b.weight": (512, 512, 3, 3, 3), "conv4b.bias": (512,),
        "conv5a.weight": (512, 512, 3, 3, 3), "conv5a.bias": (512,),
        "conv5b.weight": (512, 512, 3, 3, 3), "conv5b.bias": (512,),
        "fc6.weight": (4096, 8192), "fc6.bias": (4096,),
        "fc7.weight": (4096, 4096), "fc7.bias": (4096,),
        "fc8.weight": (101, 4096), "fc8.bias": (101,),
    }  # fmt: skip


def test_c3d_pool5_uses_ceil_mode(c3d: C3D) -> None:
    """Caffe / Chainer pooling covers the last row: 7x7 -> 4x4 (floor mode would give 3x3)."""
    x = torch.zeros(1, 1, 2, 7, 7)
    x[..., 6, 6] = 1.0
    pooled = c3d.pool(x)
    assert pooled.shape == (1, 1, 1, 4, 4) and pooled[0, 0, 0, 3, 3] == 1.0


def test_c3d_rejects_wrong_input_shape(c3d: C3D) -> None:
    with pytest.raises(ValueError, match=re.escape("(B, 3, 16, 112, 112)")):
        c3d(torch.zeros(1, 3, 16, 128, 128))


def _c3d_keys() -> list[str]:
    with torch.device("meta"):  # no memory, no init
        return list(C3D(num_classes=1).state_dict())


def _tiny_c3d_state(rename: tuple[str, str] | None = None, extra: str | None = None) -> dict[str, torch.Tensor]:
    """All C3D keys with 1-element tensors: enough for the key check, which runs before shapes."""
    state = {name: torch.zeros(1) for name in _c3d_keys()}
    if rename is not None:
        state[rename[1]] = state.pop(rename[0])
    if extra is not None:
        state[extra] = torch.zeros(1)
    return state


def test_load_c3d_names_a_renamed_key(tmp_path: Path) -> None:
    path = _save_state(tmp_path / "c3d.pt", _tiny_c3d_state(rename=("fc7.weight", "fc7.W")))
    with pytest.raises(RuntimeError, match=re.escape("missing keys ['fc7.weight']; unexpected keys ['fc7.W']")):
        load_c3d(path)


def test_load_c3d_names_an_extra_key(tmp_path: Path) -> None:
    path = _save_state(tmp_path / "c3d.pt", _tiny_c3d_state(extra="conv6a.weight"))
    with pytest.raises(RuntimeError, match=re.escape("unexpected keys ['conv6a.weight']")):
        load_c3d(path)


def test_load_c3d_names_a_shape_mismatch(tmp_path: Path) -> None:
    path = _save_state(tmp_path / "c3d.pt", _tiny_c3d_state())
    with pytest.raises(RuntimeError, match=r"size mismatch for conv1a\.weight"):
        load_c3d(path)


# ----------------------------------------------------------------------------- C3D preprocessing


def test_c3d_preprocess_central_frames_scale_and_bgr() -> None:
    # frame t is constant with RGB = (t, 100 + t, 200 + t); T = 20 -> frames 2..17 are central
    frames = torch.arange(20, dtype=torch.float32)
    rgb = torch.stack([frames, 100 + frames, 200 + frames], dim=-1)  # (20, 3)
    video = rgb[None, :, None, None, :].expand(1, 20, 112, 112, 3).to(torch.uint8)
    out = c3d_preprocess(video, mean=torch.zeros(3, 1, 1, 1))
    assert out.shape == (1, 3, 16, 112, 112) and out.dtype == torch.float32
    scale = 128.0 / 127.5
    central = frames[2:18]
    torch.testing.assert_close(out[0, :, :, 0, 0], torch.stack([200 + central, 100 + central, central]) * scale)
    # default mean: the per-channel BGR approximation
    default = c3d_preprocess(video)
    channel_mean = torch.tensor(C3D_UCF101_CHANNEL_MEAN_BGR).view(3, 1, 1, 1)
    torch.testing.assert_close(default[0], out[0] - channel_mean)


def test_c3d_preprocess_resizes_and_crops_full_mean() -> None:
    video = torch.full((2, 16, 128, 171, 3), 255, dtype=torch.uint8)
    mean = torch.arange(3 * 16 * 128 * 128, dtype=torch.float32).view(3, 16, 128, 128)
    out = c3d_preprocess(video, mean=mean)
    assert out.shape == (2, 3, 16, 112, 112)
    torch.testing.assert_close(out[1], 256.0 - mean[:, :, 8:120, 8:120])


def test_c3d_preprocess_rejects_short_or_channel_first_video() -> None:
    with pytest.raises(ValueError, match="at least 16 frames"):
        c3d_preprocess(torch.zeros(1, 15, 112, 112, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=re.escape("(B, T, H, W, 3)")):
        c3d_preprocess(torch.zeros(1, 3, 16, 112, 112, dtype=torch.uint8))


def test_load_c3d_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mean = np.random.default_rng(7).uniform(0, 255, (3, 16, 128, 171)).astype(np.float32)
    np.savez(tmp_path / "mean2.npz", mean=mean)
    monkeypatch.setenv(ENV, str(tmp_path))
    loaded = load_c3d_mean()
    assert loaded.shape == (3, 16, 112, 112)
    np.testing.assert_array_equal(loaded.numpy(), mean[:, :, 8:120, 8:120])
    np.savez(tmp_path / "bad.npz", average=mean)
    with pytest.raises(ValueError, match="no array 'mean'"):
        load_c3d_mean(tmp_path / "bad.npz")
    monkeypatch.delenv(ENV)
    with pytest.raises(FileNotFoundError, match="mean2.npz"):
        load_c3d_mean()


def test_convert_tgan_c3d_npz_covers_every_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    arrays = {}
    for name in _c3d_keys():
        layer, kind = name.split(".")
        prefix = "predictor/" if layer == "fc8" else ""  # tolerate a link prefix
        arrays[f"{prefix}{layer}/{'W' if kind == 'weight' else 'b'}"] = rng.standard_normal(2).astype(np.float32)
    np.savez(tmp_path / "conv3d_deepnetA_ucf.npz", **arrays)
    state = convert_tgan_c3d_npz(tmp_path / "conv3d_deepnetA_ucf.npz", tmp_path / "c3d_ucf101.pt")
    assert set(state) == set(_c3d_keys())
    np.testing.assert_array_equal(state["fc8.weight"].numpy(), arrays["predictor/fc8/W"])
    np.testing.assert_array_equal(state["conv3b.bias"].numpy(), arrays["conv3b/b"])
    reloaded = torch.load(tmp_path / "c3d_ucf101.pt", weights_only=True)
    assert all(torch.equal(reloaded[k], v) for k, v in state.items())
    np.savez(tmp_path / "odd.npz", **{"conv1a/W": np.zeros(1), "pre/W": np.zeros(1)})
    with pytest.raises(ValueError, match="pre/W"):
        convert_tgan_c3d_npz(tmp_path / "odd.npz")
