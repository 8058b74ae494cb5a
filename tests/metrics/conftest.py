"""Randomly initialised reference networks saved to files (no weights can be downloaded here)."""

import io
from unittest import mock

import pytest
import torch

from tests.random_weights import calibrate_batchnorm


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """torch-fidelity's Inception-V3 with random weights, saved as its weight file would be."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    # the class always loads a state dict in __init__; skip that once to get the random initialisation
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        empty = io.BytesIO()
        torch.save({}, empty)
        empty.seek(0)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
    calibrate_batchnorm(net, lambda: torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8))
    with torch.no_grad():
        net.fc.weight.mul_(30.0)  # confident random classes, so the Inception Score is not ~1
    path = tmp_path_factory.mktemp("weights") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def clip_weights(tmp_path_factory):
    """open_clip ViT-B-32 with random weights, saved as a state dict."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "open_clip_vit_b32_random.pt"
    torch.save(model.state_dict(), path)
    return path
