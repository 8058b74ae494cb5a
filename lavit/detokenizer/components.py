"""The frozen parts of the video detokenizer: the VAE and the sampling scheduler, read from local folders.

Nothing downloads: every diffusers call uses ``local_files_only=True``, and a missing folder, config or weights
file raises :class:`MissingComponentError` (a ``FileNotFoundError``) naming the exact path expected and where
users obtain it:

- ``stabilityai/stable-video-diffusion-img2vid-xt`` (Hugging Face): ``vae/``, ``scheduler/``, ``unet/``;
- ``rain1011/Video-LaVIT-v1`` (Hugging Face): ``video_detokenizer/vae``, ``video_detokenizer/scheduler``,
  ``video_3d_unet.bin``.

The scheduler must apply the EDM formulas the detokenizer was trained with (``lavit.detokenizer.edm``:
v-prediction, ``sigma_data`` 1, ``c_noise = 0.25 ln sigma``): ``EulerDiscreteScheduler`` with
``prediction_type="v_prediction"`` and ``timestep_type="continuous"`` (SVD's config, built in as
:data:`SVD_SCHEDULER_CONFIG`), or ``EDMEulerScheduler`` with ``prediction_type="v_prediction"`` and ``sigma_data=1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from lavit.detokenizer.edm import SIGMA_DATA

SVD_REPO = "stabilityai/stable-video-diffusion-img2vid-xt"
LAVIT_REPO = "rain1011/Video-LaVIT-v1"
WHERE_TO_GET = (
    f"https://huggingface.co/{SVD_REPO} (folders vae/, scheduler/, unet/) or https://huggingface.co/{LAVIT_REPO} "
    "(video_detokenizer/vae, video_detokenizer/scheduler, video_3d_unet.bin)"
)

SVD_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}
"""``scheduler/scheduler_config.json`` of stabilityai/stable-video-diffusion-img2vid-xt (the EDM sampler of SVD)."""

SCHEDULER_CONFIG = "scheduler_config.json"
VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class MissingComponentError(FileNotFoundError):
    """A detokenizer component (folder, config or weights file) that is not on disk.

    Attributes:
        path: the exact path expected.
        what: what should be there.
    """

    def __init__(self, path: str | os.PathLike[str], what: str, where: str = WHERE_TO_GET):
        self.path = os.fspath(path)
        self.what = what
        super().__init__(f"{what} not found: {self.path!r}; nothing is downloaded. Obtain it from {where} "
                         "and pass the local folder")


def _folder(folder: str | os.PathLike[str], what: str) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise MissingComponentError(path, f"{what} folder")
    return path


def _find(folder: Path, name: str, subfolder: str, what: str) -> Path:
    """``folder/name`` or ``folder/subfolder/name`` (an SVD / Video-LaVIT root), else MissingComponentError."""
    for candidate in (folder / name, folder / subfolder / name, folder / "video_detokenizer" / subfolder / name):
        if candidate.is_file():
            return candidate
    raise MissingComponentError(folder / name, f"{what} ({name}, also looked for {subfolder}/{name})")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r}: not a readable JSON config ({error})") from error
    if not isinstance(value, dict):
        raise ValueError(f"{str(path)!r}: not a JSON object")
    return value


def check_scheduler(scheduler: Any, source: str = "scheduler") -> Any:
    """Return ``scheduler`` if it samples with the detokenizer's EDM formulas, else raise a ValueError saying why."""
    from diffusers import EDMEulerScheduler, EulerDiscreteScheduler

    config = scheduler.config
    if isinstance(scheduler, EulerDiscreteScheduler):
        problems = [f"{k}={config.get(k)!r} (need {v!r})" for k, v in
                    (("prediction_type", "v_prediction"), ("timestep_type", "continuous")) if config.get(k) != v]
    elif isinstance(scheduler, EDMEulerScheduler):
        problems = [f"{k}={config.get(k)!r} (need {v!r})" for k, v in
                    (("prediction_type", "v_prediction"), ("sigma_data", SIGMA_DATA)) if config.get(k) != v]
    else:
        raise ValueError(f"{source}: {type(scheduler).__name__} is not supported; the detokenizer samples with "
                         "EulerDiscreteScheduler or EDMEulerScheduler")
    if problems:
        raise ValueError(f"{source}: {type(scheduler).__name__} with {', '.join(problems)} does not apply the EDM "
                         "formulas the detokenizer was trained with (v-prediction, sigma_data 1, c_noise = 0.25 ln sigma)")
    return scheduler


