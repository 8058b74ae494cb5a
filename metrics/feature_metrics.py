"""Two base metrics over features, and how their states synchronise across processes.

``FrechetMetric`` keeps, per side (real / fake), the float64 sum of features, the sum of their outer
products and the count, all ``"sum"`` states: the DDP reduction is exact, memory does not grow
with N, and the result does not depend on how samples were split into batches or ranks (up to float64
summation order).

``GatheredFeaturesMetric`` keeps the features themselves (``"cat"`` states) for metrics that need
samples (Inception Score splits, KID / KVD subsets). After gathering, rows are put into a canonical
order before any subset or shuffle: by the dataset ``indices`` passed to ``update`` (the data order,
so results equal the reference implementations fed the same data), or, without indices, by a fixed
random projection of the features (an order that depends only on the set of rows). Either way the
value does not depend on world size or batch size.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from metrics.frechet import frechet_distance, statistics_from_sums

SIDES = ("real", "fake")


class FrechetMetric(Metric):
    """Fréchet distance between the Gaussian statistics of real and fake features.

    Subclasses turn inputs into ``(N, num_features)`` features and call ``update_features``.

    Args:
        num_features: feature dimension d.
        unbiased: covariance divided by N - 1 (TF, torch-fidelity, clean-fid) or by N (StyleGAN-V).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, num_features: int, unbiased: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_features, self.unbiased = num_features, unbiased
        for side in SIDES:
            self.add_state(f"{side}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(num_features, num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        """Accumulate (N, num_features) features on the real or the fake side."""
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"features must be (N, {self.num_features}), got {tuple(features.shape)}")
        x = features.detach().to(torch.float64)
        side = "real" if real else "fake"
        getattr(self, f"{side}_sum").add_(x.sum(0))
        getattr(self, f"{side}_outer").add_(x.T @ x)
        getattr(self, f"{side}_count").add_(x.shape[0])

    def side_statistics(self, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        count = int(getattr(self, f"{side}_count"))
        if count < 2:
            raise ValueError(f"{type(self).__name__}: need at least 2 {side} samples at compute, got {count}")
        return statistics_from_sums(getattr(self, f"{side}_sum"), getattr(self, f"{side}_outer"), count, self.unbiased)

    def compute(self) -> torch.Tensor:
        """float64 scalar."""
        return frechet_distance(*self.side_statistics("real"), *self.side_statistics("fake"))


def canonical_order(features: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Permutation putting gathered rows in an order independent of how they were gathered.

    Rows with dataset keys (>= 0) sort by key; without keys (all -1) by a fixed random projection
    (ties: identical rows, whose order does not matter).
    """
    if len(keys) and bool((keys >= 0).all()):
        return torch.argsort(keys, stable=True)
    if bool((keys >= 0).any()):
        raise ValueError("pass indices to every update call of a metric, or to none")
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(features.shape[1], generator=gen, dtype=torch.float64).to(features.device)
    return torch.argsort(features.double() @ direction, stable=True)


class GatheredFeaturesMetric(Metric):
    """Keeps features (and optional dataset indices) of one or two sides as ``"cat"`` states."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, sides: tuple[str, ...] = SIDES, **kwargs):
        super().__init__(**kwargs)
        self.sides = sides
        for side in sides:
            self.add_state(f"{side}_features", [], dist_reduce_fx="cat")
            self.add_state(f"{side}_keys", [], dist_reduce_fx="cat")

    def update_features(self, features: torch.Tensor, side: str, indices: torch.Tensor | None = None) -> None:
        if features.ndim != 2:
            raise ValueError(f"features must be (N, D), got {tuple(features.shape)}")
        n = features.shape[0]
        if indices is None:
            keys = torch.full((n,), -1, dtype=torch.long, device=features.device)
        else:
            keys = torch.as_tensor(indices, dtype=torch.long, device=features.device).reshape(-1)
            if keys.shape[0] != n:
                raise ValueError(f"got {keys.shape[0]} indices for {n} samples")
        getattr(self, f"{side}_features").append(features.detach().to(torch.float64))
        getattr(self, f"{side}_keys").append(keys)

    def gathered(self, side: str, min_samples: int = 2) -> torch.Tensor:
        """(N, D) float64 features of ``side`` from all processes, in canonical order."""
        features, keys = getattr(self, f"{side}_features"), getattr(self, f"{side}_keys")
        n = sum(len(f) for f in features) if isinstance(features, list) else len(features)
        if n < min_samples:
            raise ValueError(f"{type(self).__name__}: need at least {min_samples} {side} samples at compute, got {n}")
        features, keys = dim_zero_cat(features), dim_zero_cat(keys)
        return features[canonical_order(features, keys)]
