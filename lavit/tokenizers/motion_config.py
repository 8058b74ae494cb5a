"""``MotionTokenizerConfig``: every size and setting of the motion tokenizer, with named presets.

``MotionTokenizer(config)`` takes the whole config; ``MotionVQVAE(tokenizer=...)`` nests it whole (YAML
``model.init_args.tokenizer: {dim: 32, ...}`` or a preset name); checkpoints and exported weights carry it
(``to_dict``), so loaders read sizes instead of guessing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from lavit.config import PresetConfig
from lavit.tokenizers.quantizer import check_quantizer_settings

PAPER_STRIDES = ((1, 2, 2), (2, 1, 1), (2, 1, 1), (2, 2, 2))


@dataclass(frozen=True)
class MotionTokenizerConfig(PresetConfig):
    """Motion VQ-VAE sizes and quantiser settings. Defaults are the official module (docs/spec.md §2,
    158,476,322 parameters) with the quantiser's training extras off.

    Args:
        dim, num_heads, mlp_ratio: transformer width (512), heads (8 of 64), MLP ratio (4).
        stage_depths: blocks per stage in encoder and decoder ((3, 3, 3, 3)).
        strides: (t, h, w) stride of the conv after each encoder stage; the decoder upsamples by
            the same factors in reverse.
        num_frames, field_size: clip shape (24 frames of 20 x 36 motion vectors).
        in_channels: motion channels (2).
        codebook_size, codebook_dim: 1024 codes of 32 dimensions.
        decay, commitment_weight, kmeans_init, dead_code_steps, restart_buffer: see NormEMAQuantizer.
        quantizer_warmup_steps: NormEMAQuantizer ``warmup_steps`` (autoencoder phase before quantising).
        eps: LayerNorm epsilon.
        init_std: weight initialisation (0.02, official) or None for PyTorch's fan-in defaults
            (see ``lavit.tokenizers.motion_tokenizer.init_weights``).
        input_scale: motion is multiplied by this before the encoder and the decoder's output divided
            by it, so inputs and reconstructions stay in the caller's units (1.0 for the official
            weights). Like a VAE's scaling factor it is part of a trained tokenizer's config.

    Raises:
        ValueError: at construction, naming each inconsistent or non-positive argument.
    """

    kind: ClassVar[str] = "motion tokenizer"

    dim: int = 512
    num_heads: int = 8
    stage_depths: tuple[int, ...] = (3, 3, 3, 3)
    strides: tuple[tuple[int, int, int], ...] = PAPER_STRIDES
    num_frames: int = 24
    field_size: tuple[int, int] = (20, 36)
    in_channels: int = 2
    mlp_ratio: float = 4.0
    codebook_size: int = 1024
    codebook_dim: int = 32
    decay: float = 0.995
    commitment_weight: float = 0.25
    kmeans_init: bool = False
    dead_code_steps: int | None = None
    restart_buffer: int = 4096
    quantizer_warmup_steps: int = 0
    eps: float = 1e-5
    init_std: float | None = 0.02
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        # YAML and JSON give lists: store tuples, so configs compare and hash by value
        object.__setattr__(self, "stage_depths", tuple(int(d) for d in self.stage_depths))
        object.__setattr__(self, "strides", tuple(tuple(int(s) for s in stride) for stride in self.strides))
        object.__setattr__(self, "field_size", tuple(int(s) for s in self.field_size))
        self.require_positive("dim", "num_heads", "num_frames", "in_channels", "codebook_size", "codebook_dim", "restart_buffer",
                              "mlp_ratio", "eps", "input_scale")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if int(self.dim * self.mlp_ratio) < 1:
            raise ValueError(f"dim * mlp_ratio must be at least 1, got {self.dim} * {self.mlp_ratio}")
        if len(self.field_size) != 2 or min(self.field_size) < 1:
            raise ValueError(f"field_size must be two positive sizes (H, W), got {self.field_size}")
        if not self.stage_depths or min(self.stage_depths) < 1:
            raise ValueError(f"stage_depths must be one positive block count per stage, got {self.stage_depths}")
        if len(self.stage_depths) != len(self.strides):
            raise ValueError(f"stage_depths {self.stage_depths} and strides {self.strides} need one entry per stage")
        if any(len(s) != 3 or min(s) < 1 for s in self.strides):
            raise ValueError(f"strides must be positive (t, h, w) triples, got {self.strides}")
        grid = [self.num_frames, *self.field_size]
        for stride in self.strides:
            for axis, s in enumerate(stride):
                if grid[axis] % s:
                    raise ValueError(f"clip shape {(self.num_frames, *self.field_size)} is not divisible by the strides {self.strides}")
                grid[axis] //= s
        check_quantizer_settings(self)
        if self.quantizer_warmup_steps < 0:
            raise ValueError(f"quantizer_warmup_steps must be non-negative, got {self.quantizer_warmup_steps}")
        if self.init_std is not None and not self.init_std > 0:
            raise ValueError(f"init_std must be positive or None, got {self.init_std}")

    # ---- derived sizes ---------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one clip: (2, 24, 20, 36)."""
        return (self.in_channels, self.num_frames, *self.field_size)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(t, h, w) of the tokens: (3, 5, 9)."""
        grid = [self.num_frames, *self.field_size]
        for stride in self.strides:
            grid = [g // s for g, s in zip(grid, stride)]
        return tuple(grid)

    @property
    def num_tokens(self) -> int:
        """Tokens per clip (135)."""
        return math.prod(self.token_grid)


# Fields that change what a trained tokenizer computes; the rest only affect how it trains.
ARCHITECTURE_FIELDS = ("dim", "num_heads", "stage_depths", "strides", "num_frames", "field_size", "in_channels",
                       "mlp_ratio", "codebook_size", "codebook_dim", "eps", "input_scale")

MOTION_TOKENIZER_CONFIGS: dict[str, dict[str, Any]] = {
    # docs/spec.md §2 (configs/motion_vqvae/paper.yaml): the official architecture, trained with k-means
    # initialisation and dead-code restarts.
    "paper": dict(kmeans_init=True, dead_code_steps=200),
    # configs/motion_vqvae/demo.yaml: a 32-wide model on an 8 x 16 grid that learns on CPU in minutes
    # (fan-in init, inputs x 0.3 and an autoencoder warm-up; see the README's "Status").
    "demo": dict(dim=32, num_heads=2, stage_depths=(1, 1, 1, 1), field_size=(8, 16), codebook_size=256, codebook_dim=32,
                 decay=0.99, kmeans_init=True, dead_code_steps=50, quantizer_warmup_steps=300, init_std=None, input_scale=0.3),
    # configs/motion_vqvae/tiny.yaml: a few CPU steps in seconds (tests, debugging).
    "tiny": dict(dim=32, num_heads=2, stage_depths=(1, 1, 1, 1), codebook_size=64, codebook_dim=32, decay=0.9,
                 kmeans_init=True, dead_code_steps=10),
}
MotionTokenizerConfig.presets = MOTION_TOKENIZER_CONFIGS
