"""``KeyframeDetokenizerPipeline``: keyframe code ids -> image, the official ``image_decoding`` sampler.

Official ``image_decoding`` / ``regenerate_noise`` (Video-LaVIT ``models/video_lavit_for_generation.py``), step by step:

1. code ids (LM ids minus 32002, [IMG] / [/IMG] dropped) -> codebook rows -> :class:`KeyframeFeatureDecoder` ->
   ``prompt_embeds`` ``(B, 256, 2048)`` and ``pooled`` ``(B, 1280)``;
2. classifier-free guidance batch ``[uncond; cond]`` with zero negatives (both embeddings), SDXL micro-conditioning
   ``time_ids = (h, w, 0, 0, h, w)`` for both halves; ``eps = eps_u + s (eps_c - eps_u)`` (s = 3.0);
3. ``latents = randn(B, c, h/8, w/8) * init_noise_sigma``; the folder's scheduler (DDIM or Euler-ancestral), 50 steps;
4. VAE decode of ``latents / scaling_factor`` (float32 when the VAE is float16 with ``force_upcast``).

Continuing from a previous frame (``init_image``; long videos, docs/spec.md section 4):

- ``"renoise"`` (official ``regenerate_noise``, SDEdit): ``z0 = VAE mode * scaling_factor``, ``x = add_noise(z0, n,
  timesteps[k])`` with ``k = int(inverse_rate * num_steps)``, then only ``timesteps[k:]`` are denoised. The official code
  multiplies ``x`` by ``init_noise_sigma`` afterwards; that is 1 for DDIM and wrong for Euler schedulers
  (``add_noise`` already returns ``z0 + sigma n``), so it is **not** done here. ``inverse_rate = 1`` (k = num_steps)
  adds no noise and runs no step: the output latent is ``z0`` exactly.
- ``"ddim_inversion"`` (the paper's Eq. 4): ``z0`` is inverted deterministically through the ``inversion_steps`` lowest
  timesteps of the DDIM schedule, conditioned on the same codes with the same guidance, then sampled by
  ``DDIMScheduler.step`` (eta 0) from there. Default ``inversion_steps = num_steps - k``: both continuations start
  denoising at ``timesteps[k]``. Each inverse step is the algebraic inverse of the DDIM step given the noise
  prediction; ``inversion_iterations`` fixed-point refinements re-evaluate that prediction at the inverted point, so
  that sampling returns ``z0`` up to rounding (0 = the classic inversion, prediction at the lower-noise input).

All random draws come from one CPU generator (``seed``), initial or re-noising noise only; they are made on the CPU
and moved, so a seeded run draws the same noise on a CPU and a GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from diffusers.utils import BaseOutput
from torch import nn
from tqdm.auto import tqdm

from lavit.detokenizer.autoencoder import _vae_dtype, encode_keyframes, vae_scale_factor
from lavit.detokenizer.components import (
    IMAGE_DETOKENIZER_FOLDER,
    LAVIT_REPO,
    MissingComponentError,
    load_image_scheduler,
    load_image_unet,
    load_image_vae,
)
from lavit.detokenizer.keyframe_decoder import OFFICIAL_SUBFOLDER, KeyframeFeatureDecoder, load_keyframe_decoder
from lavit.detokenizer.pipeline import OUTPUT_TYPES, spatial_multiple
from lavit.tokenizers.keyframe_config import KeyframeTokenizerConfig

__all__ = [
    "CONTINUATIONS",
    "KeyframeDetokenizerOutput",
    "KeyframeDetokenizerPipeline",
    "code_ids_from_lm",
    "load_keyframe_codebook",
    "load_keyframe_detokenizer",
]

CONTINUATIONS = ("renoise", "ddim_inversion")
NUM_TIME_IDS = 6  # SDXL: original (h, w), crop (top, left), target (h, w)
_LM = KeyframeTokenizerConfig  # LM id constants: llm_code_offset 32002, img_start 32000, img_end 32001
CODEBOOK_KEY = "quantize.embedding.weight"  # in visual_tokenizer/tokenizer_encoder.bin (visual_tokenizer_state_dict.tsv)
CODEBOOK_FILE = "tokenizer_encoder.bin"
DECODER_FILE = "highres_tokenizer_decoder.bin"


@dataclass
class KeyframeDetokenizerOutput(BaseOutput):
    """Result of :meth:`KeyframeDetokenizerPipeline.generate`.

    Attributes:
        images: ``(B, h, w, 3)`` uint8 (``output_type="uint8"``), ``(B, 3, h, w)`` float32 in about [-1, 1] (``"pt"``)
            or None (``"latent"``).
        latents: ``(B, c, h/8, w/8)`` final latents (VAE-scaled, before ``/ scaling_factor``), float32 (float64 when
            the pipeline is float64).
    """

    images: torch.Tensor | None
    latents: torch.Tensor


def _shape(x) -> str:
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def code_ids_from_lm(ids: torch.Tensor, offset: int = _LM.llm_code_offset, img_start: int = _LM.img_start,
                     img_end: int = _LM.img_end) -> torch.Tensor:
    """LM ids of one image (``[IMG] c + 32002 ... [/IMG]``) -> ``(n,)`` code ids: [IMG] / [/IMG] dropped, offset removed.

    Raises:
        ValueError: an id below the offset that is not [IMG] / [/IMG] (text or motion tokens do not belong here).
    """
    ids = ids[(ids != img_start) & (ids != img_end)]
    bad = ids < offset
    if bool(bad.any()):
        raise ValueError(f"LM id {int(ids[bad][0])} is neither [IMG] {img_start}, [/IMG] {img_end} nor a visual code "
                         f"(>= {offset})")
    return ids - offset


class KeyframeDetokenizerPipeline:
    """Sampler of the keyframe detokenizer: code-to-feature decoder + SDXL-shaped U-Net + ``AutoencoderKL``.

    Args:
        decoder: the :class:`KeyframeFeatureDecoder` (``lavit.detokenizer.load_keyframe_decoder``).
        codebook: ``(n_code, 32)`` codebook rows (the tokenizer's ``quantize.embedding.weight``).
        unet: a diffusers ``UNet2DConditionModel`` with ``cross_attention_dim`` = the decoder's prompt width (2048),
            ``addition_embed_type="text_time"`` and ``projection_class_embeddings_input_dim`` = pooled width (1280) +
            6 x ``addition_time_embed_dim``.
        vae: ``AutoencoderKL`` whose ``latent_channels`` equal the U-Net's ``in_channels``, or
            ``lavit.detokenizer.PixelSpaceAutoencoder`` (pixel space: 3 channels, scaling factor 1; the CPU demo).
        scheduler: ``DDIMScheduler`` or ``EulerAncestralDiscreteScheduler`` (``load_image_scheduler``).

    Raises:
        ValueError: components that do not fit together, each mismatch named.
    """

    def __init__(self, decoder: KeyframeFeatureDecoder, codebook: torch.Tensor, unet: nn.Module, vae: nn.Module, scheduler):
        dc, uc = decoder.config, unet.config
        weight = codebook.weight if isinstance(codebook, nn.Embedding) else codebook
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.shape[1] != dc.in_channels or not weight.is_floating_point():
            raise ValueError(f"codebook must be a float tensor (n_code, {dc.in_channels}), got {_shape(weight)}")
        problems = []
        if uc.cross_attention_dim != dc.prompt_dim:
            problems.append(f"cross_attention_dim {uc.cross_attention_dim} != the decoder's prompt width {dc.prompt_dim}")
        if uc.addition_embed_type != "text_time":
            problems.append(f"addition_embed_type {uc.addition_embed_type!r} (need 'text_time')")
        else:
            expected = dc.pooled_dim + NUM_TIME_IDS * uc.addition_time_embed_dim
            if uc.projection_class_embeddings_input_dim != expected:
                problems.append(f"projection_class_embeddings_input_dim {uc.projection_class_embeddings_input_dim} != "
                                f"pooled {dc.pooled_dim} + 6 x addition_time_embed_dim {uc.addition_time_embed_dim} = {expected}")
        if vae.config.latent_channels != uc.in_channels:
            problems.append(f"the VAE's latent_channels {vae.config.latent_channels} != the U-Net's in_channels {uc.in_channels}")
        if problems:
            raise ValueError("keyframe detokenizer components do not fit: " + "; ".join(problems))
        self.decoder = decoder.eval()
        self.codebook = weight.detach()
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.scheduler = scheduler
        self.image_size: tuple[int, int] | None = None  # native (h, w), set by load_keyframe_detokenizer_checkpoint
        self.keyframe_tokenizer = None  # images -> code ids, set by load_keyframe_detokenizer_checkpoint

    # ---- placement -----------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "KeyframeDetokenizerPipeline":
        """Move the decoder, U-Net and VAE to ``device`` / ``dtype``; the codebook only to ``device``. Returns ``self``."""
        moves = {k: v for k, v in dict(device=device, dtype=dtype).items() if v is not None}
        for module in (self.decoder, self.unet, self.vae):
            module.to(**moves)
        if device is not None:
            self.codebook = self.codebook.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def spatial_multiple(self) -> int:
        """h and w must be multiples of this: VAE factor (8) x 2 ** (U-Net down-sampling levels); 64 for SDXL."""
        return spatial_multiple(self.vae, self.unet.config)

    @property
    def latent_dtype(self) -> torch.dtype:
        """Latents and scheduler arithmetic: float32, or float64 for a float64 pipeline."""
        return torch.promote_types(torch.float32, self.dtype)

    # ---- inputs --------------------------------------------------------------------------------
    def code_ids(self, code_ids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-image code ids, LM ids (any id >= 32000: [IMG] / [/IMG] dropped, 32002 removed) converted.

        Raises:
            ValueError: not a non-empty list of 1-D integer tensors.
        """
        if isinstance(code_ids, torch.Tensor) or not isinstance(code_ids, Sequence) or not len(code_ids):
            raise ValueError(f"code_ids must be a non-empty list of (n_i,) integer tensors, one per image, got {_shape(code_ids)}")
        out = []
        for i, ids in enumerate(code_ids):
            if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise ValueError(f"code_ids[{i}] must be a 1-D integer tensor (n_i,), got {_shape(ids)}")
            ids = ids.long()
            if ids.numel() and int(ids.max()) >= _LM.img_start:
                try:
                    ids = code_ids_from_lm(ids)
                except ValueError as error:
                    raise ValueError(f"code_ids[{i}]: {error}") from None
            out.append(ids)
        return out

    def check_inputs(self, batch: int, size, num_steps: int, init_image, continuation: str, inverse_rate: float,
                     inversion_steps: int | None, output_type: str) -> tuple[int, int]:
        """Raise a ValueError naming what was expected; returns ``(h, w)``."""
        if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, int) for s in size)):
            raise ValueError(f"size must be (h, w) integers, got {size!r}")
        h, w = size
        multiple = self.spatial_multiple
        if h < 1 or w < 1 or h % multiple or w % multiple:
            raise ValueError(f"size (h, w) must be positive multiples of {multiple} (VAE factor {vae_scale_factor(self.vae)} "
                             f"x U-Net down-sampling), got {h}x{w}; e.g. 1024x1024 or 576x1024")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if init_image is None:
            return h, w
        if continuation not in CONTINUATIONS:
            raise ValueError(f"continuation must be one of {CONTINUATIONS}, got {continuation!r}")
        if not 0.0 <= inverse_rate <= 1.0:
            raise ValueError(f"inverse_rate must lie in [0, 1] (fraction of the schedule skipped), got {inverse_rate}")
        if inversion_steps is not None and not 0 <= inversion_steps <= num_steps:
            raise ValueError(f"inversion_steps must lie in 0..num_steps ({num_steps}), got {inversion_steps}")
        if not isinstance(init_image, torch.Tensor) or init_image.ndim != 4:
            raise ValueError(f"init_image must be uint8 (B, h, w, 3) or float (B, 3, h, w) in [-1, 1], got {_shape(init_image)}")
        if init_image.dtype == torch.uint8:
            expected = (batch, h, w, 3)
        elif init_image.is_floating_point():
            expected = (batch, 3, h, w)
            lo, hi = float(init_image.min()), float(init_image.max())
            if lo < -1.001 or hi > 1.001:
                raise ValueError(f"a float init_image must hold pixels in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")
        else:
            raise ValueError(f"init_image must be uint8 (B, h, w, 3) or float (B, 3, h, w) in [-1, 1], got {_shape(init_image)}")
        if tuple(init_image.shape) != expected:
            raise ValueError(f"init_image must be {expected} (B = {batch} images of code ids, size {h}x{w}), got {_shape(init_image)}")
        return h, w

    @staticmethod
    def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        return torch.Generator().manual_seed(int(seed)) if seed is not None else generator

    def _randn(self, shape, generator) -> torch.Tensor:
        noise_device = generator.device if generator is not None else "cpu"
        noise = torch.randn(shape, generator=generator, device=noise_device, dtype=torch.float32)
        return noise.to(self.device, self.latent_dtype)

    # ---- pieces --------------------------------------------------------------------------------
    def condition(self, code_ids: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Code ids -> ``(prompt_embeds (B, 256, 2048), pooled (B, 1280))``; ids outside the codebook or more than 256
        codes per image raise the decoder's ValueError."""
        return self.decoder.decode_ids(self.code_ids(code_ids), self.codebook)

    def time_ids(self, batch: int, size: tuple[int, int]) -> torch.Tensor:
        """SDXL micro-conditioning ``(batch, 6)`` = (h, w, 0, 0, h, w): original size, crop top-left, target size."""
        h, w = size
        return torch.tensor([[h, w, 0, 0, h, w]], device=self.device, dtype=self.dtype).expand(batch, -1)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, h, w, 3)`` or float ``(B, 3, h, w)`` in [-1, 1] -> ``(B, c, h/8, w/8)`` = VAE mode x scaling_factor."""
        pixels = image.permute(0, 3, 1, 2).float() / 127.5 - 1.0 if image.dtype == torch.uint8 else image
        pixels = pixels.to(self.device, self.latent_dtype)
        return encode_keyframes(self.vae, pixels) * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, c, h/8, w/8)`` -> ``(B, 3, h, w)`` float32 pixels in about [-1, 1] (``latents / scaling_factor``)."""
        vae = self.vae
        dtype = _vae_dtype(vae)  # float32 for the parameterless PixelSpaceAutoencoder
        upcast = dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        if upcast:
            vae.to(torch.float32)
        try:
            z = (latents / vae.config.scaling_factor).to(_vae_dtype(vae))
            return vae.decode(z).sample.to(torch.promote_types(torch.float32, z.dtype))
        finally:
            if upcast:
                vae.to(dtype)

    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, scheduler, cond: dict, guidance: float) -> torch.Tensor:
        """Guided model output at ``(latents, t)``: ``u + s (c - u)`` over the batch ``[uncond; cond]`` (zero negatives),
        or the conditional branch alone when ``guidance == 1``. ``cond``: see :meth:`_conditioning`."""
        scaled = scheduler.scale_model_input(latents, t)
        guided = guidance != 1.0
        sample = torch.cat([scaled, scaled]) if guided else scaled
        key = "guided" if guided else "cond"
        prompt, added = cond[key]
        out = self.unet(sample.to(self.dtype), t, encoder_hidden_states=prompt, added_cond_kwargs=added).sample
        out = out.to(self.latent_dtype)
        if not guided:
            return out
        uncond, conditional = out.chunk(2)
        return uncond + guidance * (conditional - uncond)

    def _conditioning(self, prompt: torch.Tensor, pooled: torch.Tensor, size) -> dict:
        b = prompt.shape[0]
        time_ids = self.time_ids(b, size)
        guided = (torch.cat([torch.zeros_like(prompt), prompt]),
                  dict(text_embeds=torch.cat([torch.zeros_like(pooled), pooled]), time_ids=torch.cat([time_ids, time_ids])))
        return dict(cond=(prompt, dict(text_embeds=pooled, time_ids=time_ids)), guided=guided)

    def ddim_scheduler(self):
        """The DDIM sampler of ``"ddim_inversion"``: the pipeline's scheduler if it is a DDIM without clipping or
        thresholding, else a ``DDIMScheduler`` built from its config with both off (clipping x0 is not invertible, so
        the inverted-then-sampled path never clips, whatever the fresh-sample path does)."""
        from diffusers import DDIMScheduler

        if isinstance(self.scheduler, DDIMScheduler) and not (self.scheduler.config.clip_sample or self.scheduler.config.thresholding):
            return self.scheduler
        return DDIMScheduler.from_config(self.scheduler.config, clip_sample=False, thresholding=False)

    @staticmethod
    def _alphas(scheduler, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_bar_t, alpha_bar_prev)`` exactly as ``DDIMScheduler.step`` uses them for the step from ``t`` (0-d
        float32 tensors on the CPU, so the inverse rounds its coefficients as the step does)."""
        prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        a_t = scheduler.alphas_cumprod[t]
        a_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
        return a_t, a_prev

    @staticmethod
    def _epsilon(scheduler, out: torch.Tensor, x: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
        """The noise a model output at ``(x, t)`` implies (DDIM's ``pred_epsilon``)."""
        kind = scheduler.config.prediction_type
        if kind == "epsilon":
            return out
        if kind == "v_prediction":
            return a_t ** 0.5 * out + (1 - a_t) ** 0.5 * x
        if kind == "sample":
            return (x - a_t ** 0.5 * out) / (1 - a_t) ** 0.5
        raise ValueError(f"prediction_type {kind!r} is not supported by ddim_inversion")

    def invert(self, latents: torch.Tensor, scheduler, steps: int, cond: dict, guidance: float, iterations: int = 0,
               progress: bool = False) -> torch.Tensor:
        """Eq. 4: deterministic DDIM inversion of clean ``latents`` ``(B, c, h', w')`` through the ``steps`` lowest
        timesteps of ``scheduler.timesteps`` (already set); returns latents at ``timesteps[len - steps]``.

        Each step inverts ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps``, ``x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)``
        for ``x_t`` given ``eps``; ``eps`` is predicted at ``(x_prev, t)`` and then ``iterations`` times at the current
        ``x_t`` (fixed point: DDIM sampling from the result returns ``x_prev``)."""
        timesteps = scheduler.timesteps
        x = latents
        for t in tqdm(list(reversed(timesteps[len(timesteps) - steps:])), desc="inverting", unit="step", disable=not progress):
            a_t, a_prev = self._alphas(scheduler, int(t))
            x_t = x
            for _ in range(iterations + 1):
                eps = self._epsilon(scheduler, self.predict_noise(x_t, t, scheduler, cond, guidance), x_t, a_t)
                x0 = (x - (1 - a_prev) ** 0.5 * eps) / a_prev ** 0.5
                x_t = a_t ** 0.5 * x0 + (1 - a_t) ** 0.5 * eps
            x = x_t
        return x

    # ---- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        code_ids: Sequence[torch.Tensor],
        size: tuple[int, int] = (1024, 1024),
        guidance: float = 3.0,
        num_steps: int = 50,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        init_image: torch.Tensor | None = None,
        continuation: str = "renoise",
        inverse_rate: float = 0.85,
        inversion_steps: int | None = None,
        inversion_iterations: int = 0,
        output_type: str = "uint8",
        progress: bool = False,
    ) -> KeyframeDetokenizerOutput:
        """Draw one image per entry of ``code_ids``.

        Args:
            code_ids: list of ``(n_i,)`` integer code ids in ``0..n_code-1`` (1 <= n_i <= 256), or LM ids of an image
                (``[IMG] 32000``, codes ``+ 32002``, ``[/IMG] 32001``; recognised by an id >= 32000).
            size: ``(h, w)``, multiples of :attr:`spatial_multiple` (64 for SDXL): 1024x1024 or 576x1024 officially.
            guidance: classifier-free guidance scale with zero negatives (official 3.0); 1.0 runs the conditional
                branch alone.
            num_steps: scheduler steps (official 50).
            seed: an int -> ``torch.Generator()`` on the CPU; or pass ``generator``; neither: the global RNG.
            init_image: a previous frame to continue from, uint8 ``(B, h, w, 3)`` or float ``(B, 3, h, w)`` in [-1, 1].
            continuation: ``"renoise"`` (official SDEdit) or ``"ddim_inversion"`` (Eq. 4); see the module docstring.
            inverse_rate: fraction of the schedule skipped, ``k = int(inverse_rate * num_steps)`` (official 0.85).
            inversion_steps: ``"ddim_inversion"`` steps (default ``num_steps - k``).
            inversion_iterations: fixed-point refinements per inverse step (0 = classic DDIM inversion).
            output_type: ``"uint8"`` -> ``(B, h, w, 3)`` uint8; ``"pt"`` -> ``(B, 3, h, w)`` float; ``"latent"``: no decode.
            progress: tqdm bars over the steps.

        Raises:
            ValueError: bad size (not a multiple), ids outside the codebook, more than 256 codes for an image, a
                malformed ``init_image`` or option, each naming what was expected.
        """
        # 1. check inputs, conditioning from the codes
        ids = self.code_ids(code_ids)
        batch = len(ids)
        h, w = self.check_inputs(batch, size, num_steps, init_image, continuation, inverse_rate, inversion_steps, output_type)
        generator = self._generator(seed, generator)
        prompt, pooled = self.decoder.decode_ids(ids, self.codebook.to(self.device))
        cond = self._conditioning(prompt.to(self.dtype), pooled.to(self.dtype), (h, w))
        factor = vae_scale_factor(self.vae)
        shape = (batch, self.unet.config.in_channels, h // factor, w // factor)

        # 2. timesteps and starting latents
        scheduler = self.ddim_scheduler() if init_image is not None and continuation == "ddim_inversion" else self.scheduler
        scheduler.set_timesteps(num_steps, device=self.device)
        start = 0
        if init_image is None:
            latents = self._randn(shape, generator) * scheduler.init_noise_sigma
        else:
            start = int(inverse_rate * num_steps)
            z0 = self.encode_image(init_image)
            if continuation == "renoise":
                if start < num_steps:
                    if hasattr(scheduler, "set_begin_index"):
                        scheduler.set_begin_index(start)
                    t = scheduler.timesteps[start : start + 1]
                    latents = scheduler.add_noise(z0, self._randn(shape, generator), t.repeat(batch))
                else:
                    latents = z0
            else:
                steps = num_steps - start if inversion_steps is None else inversion_steps
                start = num_steps - steps
                latents = self.invert(z0, scheduler, steps, cond, guidance, inversion_iterations, progress)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)

        # 3. denoising loop
        for t in tqdm(scheduler.timesteps[start:], desc="denoising", unit="step", disable=not progress):
            pred = self.predict_noise(latents, t, scheduler, cond, guidance)
            latents = scheduler.step(pred, t, latents, generator=generator).prev_sample

        # 4. decode
        if output_type == "latent":
            return KeyframeDetokenizerOutput(images=None, latents=latents)
        image = self.decode_latents(latents)
        if output_type == "pt":
            return KeyframeDetokenizerOutput(images=image, latents=latents)
        uint8 = (((image.float() + 1) / 2).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        return KeyframeDetokenizerOutput(images=uint8.contiguous(), latents=latents)

    __call__ = generate


# ---- loading --------------------------------------------------------------------------------------
def _where(name: str) -> str:
    return f"https://huggingface.co/{LAVIT_REPO} (file {name})"


def _official_path(root: Path | None, explicit, subpath: str, what: str) -> Path:
    """``explicit`` (a file or a folder holding ``subpath``'s name) or ``root/subpath``; MissingComponentError naming
    the path and rain1011/Video-LaVIT-v1 when it is not there."""
    name = Path(subpath).name
    if explicit is None and root is None:
        raise MissingComponentError(subpath, f"{what} (no source folder and no explicit path given)", _where(subpath))
    path = Path(explicit).expanduser() if explicit is not None else root / subpath
    if path.is_dir():
        path = path / name if (path / name).is_file() else path / OFFICIAL_SUBFOLDER / name
    if not path.is_file():
        raise MissingComponentError(path, what, _where(subpath))
    return path


def load_keyframe_codebook(path: str | os.PathLike[str]) -> torch.Tensor:
    """The ``(16384, 32)`` codebook (``quantize.embedding.weight``, any prefix) of ``tokenizer_encoder.bin``, a
    safetensors file or a checkpoint; read with ``weights_only=True``.

    Raises:
        FileNotFoundError / lavit.weights.WeightsError: a missing, corrupt or unsafe file.
        ValueError: no codebook key in the file, or a codebook that is not a finite 2-D float tensor.
    """
    from lavit.weights import check_finite, read_state_dict

    state = read_state_dict(path, finite=False)
    keys = [k for k in state if k == CODEBOOK_KEY or k.endswith("." + CODEBOOK_KEY)]
    if not keys:
        raise ValueError(f"{os.fspath(path)!r}: no {CODEBOOK_KEY!r} (the keyframe tokenizer's codebook) among its "
                         f"{len(state)} tensors")
    weight = state[min(keys, key=len)]
    if weight.ndim != 2 or not weight.is_floating_point():
        raise ValueError(f"{os.fspath(path)!r}: {min(keys, key=len)} must be a float (n_code, dim) tensor, got {_shape(weight)}")
    check_finite({CODEBOOK_KEY: weight}, path)
    return weight.float()


def load_keyframe_detokenizer(
    source: str | os.PathLike[str] | None = None,
    *,
    decoder: str | os.PathLike[str] | Mapping[str, torch.Tensor] | KeyframeFeatureDecoder | None = None,
    codebook: str | os.PathLike[str] | torch.Tensor | None = None,
    unet: str | os.PathLike[str] | nn.Module | None = None,
    vae: str | os.PathLike[str] | nn.Module | None = None,
    scheduler: Any = None,
    decoder_config: Any = "paper",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    keyframe_tokenizer: str | os.PathLike[str] | None = None,
) -> KeyframeDetokenizerPipeline:
    """A :class:`KeyframeDetokenizerPipeline` from a rain1011/Video-LaVIT-v1 root and / or explicit parts, or from a
    ``KeyframeDetokenizer`` training checkpoint; nothing downloads (diffusers ``local_files_only``).

    Args:
        source: a ``KeyframeDetokenizer`` checkpoint file (``.ckpt``: see
            :func:`lavit.detokenizer.keyframe_checkpoint.load_keyframe_detokenizer_checkpoint`; only ``vae``, ``device``
            and ``dtype`` apply, and ``keyframe_tokenizer`` replaces its stored tokenizer path), or the Video-LaVIT root:
            ``visual_tokenizer/highres_tokenizer_decoder.bin`` (decoder),
            ``visual_tokenizer/tokenizer_encoder.bin`` (codebook ``quantize.embedding.weight``),
            ``image_detokenizer/{unet,vae,scheduler}``.
        decoder, codebook, unet, vae, scheduler: explicit paths (or built objects / tensors) that replace the
            root's; ``scheduler`` a folder or a scheduler object.
        decoder_config: the decoder's config (preset name, mapping or ``KeyframeDecoderConfig``; default "paper").
        device, dtype: passed to :meth:`KeyframeDetokenizerPipeline.to`.
        keyframe_tokenizer: with a checkpoint ``source``: the keyframe tokenizer checkpoint to use instead of the
            stored path.

    Raises:
        MissingComponentError: each missing folder or file named with its path and rain1011/Video-LaVIT-v1.
        lavit.weights.WeightsError / WeightsMismatchError, ValueError: unusable files or parts that do not fit.
    """
    if source is not None and (Path(source).suffix == ".ckpt" or Path(source).expanduser().is_file()):
        from lavit.detokenizer.keyframe_checkpoint import load_keyframe_detokenizer_checkpoint

        return load_keyframe_detokenizer_checkpoint(source, keyframe_tokenizer=keyframe_tokenizer, vae=vae, device=device, dtype=dtype)
    root = None if source is None else Path(source).expanduser()
    if root is not None and not root.is_dir():
        raise MissingComponentError(root, "Video-LaVIT root folder (visual_tokenizer/, image_detokenizer/)", _where("/"))

    def part(given, subfolder: str):
        if given is None and root is None:
            raise MissingComponentError(f"{IMAGE_DETOKENIZER_FOLDER}/{subfolder}", f"keyframe detokenizer {subfolder} "
                                        "(no source folder and no explicit path given)", _where(f"{IMAGE_DETOKENIZER_FOLDER}/{subfolder}"))
        return root if given is None else given

    if not isinstance(decoder, KeyframeFeatureDecoder):
        if not isinstance(decoder, Mapping):
            decoder = _official_path(root, decoder, f"{OFFICIAL_SUBFOLDER}/{DECODER_FILE}", "keyframe decoder weights")
        decoder = load_keyframe_decoder(decoder, decoder_config)
    if not isinstance(codebook, torch.Tensor):
        codebook = load_keyframe_codebook(
            _official_path(root, codebook, f"{OFFICIAL_SUBFOLDER}/{CODEBOOK_FILE}", "keyframe tokenizer (codebook) weights"))
    unet = unet if isinstance(unet, nn.Module) else load_image_unet(part(unet, "unet"))
    vae = vae if isinstance(vae, nn.Module) else load_image_vae(part(vae, "vae"))
    if scheduler is None or isinstance(scheduler, (str, os.PathLike)):
        scheduler = load_image_scheduler(part(scheduler, "scheduler"))
    return KeyframeDetokenizerPipeline(decoder, codebook, unet, vae, scheduler).to(device, dtype)
