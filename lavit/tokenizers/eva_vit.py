"""EVA-CLIP ViT-g/14: the frozen image encoder of the LaVIT keyframe tokenizer.

The official ``VideoLaVIT/models/modeling_visual_encoder.py::EVAVisionTransformer`` as ``build_eva_clip``
configures it (40 blocks, width 1408, 16 heads of 88, MLP 6144, q/v biases, LayerNorm eps 1e-6 computed
in float32, no rope, no rel-pos, no layer-scale), with its parameter names, shapes and order, so
``visual_tokenizer/eva_vitg_psz14.bin`` loads strictly. The tokenizer uses the output of the last block,
with no final norm and the CLS token dropped (:meth:`EVAVisionEncoder.patch_features`); ``norm`` and
``head`` exist only so the official file loads strictly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from lavit.config import PresetConfig
from lavit.modules.spatiotemporal import Attention, Float32LayerNorm, Mlp

# A [0, 1] image normalised with CLIP mean/std lies within [-1.80, 2.15] (lavit.video.keyframes). The bound
# is far looser so that it never rejects a usable input (resampling overshoot, standard-normal test images as
# in the parity files, max ~5 at 224 x 224) and still rejects [0, 255] pixels, normalised or not.
NORMALISED_LIMIT = 10.0


@dataclass(frozen=True)
class EVAVisionConfig(PresetConfig):
    """EVA-CLIP vision-transformer sizes. Defaults are EVA-CLIP ViT-g/14 ("eva-clip-g-14-x",
    1,012,588,928 parameters with the unused ``norm`` and ``head``).

    Args:
        image_size, patch_size: square input side (224) and patch side (14): 16 x 16 = 256 patches.
        in_channels: image channels (3).
        width, depth, num_heads: transformer width (1408), blocks (40), heads (16 of 88).
        mlp_ratio: MLP hidden size / width; the hidden size is ``int(width * mlp_ratio)`` (6144), as
            the official ``Block``.
        eps: LayerNorm epsilon (1e-6).
        head_dim: output size of the unused CLIP projection ``head`` (1024).

    Raises:
        ValueError: at construction, naming each inconsistent or non-positive argument.
    """

    kind: ClassVar[str] = "EVA vision encoder"

    image_size: int = 224
    patch_size: int = 14
    in_channels: int = 3
    width: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_ratio: float = 4.3637
    eps: float = 1e-6
    head_dim: int = 1024

    def __post_init__(self) -> None:
        self.require_positive("image_size", "patch_size", "in_channels", "width", "depth", "num_heads", "mlp_ratio",
                              "eps", "head_dim")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.mlp_hidden < 1:
            raise ValueError(f"width * mlp_ratio must be at least 1, got {self.width} * {self.mlp_ratio}")

    @property
    def mlp_hidden(self) -> int:
        """MLP hidden size (6144)."""
        return int(self.width * self.mlp_ratio)

    @property
    def grid(self) -> int:
        """Patches per side (16)."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per image (256); the encoder's sequence adds one CLS token."""
        return self.grid**2

    @classmethod
    def from_official(cls, values: Mapping[str, Any]) -> EVAVisionConfig:
        """A config from the official ``EVAVisionTransformer`` keyword arguments (a parity file's ``config``
        metadata: ``img_size``, ``embed_dim``, ``num_classes``, ...).

        Raises:
            ValueError: a setting this encoder does not implement (rope, subln, SwiGLU, layer-scale, ...).
        """
        unsupported = {k: values[k] for k in ("rope", "postnorm", "naiveswiglu", "subln", "xattn", "use_mean_pooling")
                       if values.get(k)}
        if values.get("init_values"):
            unsupported["init_values"] = values["init_values"]
        if values.get("qkv_bias") is False:
            unsupported["qkv_bias"] = False
        if unsupported:
            raise ValueError(f"official EVA settings not implemented here: {unsupported}")
        names = dict(img_size="image_size", patch_size="patch_size", in_chans="in_channels", embed_dim="width",
                     depth="depth", num_heads="num_heads", mlp_ratio="mlp_ratio", norm_eps="eps", num_classes="head_dim")
        return cls.from_dict({ours: values[theirs] for theirs, ours in names.items() if theirs in values})


