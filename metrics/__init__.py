"""Evaluation metrics (FVD, KVD, CLIPSIM, FID, IS) as torchmetrics Metrics.

Every metric syncs exactly across processes and names its reference protocol; see
``metrics.protocols`` for the presets and ``metrics.networks`` for the feature networks and where
their weight files come from (nothing is downloaded).
"""

from metrics.clipsim import CLIPSIM
from metrics.fid import FID
from metrics.frechet import frechet_distance
from metrics.fvd import FVD, KVD
from metrics.inception_score import InceptionScore, VideoInceptionScore
from metrics.protocols import PROTOCOLS

__all__ = ["CLIPSIM", "FID", "FVD", "KVD", "InceptionScore", "PROTOCOLS", "VideoInceptionScore", "frechet_distance"]