def load_scheduler(folder: str | os.PathLike[str] | None = None):
    """The sampling scheduler: SVD's built in (``folder=None``) or ``<folder>/scheduler_config.json`` /
    ``<folder>/scheduler/scheduler_config.json``.

    Returns:
        An ``EulerDiscreteScheduler`` or ``EDMEulerScheduler`` (the class the config's ``_class_name`` names).

    Raises:
        MissingComponentError: the folder or its config is missing (the message names the path and where to get it).
        ValueError: a scheduler that does not apply the EDM formulas (v-prediction, continuous timesteps / sigma_data 1).
    """
    import diffusers

    if folder is None:
        return check_scheduler(diffusers.EulerDiscreteScheduler.from_config(SVD_SCHEDULER_CONFIG), "SVD_SCHEDULER_CONFIG")
    path = _find(_folder(folder, "scheduler"), SCHEDULER_CONFIG, "scheduler", "scheduler config")
    name = _read_json(path).get("_class_name", "EulerDiscreteScheduler")
    if name not in ("EulerDiscreteScheduler", "EDMEulerScheduler"):
        raise ValueError(f"{str(path)!r}: scheduler {name!r} is not supported; the detokenizer samples with "
                         "EulerDiscreteScheduler or EDMEulerScheduler")
    scheduler_class = getattr(diffusers, name)
    scheduler = scheduler_class.from_pretrained(str(path.parent), local_files_only=True)
    return check_scheduler(scheduler, str(path))


def load_vae(folder: str | os.PathLike[str]) -> nn.Module:
    """The VAE of a diffusers folder (``config.json`` + weights) or of an SVD / Video-LaVIT root (``vae/``,
    ``video_detokenizer/vae/``), in eval mode.

    ``_class_name`` picks the class: ``AutoencoderKLTemporalDecoder`` (SVD's; weights
    ``diffusion_pytorch_model.safetensors`` or ``.bin``) or ``PixelSpaceAutoencoder`` (lavit's pixel-space identity,
    config only).

    Raises:
        MissingComponentError: the folder, its ``config.json`` or the weights file is missing.
        ValueError: a config naming another class.
    """
    from diffusers import AutoencoderKLTemporalDecoder

    from lavit.detokenizer.autoencoder import PixelSpaceAutoencoder

    config_path = _find(_folder(folder, "VAE"), "config.json", "vae", "VAE config")
    root = config_path.parent
    config = _read_json(config_path)
    name = config.get("_class_name")
    if name == "PixelSpaceAutoencoder":
        return PixelSpaceAutoencoder.from_config(config).eval()
    if name != "AutoencoderKLTemporalDecoder":
        raise ValueError(f"{str(config_path)!r}: VAE class {name!r} is not supported; expected AutoencoderKLTemporalDecoder "
                         "(SVD's VAE) or PixelSpaceAutoencoder")
    if not any((root / weights).is_file() for weights in VAE_WEIGHTS):
        raise MissingComponentError(root / VAE_WEIGHTS[0], f"VAE weights ({' or '.join(VAE_WEIGHTS)})")
    return AutoencoderKLTemporalDecoder.from_pretrained(str(root), local_files_only=True).eval()


