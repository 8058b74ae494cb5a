"""Vector quantiser with an l2-normalised codebook updated by exponential moving averages.

Features and codes live on the unit sphere, so the nearest code by Euclidean distance is the most
cosine-similar one (ViT-VQGAN / BEiT-v2 style). The codebook is not trained by gradients: after each
training step every used code moves towards the mean of the features assigned to it,
``c <- normalize(decay * c + (1 - decay) * normalize(mean assigned z))``. Under torch.distributed the
per-code counts and sums are all-reduced first, so every rank applies the same update and holds the
same codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lavit.distributed import all_reduce_sum, broadcast


def codebook_statistics(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(num_codes,) uses per code -> (usage, perplexity): the fraction of codes used at least once and
    exp(entropy) of the code-use distribution (1 = one code, num_codes = uniform use)."""
    counts = counts.float()
    probs = counts / counts.sum().clamp(min=1)
    perplexity = torch.exp(-(probs * torch.log(probs.clamp(min=1e-12))).sum())
    return (counts > 0).float().mean(), perplexity


@dataclass
class QuantizerOutput:
    """quantized: (..., D) straight-through codes; indices: (...) int64; loss: commitment term;
    usage: fraction of codes used in the batch; perplexity: exp(entropy) of code use; counts:
    (num_codes,) uses per code. In training these are over all ranks, in eval over this rank only."""

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    usage: torch.Tensor
    perplexity: torch.Tensor
    counts: torch.Tensor


