"""Sweep configs (``configs/sweeps/*.yaml``): strict parsing, protocol defaults and the grid.

A sweep is a cartesian grid over ``checkpoint x keyframe_guidance x motion_guidance x video_steps x seed``;
each grid point generates every prompt of the prompt set once and is evaluated against the real videos.
Every key is checked before any work: an unknown key raises ``ValueError`` naming the key, the file and
the allowed keys; a missing prompt file, real set or checkpoint raises ``FileNotFoundError`` up front.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

GRID_AXES = ("checkpoint", "keyframe_guidance", "motion_guidance", "video_steps", "seed")
AXIS_SHORT = {"checkpoint": "", "keyframe_guidance": "kg", "motion_guidance": "mg", "video_steps": "steps", "seed": "seed"}
TAIL = "tail"  # ``real: tail``: compare the first and the last frames of each generated video (long-video drift)

# The paper's protocols (docs/spec.md §6): defaults a sweep's keys override.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "msrvtt": {"num_videos": 2990, "videos_per_prompt": 1, "num_clips": 1, "num_frames": None, "real_required": True},
    "ucf101": {"num_videos": 2020, "videos_per_prompt": 20, "num_clips": 1, "num_frames": None, "real_required": True},
    "long_video": {"num_videos": None, "videos_per_prompt": 1, "num_clips": 3, "num_frames": 64, "real_required": False},
    "custom": {"num_videos": None, "videos_per_prompt": 1, "num_clips": 1, "num_frames": None, "real_required": False},
}

KEYS = {
    "": ("name", "protocol", "prompts", "real", "grid", "video", "generator", "metrics", "evaluation", "reference",
         "output_dir", "trainer"),
    "prompts": ("file", "num_videos", "videos_per_prompt", "template"),
    "grid": GRID_AXES,
    "video": ("num_clips", "num_frames", "fps"),
    "generator": ("class_path", "init_args"),
    "evaluation": ("num_frames", "frames", "resolution", "batch_size"),
    "trainer": ("accelerator", "devices", "strategy"),
}


@dataclass(frozen=True)
class GridPoint:
    """One row of the sweep: the axis values (None = axis not swept) and a stable folder name."""

    id: str
    checkpoint: str | None
    keyframe_guidance: float | None
    motion_guidance: float | None
    video_steps: int | None
    seed: int

    def axes(self) -> dict[str, Any]:
        return {a: getattr(self, a) for a in GRID_AXES}

    def overrides(self) -> dict[str, Any]:
        """The generation overrides of this point (the axes that are swept, besides checkpoint and seed)."""
        return {a: getattr(self, a) for a in ("keyframe_guidance", "motion_guidance", "video_steps") if getattr(self, a) is not None}


@dataclass(frozen=True)
class SweepConfig:
    name: str
    source: Path
    protocol: str
    prompt_file: Path
    num_videos: int | None
    videos_per_prompt: int
    template: str
    real: str | None
    grid: dict[str, list]
    num_clips: int
    num_frames: int | None
    fps: float | None
    generator: dict[str, Any]
    metrics: dict[str, Any]
    eval_num_frames: int = 16
    eval_frames: str = "first"
    eval_resolution: int | None = 224
    eval_batch_size: int = 4
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    output_dir: Path = Path("outputs/sweeps")
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"

    @property
    def real_is_tail(self) -> bool:
        return self.real == TAIL

    def points(self) -> list[GridPoint]:
        """The cartesian product of the grid axes, in axis order (checkpoint slowest, seed fastest)."""
        values = [self.grid[a] for a in GRID_AXES]
        stems = [Path(c).stem if c is not None else None for c in self.grid["checkpoint"]]
        points = []
        for combo in itertools.product(*values):
            axes = dict(zip(GRID_AXES, combo))
            parts = []
            for axis, value in axes.items():
                if value is None or (axis != "checkpoint" and len(self.grid[axis]) == 1 and axis != "seed"):
                    continue
                if axis == "checkpoint":
                    stem = Path(value).stem
                    k = self.grid["checkpoint"].index(value)
                    parts.append(stem if stems.count(stem) == 1 else f"{stem}{k}")
                else:
                    parts.append(f"{AXIS_SHORT[axis]}{_number(value)}")
            points.append(GridPoint(id=_slug("_".join(parts)), **axes))
        return points


def load_sweep_config(path: str | os.PathLike) -> SweepConfig:
    """Read and validate a sweep YAML (paths in it are relative to the current directory)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep config not found: {path}")
    raw = _resolve(path)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: a sweep config is a mapping of {', '.join(KEYS[''])}")
    return sweep_config_from_dict(raw, path)


