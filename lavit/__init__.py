"""Video-LaVIT in plain PyTorch: compressed-video decomposition, tokenizers, detokenizers, LM.

Nothing in this package imports Lightning; the training loops live in ``lightning_modules``.
"""

__version__ = "0.1.0"