class NormEMAQuantizer(nn.Module):
    """EMA vector quantiser over an l2-normalised codebook.

    Args:
        num_codes: codebook size (1024 for motion).
        dim: code dimension (32).
        decay: EMA decay of the codebook (0.995 in the paper).
        commitment_weight: weight of ``||z - sg(q)||^2``.
        kmeans_init: initialise the codebook by spherical k-means on the first training batch.
        kmeans_iters: k-means iterations.
        dead_code_steps: re-seed codes unused for this many training steps from recent encoder
            outputs (None disables restarts).
        restart_buffer: how many recent encoder outputs are kept for restarts.
        seed: seed of the restart sampling (the same on every rank).
        warmup_steps: for this many training steps the quantiser passes the normalised features
            through unquantised (an autoencoder phase, no EMA, no commitment loss), so the encoder
            learns content-dependent features before codes are fitted to them; the k-means
            initialisation then runs on the first batch after warm-up. Indices are still reported.

    The state dict holds only ``embedding.weight`` (the official key); EMA / restart statistics are
    non-persistent buffers saved by ``training_state()`` / ``load_training_state()``.
    """

    def __init__(
        self,
        num_codes: int = 1024,
        dim: int = 32,
        decay: float = 0.995,
        commitment_weight: float = 0.25,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_steps: int | None = None,
        restart_buffer: int = 4096,
        seed: int = 0,
        warmup_steps: int = 0,
    ):
        super().__init__()
        self.warmup_steps = warmup_steps
        self.num_codes, self.dim, self.decay = num_codes, dim, decay
        self.commitment_weight = commitment_weight
        self.kmeans_init, self.kmeans_iters = kmeans_init, kmeans_iters
        self.dead_code_steps = dead_code_steps
        self.seed = seed
        self.embedding = nn.Embedding(num_codes, dim)
        self.embedding.weight.requires_grad_(False)
        with torch.no_grad():
            self.embedding.weight.copy_(F.normalize(torch.randn(num_codes, dim), dim=-1))
        self.register_buffer("cluster_size", torch.zeros(num_codes), persistent=False)
        self.register_buffer("unused_steps", torch.zeros(num_codes, dtype=torch.long), persistent=False)
        self.register_buffer("recent", torch.zeros(restart_buffer, dim), persistent=False)
        self.register_buffer("recent_count", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("initialized", torch.tensor(not kmeans_init), persistent=False)

    @property
    def codebook(self) -> torch.Tensor:
        """(num_codes, dim) unit-norm codes."""
        return self.embedding.weight

    def training_state(self) -> dict[str, torch.Tensor]:
        """EMA and restart statistics, for checkpoints (the codebook itself is in the state dict)."""
        names = ("cluster_size", "unused_steps", "recent", "recent_count", "steps", "initialized")
        return {n: getattr(self, n).detach().clone() for n in names}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            getattr(self, name).copy_(value)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) unit vectors -> (N,) index of the nearest code."""
        c = self.codebook
        d = z.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1) - 2 * z @ c.t()
        return d.argmin(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(...) int64 -> (..., D) codes."""
        return F.embedding(indices, self.codebook)

    @torch.no_grad()
    def tokenize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference lookup, the official ``VectorQuantizer.tokenize``: (..., D) features -> (z_q (..., D)
        codebook rows as stored, indices (...) int64) of l2norm(z); float32, no EMA, no statistics."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = F.normalize(z.float(), dim=-1).reshape(-1, self.dim)
            c = self.codebook.float()  # a bf16 model keeps its codebook in bf16
            indices = (flat.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1) - 2 * flat @ c.t()).argmin(1)
            return F.embedding(indices, c).view(z.shape), indices.view(z.shape[:-1])

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantise (..., D) features (computed in float32 whatever the autocast state)."""
        shape = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1)
            flat = z.reshape(-1, self.dim)
            warming_up = int(self.steps) < self.warmup_steps
            if self.training and not warming_up and not bool(self.initialized):
                self._kmeans_init(flat.detach())
            indices = self.nearest(flat)
            q = self.lookup(indices)
            counts = torch.bincount(indices, minlength=self.num_codes).float()
            if warming_up:
                q = flat.detach()  # pass features through: no quantisation, zero commitment loss
                if self.training:
                    self.steps += 1
            elif self.training:  # counts become global (all ranks) here
                counts = self._ema_update(flat.detach(), indices, counts)
            loss = self.commitment_weight * F.mse_loss(flat, q.detach())
            usage, perplexity = codebook_statistics(counts)
            quantized = (flat + (q - flat).detach()).view(shape)
        return QuantizerOutput(quantized, indices.view(shape[:-1]), loss, usage, perplexity, counts)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros(self.num_codes, self.dim, device=flat.device).index_add_(0, indices, flat)
        all_reduce_sum(counts)
        all_reduce_sum(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        used = counts > 0
        target = F.normalize(sums[used] / counts[used, None], dim=-1)
        c = self.embedding.weight
        c[used] = F.normalize(self.decay * c[used] + (1 - self.decay) * target, dim=-1)
        self.steps += 1
        self.unused_steps += 1
        self.unused_steps[used] = 0
        self._remember(flat)
        if self.dead_code_steps is not None:
            self._restart_dead_codes()
        return counts

    def _remember(self, flat: torch.Tensor) -> None:
        """Keep the most recent encoder outputs (a ring buffer) as restart candidates."""
        n, size = flat.shape[0], self.recent.shape[0]
        take = flat[-size:]
        start = int(self.recent_count) % size
        idx = (start + torch.arange(len(take), device=flat.device)) % size
        self.recent[idx] = take
        self.recent_count += n

    def _restart_dead_codes(self) -> None:
        dead = self.unused_steps >= self.dead_code_steps
        available = min(int(self.recent_count), self.recent.shape[0])
        if not bool(dead.any()) or available == 0:
            return
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.steps))
        pick = torch.randint(available, (int(dead.sum()),), generator=gen).to(self.recent.device)
        self.embedding.weight[dead] = F.normalize(self.recent[pick], dim=-1)
        self.unused_steps[dead] = 0
        self.cluster_size[dead] = 0
        broadcast(self.embedding.weight.data, src=0)  # ranks saw different recent outputs: take rank 0's choice

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        """Spherical k-means (k-means++ seeding) on the first batch; rank 0's result is broadcast."""
        gen = torch.Generator().manual_seed(self.seed)
        n = flat.shape[0]
        first = torch.randint(n, (1,), generator=gen).item()
        centres = [flat[first]]
        closest = 1 - flat @ flat[first]  # cosine distance to the nearest chosen centre
        for _ in range(1, self.num_codes):
            weights = closest.clamp(min=0).cpu()
            pick = torch.multinomial(weights, 1, generator=gen).item() if weights.sum() > 0 else torch.randint(n, (1,), generator=gen).item()
            centres.append(flat[pick])
            closest = torch.minimum(closest, 1 - flat @ flat[pick])
        centres = torch.stack(centres)
        for _ in range(self.kmeans_iters):
            assign = (flat @ centres.t()).argmax(1)
            sums = torch.zeros_like(centres).index_add_(0, assign, flat)
            filled = torch.bincount(assign, minlength=self.num_codes) > 0
            centres[filled] = F.normalize(sums[filled], dim=-1)
        self.embedding.weight.copy_(centres)
        broadcast(self.embedding.weight.data, src=0)
        self.initialized.fill_(True)


def check_quantizer_settings(config) -> None:
    """Raise ValueError naming the first out-of-range EMA-quantiser field of ``config`` (``decay``,
    ``commitment_weight``, ``dead_code_steps``): the one check the motion and keyframe tokenizer configs share."""
    if not 0 <= config.decay < 1:
        raise ValueError(f"decay must lie in [0, 1), got {config.decay}")
    if config.commitment_weight < 0:
        raise ValueError(f"commitment_weight must be non-negative, got {config.commitment_weight}")
    if config.dead_code_steps is not None and config.dead_code_steps < 1:
        raise ValueError(f"dead_code_steps must be positive or None, got {config.dead_code_steps}")
