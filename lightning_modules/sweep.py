"""``lavit sweep -c configs/sweeps/<name>.yaml``: generate every grid point's videos with ``Trainer.predict``
(sharded over processes, resumable) and evaluate each against the real videos with ``VideoEvaluator``
(``Trainer.test``); one results table (Markdown, CSV, JSON) and plots per sweep.

Layout under ``output_dir``: ``<point>/videos/<index>.mp4``, ``<point>/manifest.csv`` (video, caption,
video_id), ``<point>/point.json`` (what the videos were generated with), ``<point>/eval_results.json``,
``results.{md,csv,json}`` and ``plots/<metric>_vs_<guidance axis>.png``. A video is written to a temporary
name and renamed, so an existing ``<index>.mp4`` is complete and is never generated again.

Under DDP every process runs this whole function (Lightning's launcher re-runs the command); each one
generates its own shard and only rank 0 writes manifests and tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from datamodules.prompts import PromptDataModule
from datamodules.video_folder import VideoFolderDataModule
from lavit.sweeps.components import instantiate, resolve_class
from lavit.sweeps.config import SweepConfig, check_inputs, item_seed, load_sweep_config
from lavit.sweeps.prompts import PromptItem, read_prompts
from lavit.sweeps.random_networks import uses_random_weights
from lavit.sweeps.tables import build_rows, write_plots, write_tables
from lavit.video.writer import write_frames
from lightning_modules.video_evaluator import VideoEvaluator

RANDOM_LABEL = "random-weight networks"


class SweepGeneration(L.LightningModule):
    """``predict_step``: each prompt of the batch -> ``generator([prompt], seed=item_seed(seed, index),
    num_clips, **overrides)``, cut to ``num_frames``; returns ``[(item, (T, H, W, 3) uint8)]``."""

    def __init__(self, generator: Any, num_clips: int = 1, num_frames: int | None = None, seed: int = 0,
                 overrides: dict | None = None):
        super().__init__()
        self.generator, self.num_clips, self.num_frames = generator, num_clips, num_frames
        self.seed, self.overrides = seed, dict(overrides or {})

    def on_predict_start(self) -> None:
        if hasattr(self.generator, "to"):
            self.generator.to(self.device)

    def predict_step(self, batch: list[PromptItem], batch_idx: int) -> list[tuple[PromptItem, torch.Tensor]]:
        out = []
        for item in batch:
            video = self.generator([item.caption], seed=item_seed(self.seed, item.index), num_clips=self.num_clips,
                                   **self.overrides)[0]
            video = torch.as_tensor(video)
            if self.num_frames is not None:
                if len(video) < self.num_frames:
                    raise ValueError(f"the generator gave {len(video)} frames for item {item.index}; the sweep needs "
                                     f"{self.num_frames} (raise video.num_clips)")
                video = video[: self.num_frames]
            out.append((item, video.cpu()))
        return out


class SweepVideoWriter(BasePredictionWriter):
    """Writes ``videos/<index>.mp4`` (temporary name, then rename) and, with ``tail_frames``, the last frames
    again as ``tail/<index>.mp4`` (the long-video protocol compares first and last frames)."""

    def __init__(self, point_dir: Path, fps: float, tail_frames: int | None = None):
        super().__init__(write_interval="batch")
        self.point_dir, self.fps, self.tail_frames = Path(point_dir), fps, tail_frames
        self.written = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        for item, video in prediction:
            if self.tail_frames is not None:
                _write_atomic(video[-self.tail_frames:], tail_path(self.point_dir, item), self.fps)
            _write_atomic(video, video_path(self.point_dir, item), self.fps)  # last: its existence marks the item done
            self.written += 1


def video_path(point_dir: Path, item: PromptItem) -> Path:
    return point_dir / "videos" / f"{item.index:05d}.mp4"


def tail_path(point_dir: Path, item: PromptItem) -> Path:
    return point_dir / "tail" / f"{item.index:05d}.mp4"


def _write_atomic(video: torch.Tensor, path: Path, fps: float) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    write_frames(video, tmp, fps=fps)
    os.replace(tmp, path)


def _write_manifest(path: Path, items: list[PromptItem], folder: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "caption", "video_id"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({"video": f"{folder}/{i.index:05d}.mp4", "caption": i.caption, "video_id": i.video_id} for i in items)


class Sweep:
    """A checked sweep: config, prompt items, grid points, metric specs; ``run()`` does the work."""

    def __init__(self, cfg: SweepConfig, accelerator: str | None = None, devices: int | None = None,
                 strategy: str | None = None, progress: bool = True):
        self.cfg = cfg
        self.accelerator = accelerator or cfg.accelerator
        self.devices = devices or cfg.devices
        strategy = strategy or cfg.strategy
        self.strategy = "ddp" if strategy == "auto" and self.devices > 1 else strategy
        self.progress = progress
        # everything that can fail on the user's input fails here, before any generation
        check_inputs(cfg)
        self.items = read_prompts(cfg.prompt_file, cfg.videos_per_prompt, cfg.num_videos, cfg.template)
        self.points = cfg.points()
        self.generator_class = resolve_class(str(cfg.generator.get("class_path")))
        if hasattr(self.generator_class, "check"):
            for checkpoint in cfg.grid["checkpoint"]:
                self.generator_class.check(checkpoint)
        self.metrics = {name: instantiate(spec) for name, spec in cfg.metrics.items()}  # missing weights: now
        self.random = sorted(n for n, m in self.metrics.items() if isinstance(m, torch.nn.Module) and uses_random_weights(m))
        self._generators: dict[str, Any] = {}
        self.generated: dict[str, int] = {}

    def _generator(self, checkpoint: str | None):
        key = json.dumps([self.cfg.generator, checkpoint], sort_keys=True, default=str)
        if key not in self._generators:
            extra = {"checkpoint": checkpoint} if checkpoint is not None else {}
            self._generators[key] = instantiate(self.cfg.generator, **extra)
        return self._generators[key]

    def _trainer(self, root: Path, callbacks=()) -> L.Trainer:
        return L.Trainer(accelerator=self.accelerator, devices=self.devices, strategy=self.strategy, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=self.progress,
                         default_root_dir=root, callbacks=list(callbacks))

    def _signature(self, point) -> dict:
        c = self.cfg
        return {"axes": point.axes(), "generator": c.generator, "num_clips": c.num_clips, "num_frames": c.num_frames,
                "prompts": {"file": str(c.prompt_file), "count": len(self.items), "videos_per_prompt": c.videos_per_prompt,
                            "template": c.template}, "tail": c.eval_num_frames if c.real_is_tail else None}

    def _check_point_dir(self, point_dir: Path, signature: dict, rank_zero: bool) -> None:
        stamp = point_dir / "point.json"
        if stamp.is_file():
            old = json.loads(stamp.read_text())
            if old != json.loads(json.dumps(signature, default=str)):
                diff = sorted(k for k in set(old) | set(signature) if old.get(k) != json.loads(json.dumps(signature.get(k), default=str)))
                raise ValueError(f"{point_dir} holds videos generated with other settings ({', '.join(diff)} differ); "
                                 "use another output_dir or delete that folder")
        elif rank_zero:
            point_dir.mkdir(parents=True, exist_ok=True)
            tmp = stamp.with_name(".tmp-point.json")
            tmp.write_text(json.dumps(signature, indent=2, sort_keys=True, default=str) + "\n")
            os.replace(tmp, stamp)

    def generate(self, point, limit: int | None = None) -> int:
        """Generate the missing videos of one grid point; returns how many this process wrote."""
        point_dir = self.cfg.output_dir / point.id
        rank_zero = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0
        self._check_point_dir(point_dir, self._signature(point), rank_zero)
        generator = self._generator(point.checkpoint)
        fps = self.cfg.fps or float(getattr(generator, "fps", 8.0))
        writer = SweepVideoWriter(point_dir, fps, self.cfg.eval_num_frames if self.cfg.real_is_tail else None)
        model = SweepGeneration(generator, self.cfg.num_clips, self.cfg.num_frames, point.seed, point.overrides())
        data = PromptDataModule(self.items, lambda item: video_path(point_dir, item).is_file(), limit)
        trainer = self._trainer(point_dir, [writer])
        with warnings.catch_warnings():  # a resumed point whose videos all exist has nothing left to predict
            warnings.filterwarnings("ignore", message="Total length of `DataLoader` across ranks is zero")
            trainer.predict(model, datamodule=data, return_predictions=False)
        trainer.strategy.barrier("sweep-generated")
        if trainer.is_global_zero:
            done = [i for i in self.items if video_path(point_dir, i).is_file()]
            _write_manifest(point_dir / "manifest.csv", done, "videos")
            if self.cfg.real_is_tail:
                _write_manifest(point_dir / "tail.csv", done, "tail")
        trainer.strategy.barrier("sweep-manifest")
        return writer.written

    def evaluate(self, point) -> tuple[dict[str, float], int, bool]:
        point_dir = self.cfg.output_dir / point.id
        c = self.cfg
        real = str(point_dir / "tail.csv") if c.real_is_tail else c.real
        data = VideoFolderDataModule(fake=str(point_dir / "manifest.csv"), real=real, num_frames=c.eval_num_frames,
                                     frames=c.eval_frames, resolution=c.eval_resolution, batch_size=c.eval_batch_size)
        model = VideoEvaluator(self.metrics, output=str(point_dir / "eval_results.json"))
        trainer = self._trainer(point_dir)
        trainer.test(model, datamodule=data, verbose=False)
        count = len([i for i in self.items if video_path(point_dir, i).is_file()])
        return dict(model.results), count, trainer.is_global_zero

    def run(self, max_new_videos: int | None = None) -> dict | None:
        """Generate and evaluate every grid point; returns the table rows (None when ``max_new_videos``, a
        per-process budget for tests and partial runs, stopped generation before the end)."""
        budget = max_new_videos
        for point in self.points:
            written = self.generate(point, None if budget is None else max(budget, 0))
            self.generated[point.id] = written
            if budget is not None:
                budget -= written
                # decided on the files, which every process sees alike after generate's barrier: no rank runs on alone
                if any(not video_path(self.cfg.output_dir / point.id, i).is_file() for i in self.items):
                    return None
        results, rank_zero = [], True
        for point in self.points:
            values, count, rank_zero = self.evaluate(point)
            results.append({"id": point.id, **point.axes(), "videos": count, "results": values,
                            "networks": f"{RANDOM_LABEL} ({', '.join(self.random)})" if self.random else ""})
        metric_names = sorted({m for r in results for m in r["results"]} | {m for v in self.cfg.reference.values() for m in v})
        rows = build_rows(results, self.cfg.reference, metric_names)
        if rank_zero:
            title = self.cfg.name + (f" ({RANDOM_LABEL}: {', '.join(self.random)}; not comparable to the paper)" if self.random else "")
            paths = write_tables(rows, metric_names, self.cfg.output_dir, title)
            plots = write_plots(rows, metric_names, self.cfg.output_dir / "plots", title)
            print(paths["md"].read_text() + f"tables: {', '.join(str(p) for p in paths.values())}\n"
                  f"plots: {', '.join(str(p) for p in plots) or 'none (no guidance axis swept)'}", flush=True)
        return {"rows": rows, "generated": dict(self.generated)}


def run_sweep(config: str | os.PathLike | SweepConfig, max_new_videos: int | None = None, **kwargs) -> dict | None:
    cfg = config if isinstance(config, SweepConfig) else load_sweep_config(config)
    return Sweep(cfg, **kwargs).run(max_new_videos)


def sweep_main(argv: list[str]) -> int:
    """``lavit sweep -c CONFIG [--devices N] ...``; user errors print one line and return 2."""
    from lavit.cli import _number, _Parser

    from lightning_modules.cli import DEBUG_ENV, user_error

    parser = _Parser(prog="lavit sweep", description="Generate a sweep's grid of videos (Lightning predict, resumable) "
                     "and evaluate each grid point (VideoEvaluator); writes results.{md,csv,json} and plots/.")
    parser.add_argument("-c", "--config", required=True, type=Path, help="sweep YAML (configs/sweeps/*.yaml)")
    parser.add_argument("--accelerator", default=None, help="cpu, gpu, auto (default: the config's trainer.accelerator)")
    parser.add_argument("--devices", type=_number(int, 1, strict=False), default=None, help="processes / GPUs (default: the config's trainer.devices)")
    parser.add_argument("--strategy", default=None, help="default: ddp when devices > 1")
    parser.add_argument("--max-new-videos", type=_number(int, 1, strict=False), default=None, help="stop after generating this many videos per process "
                        "(a partial run; rerun without it to finish)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    ns = parser.parse_args(argv[1:])
    try:
        out = run_sweep(ns.config, ns.max_new_videos, accelerator=ns.accelerator, devices=ns.devices, strategy=ns.strategy,
                        progress=not ns.no_progress)
    except Exception as err:
        shown = user_error(err)
        if shown is None or os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"lavit sweep: error: {' '.join(shown.split())}", file=sys.stderr)
        return 2
    if out is None:
        print("lavit sweep: stopped at --max-new-videos; rerun to finish", flush=True)
    return 0