EVA_VISION_CONFIGS: dict[str, dict[str, Any]] = {
    # EVA-CLIP ViT-g/14 as build_eva_clip() builds it (eva_vit_g_state_dict.tsv).
    "paper": {},
    # The official module of eva_vit_tiny_parity.safetensors (its "config" metadata): 2 blocks of width 64.
    "tiny": dict(image_size=56, width=64, depth=2, num_heads=4, head_dim=16),
}
EVAVisionConfig.presets = EVA_VISION_CONFIGS


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: a stride-``patch`` Conv2d (``proj``)."""

    def __init__(self, patch_size: int, in_channels: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H/p * W/p, width), raster order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class EVABlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1 x)``, then ``x + mlp(norm2 x)`` (the official ``Block`` with
    postnorm, layer-scale and drop-path off). LayerNorms run in float32 like the official ``LayerNorm``."""

    def __init__(self, width: int, num_heads: int, mlp_hidden: int, eps: float):
        super().__init__()
        self.norm1 = Float32LayerNorm(width, eps=eps)
        self.attn = Attention(width, num_heads)
        self.norm2 = Float32LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EVAVisionEncoder(nn.Module):
    """EVA-CLIP vision transformer, frozen (no parameter requires grad; eval mode).

    Attention is ``F.scaled_dot_product_attention`` on ``qkv = F.linear(x, qkv.weight, cat(q_bias, 0, v_bias))``
    (:class:`lavit.modules.spatiotemporal.Attention`). Runs under ``torch.autocast(dtype=torch.bfloat16)`` and
    with the module cast to bfloat16 (inputs are cast to the weights' dtype; LayerNorms compute in float32).

    Args:
        config: an :class:`EVAVisionConfig`, a preset name ("paper", "tiny") or a mapping; None: "paper".
    """

    def __init__(self, config: EVAVisionConfig | str | Mapping[str, Any] | None = None):
        super().__init__()
        config = EVAVisionConfig.coerce(config)
        self.config = config
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.width))
        self.patch_embed = PatchEmbed(config.patch_size, config.in_channels, config.width)
        self.blocks = nn.ModuleList(
            EVABlock(config.width, config.num_heads, config.mlp_hidden, config.eps) for _ in range(config.depth)
        )
        self.norm = Float32LayerNorm(config.width, eps=config.eps)  # unused by LaVIT, kept for strict loading
        self.head = nn.Linear(config.width, config.head_dim)  # unused by LaVIT, kept for strict loading
        self.reset_parameters()
        self.freeze()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation: truncated normal (std 0.02) for cls/pos and Linear weights, zero
        biases, attention and MLP output weights divided by sqrt(2 * layer), head scaled by 0.001."""
        if self.cls_token.is_meta:
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for layer, block in enumerate(self.blocks, start=1):
            block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
            block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
        self.head.weight.mul_(0.001)
        self.head.bias.mul_(0.001)

    def freeze(self) -> EVAVisionEncoder:
        """No parameter requires grad; eval mode (the official encoder is frozen). Returns self."""
        self.requires_grad_(False)
        return self.eval()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image: (3, 224, 224)."""
        c = self.config
        return (c.in_channels, c.image_size, c.image_size)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``images`` is a floating (B, 3, S, S) tensor of CLIP-normalised values.

        The value check is cheap (one reduction) and only rejects values no CLIP-normalised [0, 1] image
        reaches (|x| > 10, NaN, Inf), such as unnormalised [0, 255] pixels.
        """
        c, s, _ = self.input_shape
        expected = f"(B, {c}, {s}, {s})"
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"expected an image tensor of shape {expected}, got a {type(images).__name__}")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(f"expected images of shape {expected}, got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"expected floating-point CLIP-normalised images {expected}, got {images.dtype}")
        if images.is_meta or images.numel() == 0:
            return
        peak = float(images.detach().abs().amax())
        if not peak <= NORMALISED_LIMIT:
            raise ValueError(
                f"images do not look CLIP-normalised: max |value| is {peak:.4g} (CLIP-normalised [0, 1] images lie "
                f"within [-1.8, 2.2]); scale pixels to [0, 1] and normalise with lavit.video.keyframes CLIP_MEAN / "
                "CLIP_STD (lavit.video.keyframes.preprocess_keyframes does both)"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of every token: the output of the last block, no final norm (the official
        ``forward(x, return_all_features=True)``).

        Args:
            images: (B, 3, 224, 224) CLIP-normalised (:func:`lavit.video.keyframes.preprocess_keyframes`).

        Returns:
            (B, 1 + N, width), CLS first, then the N = 256 patches in raster order; the weights' dtype
            (float32 under autocast: the residual stream stays float32, as in the official module).

        Raises:
            ValueError: wrong shape or dtype, or values that are not CLIP-normalised.
        """
        self.check_images(images)
        x = self.patch_embed(images.to(self.patch_embed.proj.weight.dtype))
        # the residual stream takes the parameters' dtype: float32 under autocast, as the official cat + add
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x.to(self.cls_token.dtype)), dim=1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) CLIP-normalised -> (B, N, width) patch features (CLS dropped), what the
        keyframe tokenizer's selector and merger take."""
        return self.forward(images)[:, 1:]
