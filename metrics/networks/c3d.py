"""C3D (Tran et al. 2015) fine-tuned on UCF-101: the classifier of the TGAN video Inception Score.

The protocol (TGAN, Saito et al. 2017; TGANv2, pfnet-research/tgan2) feeds 16 frames at
112x112 to C3D "v1.0" fine-tuned on UCF-101 (Caffe model ``c3d_ucf101_finetune_whole_iter_20000``,
distributed by TGANv2 as the Chainer file ``conv3d_deepnetA_ucf.npz``) and takes the softmax of
``fc8`` (101 classes). Parameter names follow that file (``conv1a`` ... ``conv5b``, ``fc6`` ...
``fc8``); :func:`convert_tgan_c3d_npz` turns it into a PyTorch state dict.

Input convention (read from tgan2/models/c3d/c3d_ucf101.py, ``C3DVersion1UCF101``): the
classifier receives generator output ``x`` in [-1, 1], RGB, shaped (B, 3, 16, H, W), and before
``conv1a`` it (1) maps RGB to BGR and multiplies by 128 (a fixed 1x1x1 convolution), (2) resizes
every frame to 112x112 with Chainer's bilinear ``resize_images`` (align-corners sampling), and
(3) adds ``128 - mean[:, :, 8:120, 8:120]``, where ``mean`` is the per-pixel, per-frame BGR mean
(0..255 scale) stored in TGANv2's ``mean2.npz``. Net effect: ``128 * (x + 1) - mean``, i.e. BGR
pixels on a 0..256 scale minus the C3D mean. :func:`c3d_preprocess` does exactly this for uint8
videos (``x = u / 127.5 - 1``), so the network itself expects that preprocessed tensor.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lavit.weights import WeightsError, load_state_dict_strict, read_npz, read_state_dict, resolve_weights

C3D_FRAMES = 16
C3D_SIZE = 112

C3D_UCF101_CHANNEL_MEAN_BGR: tuple[float, float, float] = (90.25164795, 97.65701294, 101.4083252)
"""Per-channel BGR mean (0..255) that TGANv2 left commented out in place of ``mean2.npz``.

