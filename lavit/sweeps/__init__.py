"""Benchmark evaluation sweeps (``lavit sweep -c configs/sweeps/*.yaml``): config and grid, prompt sets,
generators, result tables and plots. Plain Python; the Lightning parts (``predict`` generation, ``test``
evaluation) live in ``lightning_modules.sweep`` and ``datamodules.prompts``."""

from lavit.sweeps.config import GRID_AXES, GridPoint, SweepConfig, check_inputs, item_seed, load_sweep_config, sweep_config_from_dict
from lavit.sweeps.prompts import PromptItem, read_prompts

__all__ = ["GRID_AXES", "GridPoint", "PromptItem", "SweepConfig", "check_inputs", "item_seed", "load_sweep_config",
           "read_prompts", "sweep_config_from_dict"]
