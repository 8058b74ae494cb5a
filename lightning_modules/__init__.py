"""LightningModules: training / validation / test steps, optimisers and logging for each stage.

Each module delegates the maths to ``lavit``.
"""
