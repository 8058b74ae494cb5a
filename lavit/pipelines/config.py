"""``PipelineConfig``: one YAML file naming every checkpoint of the generation pipelines and their settings.

YAML top level (``configs/pipelines/demo.yaml``, ``paper.yaml``)::

    checkpoints:  {lm, text_tokenizer, motion_tokenizer, keyframe_tokenizer, keyframe_detokenizer, video_detokenizer,
                   vae (optional), scheduler (optional)}      # paths, relative to the working directory
    generation:   {keyframe_guidance, motion_guidance, ...}   # GenerationSettings fields
    keyframe_decoder_config: paper                            # the keyframe detokenizer's code-to-feature preset
    device: cpu
    dtype: float32

``${oc.env:LAVIT_WEIGHTS_DIR}`` style interpolations are resolved by OmegaConf when the file is read. Unknown keys
are a ``ValueError`` naming the key and the allowed ones; :meth:`PipelineConfig.check` names the first checkpoint
that is not on disk (``MissingComponentError``, a ``FileNotFoundError``) before anything heavy loads.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from lavit.detokenizer.components import MissingComponentError

CHAININGS = ("renoise", "ddim_inversion", "none")
REQUIRED_CHECKPOINTS = ("lm", "text_tokenizer", "motion_tokenizer", "keyframe_tokenizer", "keyframe_detokenizer",
                        "video_detokenizer")
OPTIONAL_CHECKPOINTS = ("vae", "scheduler")
# which stage needs which checkpoint: a pipeline checks only its own
STAGE_CHECKPOINTS = {
    "text_to_video": ("lm", "text_tokenizer", "motion_tokenizer", "keyframe_detokenizer", "video_detokenizer"),
    "image_to_video": ("lm", "text_tokenizer", "motion_tokenizer", "keyframe_tokenizer", "keyframe_detokenizer",
                       "video_detokenizer"),
    "text_to_image": ("lm", "text_tokenizer", "keyframe_detokenizer"),
    "reconstruction": ("motion_tokenizer", "keyframe_tokenizer", "keyframe_detokenizer", "video_detokenizer"),
    "video_qa": ("lm", "text_tokenizer", "motion_tokenizer", "keyframe_tokenizer"),
}
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}
WHERE = {
    "lm": "the multimodal LM: `make demo-lm` (outputs/multimodal_lm_demo/checkpoints/last.ckpt) or language_model/ of "
          "https://huggingface.co/rain1011/Video-LaVIT-v1",
    "text_tokenizer": "the LM's text tokenizer folder: written by `make demo-lm` (outputs/demo_data_lm/text_tokenizer) or "
                      "Llama-2's from https://huggingface.co/meta-llama/Llama-2-7b-hf",
    "motion_tokenizer": "`make demo` (outputs/motion_vqvae_demo/checkpoints/last.ckpt) or motion_tokenizer/ of "
                        "https://huggingface.co/rain1011/Video-LaVIT-v1",
    "keyframe_tokenizer": "`lightning fit -c configs/keyframe_tokenizer/demo.yaml` or the Video-LaVIT-v1 root "
                          "(visual_tokenizer/tokenizer_encoder.bin)",
    "keyframe_detokenizer": "`make demo-keyframe-detokenizer` or the Video-LaVIT-v1 root (visual_tokenizer/, "
                            "image_detokenizer/)",
    "video_detokenizer": "`lightning fit -c configs/video_detokenizer/demo.yaml` or video_detokenizer/ of "
                         "https://huggingface.co/rain1011/Video-LaVIT-v1",
    "vae": "the SVD VAE folder (vae/) of the Video-LaVIT-v1 root",
    "scheduler": "a diffusers scheduler folder",
}


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling of every stage (defaults: the official text-to-video settings, SPEC sections 3-5).

    LM: ``keyframe_guidance`` / ``motion_guidance`` (4 / 7), ``top_k``, ``top_p``, ``temperature`` (keyframe sampling),
    ``motion_greedy`` (official: greedy motion), ``min_keyframe_tokens`` / ``max_keyframe_tokens``, ``add_bos`` (prompt
    starts with bos: the demo LM's training prompts do; the official prompt does not). Keyframe detokenizer:
    ``keyframe_steps`` (50), ``keyframe_cfg`` (3), ``keyframe_size`` (H, W; None = the detokenizer's native size
    when its checkpoint records one, else the official 576 x 1024). Video detokenizer:
    ``video_steps`` (25), ``min_guidance`` / ``max_guidance`` (1 -> 4), ``video_size`` (H, W; None = the checkpoint's
    training size, else 320 x 576). Long videos: ``chaining``, ``inverse_rate`` (0.85). Output ``fps`` (6).
    Understanding: ``max_answer_tokens``; ``understanding_keyframes``: ``"features"`` (official: continuous
    ``vit_proj`` features of the kept patches, as wide as the LM) or ``"codes"`` (the keyframe code ids as tokens:
    the all-discrete input, for an LM such as the demo's that only ever saw codes).
    """

    keyframe_guidance: float = 4.0
    motion_guidance: float = 7.0
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 1.0
    motion_greedy: bool = True
    min_keyframe_tokens: int = 20
    max_keyframe_tokens: int = 500
    add_bos: bool = False
    keyframe_steps: int = 50
    keyframe_cfg: float = 3.0
    keyframe_size: tuple[int, int] | None = None
    video_steps: int = 25
    min_guidance: float = 1.0
    max_guidance: float = 4.0
    video_size: tuple[int, int] | None = None
    chaining: str = "renoise"
    inverse_rate: float = 0.85
    fps: float = 6.0
    max_answer_tokens: int = 128
    understanding_keyframes: str = "features"

    def __post_init__(self):
        if self.understanding_keyframes not in ("features", "codes"):
            raise ValueError(f"generation.understanding_keyframes must be 'features' or 'codes', got {self.understanding_keyframes!r}")
        if self.chaining not in CHAININGS:
            raise ValueError(f"generation.chaining must be one of {CHAININGS}, got {self.chaining!r}")
        for name in ("keyframe_steps", "video_steps", "min_keyframe_tokens", "max_keyframe_tokens", "max_answer_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"generation.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_keyframe_tokens > self.max_keyframe_tokens:
            raise ValueError(f"generation.min_keyframe_tokens {self.min_keyframe_tokens} > max_keyframe_tokens "
                             f"{self.max_keyframe_tokens}")
        if not 0.0 <= self.inverse_rate <= 1.0:
            raise ValueError(f"generation.inverse_rate must lie in [0, 1], got {self.inverse_rate}")
        if not self.fps > 0:
            raise ValueError(f"generation.fps must be > 0, got {self.fps}")
        for name in ("keyframe_size", "video_size"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 2 or min(int(v) for v in value) < 1:
                    raise ValueError(f"generation.{name} must be [H, W] positive integers, got {list(value)}")
                object.__setattr__(self, name, (int(value[0]), int(value[1])))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "GenerationSettings":
        _check_keys(values, [f.name for f in fields(cls)], "generation")
        return cls(**values)

    def replace(self, **overrides: Any) -> "GenerationSettings":
        """A copy with ``overrides`` (unknown names -> ValueError naming the allowed ones; None values ignored)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        _check_keys(overrides, [f.name for f in fields(self)], "generation override")
        return replace(self, **overrides)


def _check_keys(values: Mapping[str, Any], allowed, where: str) -> None:
    unknown = [k for k in values if k not in allowed]
    if unknown:
        raise ValueError(f"unknown {where} key {unknown[0]!r}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class PipelineConfig:
    """Checkpoint paths + generation settings of the pipelines (see the module docstring).

    Attributes:
        checkpoints: name -> path (``REQUIRED_CHECKPOINTS`` + optional ``vae``, ``scheduler``); a missing name is
            only an error for the pipelines that need it (:data:`STAGE_CHECKPOINTS`).
        generation: :class:`GenerationSettings`.
        keyframe_decoder_config: the keyframe detokenizer's code-to-feature decoder preset (``"paper"``, ``"tiny"``) or
            its fields.
        device, dtype: where and in what precision the components run (``"float32"``, ``"bf16"``, ...).
        source: the file this config was read from (None for mappings).
    """

    checkpoints: dict[str, str | None] = field(default_factory=dict)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    keyframe_decoder_config: Any = "paper"
    device: str = "cpu"
    dtype: str = "float32"
    source: str | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | None = None) -> "PipelineConfig":
        """Build from a mapping with the YAML's top-level keys; unknown keys -> ValueError naming the allowed ones."""
        where = f" in {source}" if source else ""
        if not isinstance(values, Mapping):
            raise ValueError(f"a pipeline config must be a mapping{where}, got {type(values).__name__}")
        _check_keys(values, ("checkpoints", "generation", "keyframe_decoder_config", "device", "dtype"), f"pipeline config{where}")
        checkpoints = dict(values.get("checkpoints") or {})
        _check_keys(checkpoints, REQUIRED_CHECKPOINTS + OPTIONAL_CHECKPOINTS, f"checkpoints{where}")
        dtype = str(values.get("dtype", "float32"))
        if dtype not in DTYPES:
            raise ValueError(f"dtype{where} must be one of {', '.join(DTYPES)}, got {dtype!r}")
        decoder = values.get("keyframe_decoder_config", "paper")
        return cls(checkpoints={k: None if v is None else str(v) for k, v in checkpoints.items()},
                   generation=GenerationSettings.from_dict(dict(values.get("generation") or {})),
                   keyframe_decoder_config=dict(decoder) if isinstance(decoder, Mapping) else decoder,
                   device=str(values.get("device", "cpu")), dtype=dtype, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "PipelineConfig":
        """Read a YAML file (OmegaConf: interpolations such as ``${oc.env:LAVIT_WEIGHTS_DIR}`` are resolved).

        Raises:
            FileNotFoundError: no such file. ValueError: not YAML, not a mapping, unknown keys, bad values.
        """
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pipeline config not found: {path} (see configs/pipelines/demo.yaml)")
        try:
            values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        except (OmegaConfBaseException, ValueError) as err:  # YAML syntax, unset ${oc.env:...}
            raise ValueError(f"{path}: {' '.join(str(err).split())}") from None
        return cls.from_dict(values or {}, source=str(path))

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def path(self, name: str) -> Path | None:
        value = self.checkpoints.get(name)
        return None if value in (None, "") else Path(value).expanduser()

    def check(self, names: tuple[str, ...] = REQUIRED_CHECKPOINTS) -> "PipelineConfig":
        """Raise ``MissingComponentError`` (a FileNotFoundError) naming the first of ``names`` (and the optional ones
        that are set) that is unset or not on disk; nothing is loaded. -> self."""
        where = f" (config {self.source})" if self.source else ""
        for name in (*names, *(n for n in OPTIONAL_CHECKPOINTS if self.path(n) is not None)):
            path = self.path(name)
            if path is None:
                raise MissingComponentError(f"checkpoints.{name}", f"checkpoint {name!r}: not set{where}", WHERE[name])
            if not path.exists():
                raise MissingComponentError(path, f"checkpoint {name!r}{where}", WHERE[name])
        return self

    def with_generation(self, **overrides: Any) -> "PipelineConfig":
        return replace(self, generation=self.generation.replace(**overrides))

    def to_dict(self) -> dict[str, Any]:
        generation = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.generation).items()}
        return {"checkpoints": dict(self.checkpoints), "generation": generation,
                "keyframe_decoder_config": self.keyframe_decoder_config, "device": self.device, "dtype": self.dtype}
