"""Image feature extractors from the reference libraries, loaded from local files only.

* :class:`InceptionFeatures` -- torch-fidelity's TF-ported FID Inception-V3 (pool3 2048-d, unbiased
  logits 1008-d), with torch-fidelity's own resize or clean-fid's ("clean": PIL bicubic).
* :class:`ClipModel` -- an open_clip model (image and text towers), CLIP's PIL preprocessing.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np
import torch
from torch import nn

from lavit.weights import WeightsError, read_state_dict, resolve_weights

INCEPTION_SIZE = 299


class InceptionFeatures(nn.Module):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` with weights-only loading.

    torch-fidelity unpickles its weight file with ``weights_only=False``; here the file is read with
    ``weights_only=True`` first and torch-fidelity receives those tensors re-serialised in memory.

    Args:
        weights: path of ``weights-inception-2015-12-05-6726825d.pth`` (or a directory holding it);
            default: ``$LAVIT_WEIGHTS_DIR``.
        resize: ``"torch-fidelity"`` (its TF1-compatible bilinear resize to 299, as torch-fidelity's FID)
            or ``"clean"`` (clean-fid's PIL bicubic resize to 299, rounded to 8 bits for this network).
    """

    features = ("2048", "logits_unbiased")

    def __init__(self, weights: str | os.PathLike | None = None, resize: str = "torch-fidelity"):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        if resize not in ("torch-fidelity", "clean"):
            raise ValueError(f"resize must be 'torch-fidelity' or 'clean', got {resize!r}")
        self.resize = resize
        state = read_state_dict(resolve_weights("inception_v3_fid", weights))
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", list(self.features), feature_extractor_weights_path=buffer)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) uint8 -> {"2048": (N, 2048), "logits_unbiased": (N, 1008)} float32."""
        if self.resize == "clean":
            images = clean_resize(images, INCEPTION_SIZE)
        return dict(zip(self.features, self.net(images)))


def clean_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """clean-fid's resize (PIL bicubic on float channels) of (N, 3, H, W) uint8, rounded back to uint8."""
    from cleanfid.resize import make_resizer

    resizer = make_resizer("PIL", False, "bicubic", (size, size))
    out = [resizer(img) for img in images.permute(0, 2, 3, 1).cpu().numpy()]
    out = np.clip(np.rint(np.stack(out)), 0, 255).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device)


class ClipModel(nn.Module):
    """An open_clip model from a local checkpoint, with CLIP's reference (PIL) preprocessing.

    Args:
        model_name: open_clip architecture name (``"ViT-B-16"`` for CLIPSIM, ``"ViT-B-32"`` for PYoCo's FID).
        weights: open_clip checkpoint (state dict ``.bin`` / ``.pt`` or ``.safetensors``), read with
            ``weights_only=True`` (checked by ``lavit.weights.read_state_dict`` first, then read by
            open_clip); e.g. the ``open_clip_pytorch_model.bin`` of
            ``timm/vit_base_patch16_clip_224.openai`` on the Hugging Face hub.
    """

    def __init__(self, model_name: str = "ViT-B-16", weights: str | os.PathLike | None = None):
        super().__init__()
        import open_clip

        if weights is None or not os.path.isfile(weights):
            raise FileNotFoundError(
                f"open_clip {model_name} weights not found ({weights!r}); pass the local checkpoint path, e.g. "
                f"open_clip_pytorch_model.bin from https://huggingface.co/timm/vit_base_patch16_clip_224.openai "
                f"(ViT-B-16) or https://huggingface.co/timm/vit_base_patch32_clip_224.openai (ViT-B-32)"
            )
        read_state_dict(weights)  # empty, truncated, unsafe or non-finite files: a WeightsError naming the file
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(weights))
        except RuntimeError as error:  # open_clip's strict load_state_dict: keys or shapes of another model
            raise WeightsError(weights, f"does not match open_clip {model_name}: {' '.join(str(error).split())[:800]}") from error
        self.model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)

    def preprocess_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, 3, 224, 224) float, exactly CLIP's PIL transform."""
        from PIL import Image

        device = next(self.model.parameters()).device
        images = frames.permute(0, 2, 3, 1).cpu().numpy()
        return torch.stack([self.preprocess(Image.fromarray(img)) for img in images]).to(device)

    @torch.no_grad()
    def image_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, D) unit-norm image embeddings."""
        return torch.nn.functional.normalize(self.model.encode_image(self.preprocess_frames(frames)).float(), dim=-1)

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """N strings -> (N, D) unit-norm text embeddings."""
        device = next(self.model.parameters()).device
        return torch.nn.functional.normalize(self.model.encode_text(self.tokenizer(list(texts)).to(device)).float(), dim=-1)
