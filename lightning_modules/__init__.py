"""LightningModules: training / validation / test steps, optimisers and logging for each stage.

Each module delegates the maths to ``lavit``.
"""

from lightning_modules.motion_vqvae import MotionVQVAE

__all__ = ["MotionVQVAE"]