def _resolve(path: Path) -> Any:
    """The YAML with OmegaConf interpolations resolved (``${oc.env:LAVIT_WEIGHTS_DIR}``, as in configs/eval)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, Mapping):
        return raw
    try:
        return OmegaConf.to_container(OmegaConf.create(dict(raw)), resolve=True)
    except OmegaConfBaseException as err:
        raise ValueError(f"{path}: {str(err).splitlines()[0]}") from None


def sweep_config_from_dict(raw: Mapping[str, Any], source: str | os.PathLike = "<dict>") -> SweepConfig:
    source = Path(source)
    _check_keys(raw, "", source)
    for section in ("prompts", "grid", "video", "generator", "evaluation", "trainer"):
        value = raw.get(section)
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"{source}: {section!r} must be a mapping of {', '.join(KEYS[section])}")
        _check_keys(value or {}, section, source)
    for required in ("name", "prompts", "metrics"):
        if raw.get(required) in (None, "", {}):
            raise ValueError(f"{source}: missing required key {required!r}")
    protocol = raw.get("protocol", "custom")
    if protocol not in PROTOCOLS:
        raise ValueError(f"{source}: unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    defaults = PROTOCOLS[protocol]
    prompts, video, ev, tr = raw["prompts"], raw.get("video") or {}, raw.get("evaluation") or {}, raw.get("trainer") or {}
    if not prompts.get("file"):
        raise ValueError(f"{source}: prompts.file is required (MSR-VTT captions CSV/JSONL, class names or prompts .txt)")
    grid = {a: _axis(raw.get("grid") or {}, a, source) for a in GRID_AXES}
    if grid["seed"] == [None]:
        grid["seed"] = [0]
    metrics = raw["metrics"]
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{source}: 'metrics' must map names to class_path/init_args")
    for name, spec in metrics.items():
        if not isinstance(spec, Mapping) or "class_path" not in spec:
            raise ValueError(f"{source}: metric {name!r} needs a class_path (and optional init_args)")
        _check_keys(spec, f"metrics.{name}", source, ("class_path", "init_args"))
    reference = raw.get("reference") or {}
    if not isinstance(reference, Mapping) or not all(isinstance(v, Mapping) for v in reference.values()):
        raise ValueError(f"{source}: 'reference' maps a label to {{metric: value}} (the paper's numbers)")
    for label, values in reference.items():
        unknown = sorted(set(values) - set(metrics))
        if unknown:
            raise ValueError(f"{source}: reference {label!r} names metrics {unknown} that the sweep does not compute "
                             f"(metrics: {sorted(metrics)})")
    real = raw.get("real")
    if real is None and defaults["real_required"]:
        raise ValueError(f"{source}: the {protocol} protocol needs 'real' (a folder or manifest of the real test videos)")
    cfg = SweepConfig(
        name=str(raw["name"]), source=source, protocol=protocol, prompt_file=Path(prompts["file"]),
        num_videos=_opt_int(prompts, "num_videos", defaults["num_videos"], source),
        videos_per_prompt=_int(prompts, "videos_per_prompt", defaults["videos_per_prompt"], source),
        template=str(prompts.get("template", "{}")), real=None if real is None else str(real), grid=grid,
        num_clips=_int(video, "num_clips", defaults["num_clips"], source),
        num_frames=_opt_int(video, "num_frames", defaults["num_frames"], source),
        fps=None if video.get("fps") is None else float(video["fps"]),
        generator=dict(raw.get("generator") or {"class_path": "lavit.sweeps.generators.PipelineGenerator"}),
        metrics={k: dict(v) for k, v in metrics.items()},
        eval_num_frames=_int(ev, "num_frames", 16, source), eval_frames=str(ev.get("frames", "first")),
        eval_resolution=_opt_int(ev, "resolution", 224, source), eval_batch_size=_int(ev, "batch_size", 4, source),
        reference={str(k): {m: float(x) for m, x in v.items()} for k, v in reference.items()},
        output_dir=Path(raw.get("output_dir") or Path("outputs/sweeps") / str(raw["name"])),
        accelerator=str(tr.get("accelerator", "auto")), devices=_int(tr, "devices", 1, source),
        strategy=str(tr.get("strategy", "auto")),
    )
    if "{}" not in cfg.template:
        raise ValueError(f"{source}: prompts.template must contain '{{}}' where the prompt goes, got {cfg.template!r}")
    if cfg.eval_frames not in ("first", "center"):
        raise ValueError(f"{source}: evaluation.frames must be 'first' or 'center', got {cfg.eval_frames!r}")
    if cfg.real_is_tail and cfg.num_frames is not None and cfg.num_frames < 2 * cfg.eval_num_frames:
        raise ValueError(f"{source}: real: tail compares the first and last {cfg.eval_num_frames} frames; "
                         f"video.num_frames ({cfg.num_frames}) must be at least {2 * cfg.eval_num_frames}")
    return cfg


def check_inputs(cfg: SweepConfig) -> None:
    """Raise FileNotFoundError for a missing prompt file or real set (checkpoints: the generator's ``check``)."""
    if not cfg.prompt_file.is_file():
        raise FileNotFoundError(f"{cfg.source}: prompt file not found: {cfg.prompt_file}")
    if cfg.real is not None and not cfg.real_is_tail and not Path(cfg.real).exists():
        raise FileNotFoundError(f"{cfg.source}: real videos not found: {cfg.real} (a folder of videos or a CSV/JSONL manifest)")


def _check_keys(mapping: Mapping, section: str, source: Path, allowed: tuple[str, ...] | None = None) -> None:
    allowed = allowed if allowed is not None else KEYS[section]
    for key in mapping:
        if key not in allowed:
            where = f"{section}.{key}" if section else str(key)
            raise ValueError(f"{source}: unknown key {where!r}; allowed{' in ' + section if section else ''}: {', '.join(allowed)}")


def _axis(grid: Mapping, axis: str, source: Path) -> list:
    value = grid.get(axis)
    values = [None] if value is None else (list(value) if isinstance(value, (list, tuple)) else [value])
    if not values:
        raise ValueError(f"{source}: grid.{axis} is an empty list")
    cast = {"checkpoint": str, "keyframe_guidance": float, "motion_guidance": float, "video_steps": int, "seed": int}[axis]
    try:
        values = [None if v is None else cast(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{source}: grid.{axis} values must be {cast.__name__}s, got {values}") from None
    if len(set(values)) != len(values):
        raise ValueError(f"{source}: grid.{axis} repeats a value: {values}")
    if axis == "seed" and any(v is not None and v < 0 for v in values):
        raise ValueError(f"{source}: grid.seed values must be >= 0, got {values}")
    return values


def _int(mapping: Mapping, key: str, default: int, source: Path) -> int:
    value = _opt_int(mapping, key, default, source)
    if value is None:
        raise ValueError(f"{source}: {key} must be a positive integer")
    return value


def _opt_int(mapping: Mapping, key: str, default: int | None, source: Path) -> int | None:
    value = mapping.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{source}: {key} must be a positive integer, got {value!r}")
    return value


def _number(value: float) -> str:
    return f"{value:g}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "point"


def item_seed(seed: int, index: int) -> int:
    """The generation seed of item ``index`` at grid seed ``seed``: independent of how items are sharded."""
    import numpy as np

    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)
