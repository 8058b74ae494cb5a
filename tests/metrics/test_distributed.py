"""Exact synchronisation: 2-process DDP (gloo, CPU) equals one process; batch size does not matter;
identical sets give zero; bad input raises."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from metrics import FVD, KVD, VideoInceptionScore


class PooledProjection(nn.Module):
    """A small real feature network: average-pool the clip, then a fixed random linear map.

    (B, 3, T, H, W) -> (B, out): same interface as I3D (out 400) or C3D (out 101). It computes in
    float64 so that its features do not depend on the batch composition (float32 BLAS kernels round
    differently for different batch sizes); what these tests check is the metrics' reduction.
    """

    def __init__(self, frames: int, out: int, seed: int = 0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d((frames, 4, 4))
        self.proj = nn.Linear(3 * frames * 16, out, dtype=torch.float64)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=gen, dtype=torch.float64) / 10)
            self.proj.bias.zero_()

    def forward(self, x):
        return self.proj(self.pool(x.double()).flatten(1))


def _videos(seed, n, frames=16):
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 1, 3, 20, 28), generator=gen).float()
    drift = torch.linspace(0, 40, frames).view(1, frames, 1, 1, 1)
    return (base + drift * torch.rand(n, 1, 3, 1, 1, generator=gen)).clamp(0, 255).to(torch.uint8)


REAL, FAKE = _videos(1, 13), _videos(2, 11)


def _metrics():
    return {
        "fvd": FVD(network=PooledProjection(16, 400)),
        "fvd_tf": FVD(network=PooledProjection(16, 400), protocol="tf"),
        "kvd": KVD(network=PooledProjection(16, 400), subsets=10, subset_size=8),
        "vis": VideoInceptionScore(network=PooledProjection(16, 101), splits=2),
    }


def _feed(metrics, real_idx, fake_idx, batch):
    for idx in real_idx.split(batch):
        metrics["fvd"].update(REAL[idx], real=True)
        metrics["fvd_tf"].update(REAL[idx], real=True)
        metrics["kvd"].update(REAL[idx], real=True, indices=idx)
    for idx in fake_idx.split(batch):
        metrics["fvd"].update(FAKE[idx], real=False)
        metrics["fvd_tf"].update(FAKE[idx], real=False)
        metrics["kvd"].update(FAKE[idx], real=False, indices=idx)
        metrics["vis"].update(FAKE[idx], indices=idx)


def _values(metrics):
    out = {}
    for name, metric in metrics.items():
        value = metric.compute()
        out[name] = [float(v) for v in value] if isinstance(value, tuple) else [float(value)]
    return out


def _worker(rank, world, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    metrics = _metrics()
    # uneven shards, different batch sizes per rank
    _feed(metrics, torch.arange(13)[rank::world], torch.arange(11)[rank::world], batch=2 + rank)
    values = _values(metrics)
    if rank == 0:
        torch.save(values, out_file)
    dist.destroy_process_group()


def _single(batch):
    metrics = _metrics()
    _feed(metrics, torch.arange(13), torch.arange(11), batch)
    return _values(metrics)


def test_two_process_ddp_equals_one_process(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp, single = torch.load(out), _single(batch=13)
    for name in single:
        for a, b in zip(ddp[name], single[name]):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), name
    assert single["fvd"][0] > 0 and single["fvd"][0] != single["fvd_tf"][0]


def test_batch_size_does_not_matter():
    a, b = _single(batch=1), _single(batch=5)
    for name in a:
        for x, y in zip(a[name], b[name]):
            assert x == pytest.approx(y, rel=1e-9, abs=1e-12), name


def test_identical_sets_give_zero_fvd():
    fvd = FVD(network=PooledProjection(16, 400))
    fvd.update(REAL, real=True)
    fvd.update(REAL, real=False)
    assert abs(fvd.compute().item()) <= 1e-6


def test_bad_input_raises():
    fvd = FVD(network=PooledProjection(16, 400), value_range=(-1, 1))
    with pytest.raises(ValueError, match=r"value_range \(-1, 1\)"):
        fvd.update(REAL.float(), real=True)  # a [0, 255] float video declared as [-1, 1]
    with pytest.raises(ValueError, match="needs at least 16"):
        fvd.update(REAL[:, :8].float() / 127.5 - 1, real=True)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        fvd.update(REAL[:, :, 0], real=True)
    fvd.update(REAL[:1].float() / 127.5 - 1, real=True)
    fvd.update(FAKE[:3].float() / 127.5 - 1, real=False)
    with pytest.raises(ValueError, match="at least 2 real samples"):
        fvd.compute()
    vis = VideoInceptionScore(network=PooledProjection(16, 101), splits=2)
    vis.update(FAKE[:1])
    with pytest.raises(ValueError, match="at least 2 fake samples"):
        vis.compute()