Only an approximation of the protocol, which subtracts the per-pixel mean of ``mean2.npz``
(see :func:`load_c3d_mean`). The channel order is inferred from where TGANv2 applies it (after its
RGB-to-BGR step); it is not documented there.
"""

_LAYERS = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b", "fc6", "fc7", "fc8")


class C3D(nn.Module):
    """C3D v1.0: eight 3x3x3 convolutions, five max pools, three fully connected layers.

    Input: ``(B, 3, 16, 112, 112)`` as produced by :func:`c3d_preprocess` (BGR, 0..256 scale minus
    the C3D mean). Output of :meth:`forward`: ``(B, num_classes)`` ``fc8`` logits (apply softmax
    for the Inception Score). :meth:`features` gives the ``(B, 4096)`` ``fc7`` activations.

    Pools: ``pool1`` is (1, 2, 2), the others (2, 2, 2), all with ceil mode as in Caffe / Chainer
    (``cover_all``); only ``pool5`` (7x7 -> 4x4) depends on it. The fc6 input is the flattened
    (512, 1, 4, 4) pool5 output. Dropout (0.5 after pool5, fc6 and fc7 in TGANv2) is active only
    in train mode.
    """

    def __init__(self, num_classes: int = 101, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        widths = [(in_channels, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
        for name, (cin, cout) in zip(_LAYERS[:8], widths, strict=True):
            setattr(self, name, nn.Conv3d(cin, cout, kernel_size=3, stride=1, padding=1))
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2), ceil_mode=True)
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2, ceil_mode=True)
        self.fc6 = nn.Linear(512 * 4 * 4, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 16, 112, 112) preprocessed -> fc7 activations (B, 4096) after ReLU."""
        if x.ndim != 5 or tuple(x.shape[1:]) != (self.conv1a.in_channels, C3D_FRAMES, C3D_SIZE, C3D_SIZE):
            raise ValueError(f"C3D expects (B, 3, 16, 112, 112), got {tuple(x.shape)}")
        x = self.pool1(F.relu(self.conv1a(x)))
        x = self.pool(F.relu(self.conv2a(x)))
        x = self.pool(F.relu(self.conv3b(F.relu(self.conv3a(x)))))
        x = self.pool(F.relu(self.conv4b(F.relu(self.conv4a(x)))))
        x = self.pool(F.relu(self.conv5b(F.relu(self.conv5a(x)))))  # (B, 512, 1, 4, 4)
        x = self.dropout(x.flatten(1))
        x = self.dropout(F.relu(self.fc6(x)))
        return F.relu(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 16, 112, 112) preprocessed -> (B, num_classes) fc8 logits."""
        return self.fc8(self.dropout(self.features(x)))


def _as_mean(mean: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if mean is None:
        return torch.tensor(C3D_UCF101_CHANNEL_MEAN_BGR, device=device).view(3, 1, 1, 1)
    mean = mean.to(device=device, dtype=torch.float32)
    if mean.ndim == 4 and mean.shape[-1] > C3D_SIZE:  # full mean2.npz array: TGANv2's crop
        mean = mean[:, :, 8 : 8 + C3D_SIZE, 8 : 8 + C3D_SIZE]
    return mean


def c3d_preprocess(video: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """TGAN-protocol C3D input from RGB videos.

    Args:
        video: ``(B, T, H, W, 3)`` RGB, uint8 (or float on the same 0..255 scale), ``T >= 16``.
        mean: BGR mean on the 0..255 scale, broadcastable to ``(3, 16, 112, 112)``: the per-pixel
            ``mean2.npz`` array from :func:`load_c3d_mean` (exact protocol; the full
            ``(3, 16, 128, 128)``-style array is cropped to ``[8:120, 8:120]`` like TGANv2), or None
            for the per-channel :data:`C3D_UCF101_CHANNEL_MEAN_BGR` (an approximation).

    Returns:
        ``(B, 3, 16, 112, 112)`` float32, BGR: the central 16 frames (start ``(T - 16) // 2``),
        each bilinearly resized (align corners, as Chainer's ``resize_images``) to 112x112, scaled
        by 128 / 127.5 (TGANv2 computes ``128 * (x + 1)`` for ``x = u / 127.5 - 1``) minus ``mean``.
    """
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"c3d_preprocess expects (B, T, H, W, 3) RGB, got {tuple(video.shape)}")
    batch, frames, height, width, _ = video.shape
    if frames < C3D_FRAMES:
        raise ValueError(f"c3d_preprocess needs at least {C3D_FRAMES} frames, got T={frames}")
    start = (frames - C3D_FRAMES) // 2
    clip = video[:, start : start + C3D_FRAMES].to(torch.float32) * (128.0 / 127.5)
    clip = clip.permute(0, 1, 4, 2, 3).reshape(batch * C3D_FRAMES, 3, height, width)
    if (height, width) != (C3D_SIZE, C3D_SIZE):
        clip = F.interpolate(clip, size=(C3D_SIZE, C3D_SIZE), mode="bilinear", align_corners=True)
    clip = clip.reshape(batch, C3D_FRAMES, 3, C3D_SIZE, C3D_SIZE).permute(0, 2, 1, 3, 4)
    clip = clip.flip(1)  # RGB -> BGR
    return (clip - _as_mean(mean, clip.device)).contiguous()


def load_c3d_mean(path: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """TGANv2's ``mean2.npz`` (array ``mean``) cropped to the C3D input: ``(3, 16, 112, 112)`` float32.

    Read with ``numpy.load(allow_pickle=False)``; when ``path`` is None the file is looked up as
    ``$LAVIT_WEIGHTS_DIR/mean2.npz``.
    """
    file = resolve_weights("c3d_ucf101_mean", path)
    arrays = read_npz(file)
    if "mean" not in arrays:
        raise WeightsError(file, f"no array 'mean' (arrays: {sorted(arrays)})")
    mean = torch.from_numpy(np.asarray(arrays["mean"], dtype=np.float32))
    if mean.ndim != 4 or mean.shape[:2] != (3, C3D_FRAMES) or min(mean.shape[2:]) < 8 + C3D_SIZE:
        raise WeightsError(file, f"expected mean of shape (3, 16, H>=120, W>=120), got {tuple(mean.shape)}")
    return mean[:, :, 8 : 8 + C3D_SIZE, 8 : 8 + C3D_SIZE].contiguous()


def convert_tgan_c3d_npz(
    npz_path: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None
) -> dict[str, torch.Tensor]:
    """Convert TGANv2's Chainer ``conv3d_deepnetA_ucf.npz`` to a :class:`C3D` state dict.

    Chainer stores ``<layer>/W`` and ``<layer>/b`` (possibly under a prefix such as
    ``predictor/``); ``ConvolutionND`` and ``Linear`` weights already have PyTorch's layouts
    ((out, in, kT, kH, kW) and (out, in)), and Chainer flattens pool5 in the same C order, so the
    conversion only renames. Unknown arrays raise ``ValueError``. Shapes are checked when the
    result is loaded (:func:`load_c3d`). Saves with ``torch.save`` when ``out_path`` is given.
    """
    state: dict[str, torch.Tensor] = {}
    for key, array in read_npz(npz_path).items():
        parts = key.split("/")
        if len(parts) < 2 or parts[-2] not in _LAYERS or parts[-1] not in ("W", "b"):
            raise WeightsError(npz_path, f"unexpected array {key!r} (expected <layer>/W or <layer>/b)")
        name = f"{parts[-2]}.{'weight' if parts[-1] == 'W' else 'bias'}"
        if name in state:
            raise WeightsError(npz_path, f"two arrays map to {name!r}")
        state[name] = torch.from_numpy(np.array(array, dtype=np.float32))
    if out_path is not None:
        torch.save(state, out_path)
    return state


def load_c3d(path: str | os.PathLike[str] | None = None, num_classes: int = 101) -> C3D:
    """Load :class:`C3D` from a state dict file, in eval mode with gradients off; nothing is downloaded.

    Args:
        path: ``torch.save``-d state dict (or a directory holding ``c3d_ucf101.pt``); when None it is
            looked up as ``$LAVIT_WEIGHTS_DIR/c3d_ucf101.pt``. Read with ``weights_only=True`` and
            loaded strictly.
        num_classes: 101 for UCF-101.

    Raises:
        FileNotFoundError: the file is missing (the message says how to obtain and convert it).
        lavit.weights.WeightsError: an empty, truncated or corrupt file, non-finite values, pickled
            objects other than tensors (refused; also a ``pickle.UnpicklingError``), or keys / shapes
            that do not match (all listed; also a ``RuntimeError``).
    """
    file = resolve_weights("c3d_ucf101", path)
    state = read_state_dict(file)
    model = C3D(num_classes=num_classes)
    load_state_dict_strict(model, state, source=file)
    return model.eval().requires_grad_(False)

