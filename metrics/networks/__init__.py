"""Feature networks for the video metrics, as plain PyTorch modules with local-file weights.

* :class:`InceptionI3d` / :func:`load_i3d` -- Kinetics-400 I3D for FVD / KVD (400-d logits averaged over time).
* :class:`C3D` / :func:`load_c3d` / :func:`c3d_preprocess` -- UCF-101 C3D for the TGAN video Inception Score.
* :data:`KNOWN_WEIGHTS` / :func:`resolve_weights` -- where each weight file comes from and where it is
  looked up (explicit path, else ``$LAVIT_WEIGHTS_DIR``); nothing is downloaded. These live in
  ``lavit.weights``, the one weights module of every model, and are re-exported here.
"""

from lavit.weights import (
    DEFAULT_ENV_VAR,
    KNOWN_WEIGHTS,
    WeightsError,
    WeightsFile,
    is_torchscript_archive,
    load_state_dict_strict,
    read_state_dict,
    resolve_weights,
    verify_sha256,
)
from metrics.networks.c3d import (
    C3D,
    C3D_UCF101_CHANNEL_MEAN_BGR,
    c3d_preprocess,
    convert_tgan_c3d_npz,
    load_c3d,
    load_c3d_mean,
)
from metrics.networks.i3d import I3D_MIN_FRAMES, InceptionI3d, StyleGANVI3D, load_i3d

__all__ = [
    "C3D",
    "C3D_UCF101_CHANNEL_MEAN_BGR",
    "DEFAULT_ENV_VAR",
    "I3D_MIN_FRAMES",
    "KNOWN_WEIGHTS",
    "InceptionI3d",
    "StyleGANVI3D",
    "WeightsError",
    "WeightsFile",
    "c3d_preprocess",
    "convert_tgan_c3d_npz",
    "is_torchscript_archive",
    "load_c3d",
    "load_c3d_mean",
    "load_i3d",
    "load_state_dict_strict",
    "read_state_dict",
    "resolve_weights",
    "verify_sha256",
]
