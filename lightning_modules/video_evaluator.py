"""Evaluation of generated videos through ``lightning test``: any subset of FVD, KVD, FID, IS, video IS, CLIPSIM.

    lightning test -c configs/eval/<name>.yaml [--trainer.devices 2 --trainer.strategy ddp]

Dataloader 0 of the datamodule is the generated ("fake") set, dataloader 1 the real set (see
``datamodules.VideoFolderDataModule``). Metric states synchronise across processes at the end; rank 0
prints a results table and writes JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torchmetrics import Metric

from metrics import CLIPSIM, KVD, InceptionScore, VideoInceptionScore
from metrics.feature_metrics import FrechetMetric


class VideoEvaluator(L.LightningModule):
    """Feeds each batch to its metrics and reports them.

    Args:
        metrics: name -> metric (``class_path``/``init_args`` in YAML), e.g. ``{"fvd": FVD(...)}``.
        output: JSON results file; default ``<trainer.log_dir or default_root_dir>/eval_results.json``.
    """

    def __init__(self, metrics: dict[str, Metric], output: str | None = None):
        super().__init__()
        if not metrics:
            raise ValueError("give at least one metric")
        self.metrics = nn.ModuleDict(metrics)
        self.output = output
        self.results: dict[str, float] = {}

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        video = batch["video"]  # never empty (datamodules.video_folder.NonEmptyLoader)
        real = dataloader_idx == 1
        for metric in self.metrics.values():
            if isinstance(metric, KVD):
                metric.update(video, real=real, indices=batch["index"])
            elif isinstance(metric, FrechetMetric):  # FVD, FID
                metric.update(video, real=real)
            elif real:
                continue  # the remaining metrics score generated videos only
            elif isinstance(metric, (InceptionScore, VideoInceptionScore)):
                metric.update(video, indices=batch["index"])
            elif isinstance(metric, CLIPSIM):
                metric.update(video, batch["caption"])
            else:
                metric.update(video)

    def on_test_epoch_end(self) -> None:
        results: dict[str, float] = {}
        for name, metric in self.metrics.items():
            value = metric.compute()
            if isinstance(value, tuple):  # (mean, std)
                results[name], results[f"{name}_std"] = float(value[0]), float(value[1])
            else:
                results[name] = float(value)
            metric.reset()
        self.results = results
        for name, value in results.items():
            self.log(f"test/{name}", value, rank_zero_only=True)
        # trainer.log_dir broadcasts under DDP: every rank asks
        root = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        self._report(results, Path(self.output) if self.output else root / "eval_results.json")

    @rank_zero_only
    def _report(self, results: dict[str, float], out: Path) -> None:
        skipped = getattr(self.trainer.datamodule, "skipped", {}) if self.trainer.datamodule is not None else {}
        width = max(len(n) for n in results)
        lines = [f"{'metric':<{width}}  value", "-" * (width + 16)]
        lines += [f"{name:<{width}}  {value:.6g}" for name, value in results.items()]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"results": results, "skipped": skipped, "world_size": self.trainer.world_size}, indent=2))
        print("\n".join(lines) + f"\nskipped videos (this rank): {len(skipped)}\nresults written to {out}", flush=True)
