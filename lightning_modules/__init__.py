"""LightningModules: training / validation / test steps, optimisers and logging for each stage.

Each module delegates the maths to ``lavit``.
"""

from lightning_modules.motion_vqvae import MotionVQVAE
from lightning_modules.video_evaluator import VideoEvaluator

__all__ = ["MotionVQVAE", "VideoEvaluator"]
