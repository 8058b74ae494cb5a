"""LightningModules: training / validation / test steps, optimisers and logging for each stage.

Each module delegates the maths to ``lavit``. The classes load lazily (PEP 562), so that the ``lavit``
console script, whose entry point lives in ``lightning_modules.cli``, starts its pipeline commands
without importing Lightning.
"""

import importlib

_CLASSES = {"MotionVQVAE": "lightning_modules.motion_vqvae", "VideoEvaluator": "lightning_modules.video_evaluator",
            "VideoDetokenizer": "lightning_modules.video_detokenizer", "KeyframeTokenizer": "lightning_modules.keyframe_tokenizer",
            "KeyframeDetokenizer": "lightning_modules.keyframe_detokenizer",
            "MultimodalLM": "lightning_modules.multimodal_lm", "GenerationWriter": "lightning_modules.multimodal_lm"}

__all__ = sorted(_CLASSES)


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")


def import_all() -> None:
    """Import every LightningModule (what makes them resolvable by short name in ``class_path``)."""
    for module in _CLASSES.values():
        importlib.import_module(module)