# ---- keyframe (image) detokenizer: SDXL-shaped U-Net, AutoencoderKL, DDIM / Euler-ancestral ------------------------
IMAGE_DETOKENIZER_FOLDER = "image_detokenizer"  # inside a rain1011/Video-LaVIT-v1 root
IMAGE_WHERE_TO_GET = (
    f"https://huggingface.co/{LAVIT_REPO} (folders {IMAGE_DETOKENIZER_FOLDER}/unet, {IMAGE_DETOKENIZER_FOLDER}/vae, "
    f"{IMAGE_DETOKENIZER_FOLDER}/scheduler)"
)
IMAGE_SCHEDULERS = ("DDIMScheduler", "EulerAncestralDiscreteScheduler")
"""Schedulers the official ``image_decoding`` samples with: Euler-ancestral when the folder's config says so, else DDIM."""


def _find_image_part(folder: str | os.PathLike[str], name: str, subfolder: str, what: str) -> Path:
    """``folder/name``, ``folder/subfolder/name`` or ``folder/image_detokenizer/subfolder/name``, else
    MissingComponentError naming the path and rain1011/Video-LaVIT-v1."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise MissingComponentError(path, f"keyframe detokenizer {subfolder} folder", IMAGE_WHERE_TO_GET)
    for candidate in (path / name, path / subfolder / name, path / IMAGE_DETOKENIZER_FOLDER / subfolder / name):
        if candidate.is_file():
            return candidate
    raise MissingComponentError(path / IMAGE_DETOKENIZER_FOLDER / subfolder / name,
                                f"keyframe detokenizer {what} ({name}; also looked in {str(path)!r} and "
                                f"{str(path / subfolder)!r})", IMAGE_WHERE_TO_GET)


def _diffusers_model(folder: str | os.PathLike[str], subfolder: str, class_name: str, what: str) -> nn.Module:
    import diffusers

    config_path = _find_image_part(folder, "config.json", subfolder, f"{what} config")
    root = config_path.parent
    name = _read_json(config_path).get("_class_name", class_name)
    if name != class_name:
        raise ValueError(f"{str(config_path)!r}: {what} class {name!r} is not supported; expected {class_name}")
    if not any((root / weights).is_file() for weights in VAE_WEIGHTS):
        raise MissingComponentError(root / VAE_WEIGHTS[0], f"keyframe detokenizer {what} weights "
                                    f"({' or '.join(VAE_WEIGHTS)})", IMAGE_WHERE_TO_GET)
    return getattr(diffusers, class_name).from_pretrained(str(root), local_files_only=True).eval()


def load_image_unet(folder: str | os.PathLike[str]) -> nn.Module:
    """The keyframe detokenizer's SDXL-shaped ``UNet2DConditionModel`` (``config.json`` + weights) from a diffusers
    folder, ``<folder>/unet`` or a Video-LaVIT root's ``image_detokenizer/unet``, in eval mode.

    Raises:
        MissingComponentError: the folder, its ``config.json`` or weights are missing (path and source named).
        ValueError: a config naming another class.
    """
    return _diffusers_model(folder, "unet", "UNet2DConditionModel", "U-Net")


def load_image_vae(folder: str | os.PathLike[str]) -> nn.Module:
    """The keyframe detokenizer's ``AutoencoderKL`` from a diffusers folder, ``<folder>/vae`` or a Video-LaVIT
    root's ``image_detokenizer/vae``, in eval mode. Raises as :func:`load_image_unet`."""
    return _diffusers_model(folder, "vae", "AutoencoderKL", "VAE")


def load_image_scheduler(folder: str | os.PathLike[str]):
    """The keyframe detokenizer's scheduler from ``scheduler_config.json`` (in ``folder``, ``folder/scheduler`` or
    ``image_detokenizer/scheduler``): ``EulerAncestralDiscreteScheduler`` when the config names it, else
    ``DDIMScheduler`` (the official ``image_decoding`` rule).

    Raises:
        MissingComponentError: the folder or its config is missing.
        ValueError: an unreadable config.
    """
    import diffusers

    path = _find_image_part(folder, SCHEDULER_CONFIG, "scheduler", "scheduler config")
    name = _read_json(path).get("_class_name")
    name = name if name in IMAGE_SCHEDULERS else "DDIMScheduler"
    return getattr(diffusers, name).from_pretrained(str(path.parent), local_files_only=True)
