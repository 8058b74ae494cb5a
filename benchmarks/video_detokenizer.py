"""Cost of the video detokenizer's motion routing: ``MotionConditionedUNet`` against stock diffusers, same weights.

Run (from the repository root, in the project's virtualenv)::

    python benchmarks/video_detokenizer.py                      # ~1 min on 2 CPU cores; adds the paper size on CUDA
    python benchmarks/video_detokenizer.py --configs tiny --repeats 1
    python benchmarks/video_detokenizer.py --paper --paper-config tiny --paper-size 128x64 --paper-frames 4 --paper-steps 2
                                                                # the CUDA-only section, shrunk, on any device

ALL NETWORKS ARE RANDOMLY INITIALISED (built after ``torch.manual_seed(0)``); only the cost is measured.

Variants (one ``VideoDetokenizerModel``; the two U-Nets hold the very same weights, loaded strictly):
  ours   ``MotionConditionedUNet``: ``encoder_hidden_states`` = the motion features ``(B, T, 256, C)``; each frame's
         spatial cross-attention reads its own 256 tokens, each location's temporal cross-attention the T features of
         its grid cell (keys: 256 spatially, T temporally).
  stock    diffusers ``UNetSpatioTemporalConditionModel`` with the same config, given frame 0's tokens ``(B, 256, C)``
           so the attention work is comparable: stock repeats them for every frame (spatial keys: 256, as ours) and
           broadcasts them to every location (temporal keys: 256, more than ours when T < 256).
  stock-T  the same stock U-Net given token 0 of every frame ``(B, T, C)``: temporal keys T (as ours), spatial keys
           T (fewer than ours). The two stock rows bracket ours; "vs stock-T" bounds what the routing itself costs.
Both use SDPA (``AttnProcessor2_0`` set explicitly). Before timing, both are run on motion features that are
constant over tokens and frames, where the two routings compute the same thing, and the script asserts equal
outputs (``--atol``): the comparison is between the same networks.

Rows ("overhead" = ours seconds / stock seconds - 1 of the same group; target <= 10%):
  forward   one U-Net call on ``(B, T, 2c + 2, h, w)`` in eval mode under ``torch.no_grad()``.
  sampling  ``VideoDetokenizerPipeline.generate`` (motion encoder, ``num_steps`` steps, each one U-Net call on the
            CFG batch [uncond; cond], ``load_scheduler()``: Euler/EDM with SVD's config), without VAE decoding on the CPU rows.
  CPU rows: configs ``tiny`` (the parity U-Net) and ``small`` (3 levels, 64-256 wide), B 1, T 8, latent 32 x 32,
            2 sampling steps, fp32, behind a tiny SVD-type VAE (factor 8).
  Paper rows (on CUDA, or with ``--paper``): the paper config (1,524,628,842 + 51,095,040 parameters) and SVD's
            VAE layout at 576x320 (latent 72 x 40), 24 frames, bf16 weights: forward, seconds per clip with 25 steps
            and CFG (VAE decoding in chunks of 8 included), and one training step (``VideoDetokenizerModel.loss``
            under bf16 autocast, fp32 weights, gradient checkpointing, AdamW on all parameters; samples/s). On
            CUDA the last column is ``torch.cuda.max_memory_allocated`` during the row. ``--paper-vae tiny`` swaps
            in the CPU rows' VAE (a smoke run of the paper path, as the test suite does).
Each measurement is warmed up once, then run ``--repeats`` (2) times (best run reported; ``--stat median``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass

from harness import SLOW_CALL_S, autocast, machine_line, measure, peak_memory, print_table

import torch  # noqa: E402
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel  # noqa: E402
from diffusers.models.attention_processor import AttnProcessor2_0  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from torch import nn  # noqa: E402

from lavit.detokenizer import (  # noqa: E402
    VideoDetokenizerConfig,
    VideoDetokenizerModel,
    VideoDetokenizerPipeline,
    load_scheduler,
    unet_config,
)

# stabilityai/stable-video-diffusion-img2vid-xt vae/config.json
SVD_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2,
               latent_channels=4, sample_size=768, scaling_factor=0.18215)
TINY_VAE = dict(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4, latent_channels=4)

_SMALL_UNET = {
    **unet_config("tiny"),
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    "block_out_channels": (64, 128, 256),
    "num_attention_heads": (2, 4, 8),
    "cross_attention_dim": 64,
}
CONFIGS = {
    "tiny": VideoDetokenizerConfig.from_name("tiny"),
    "small": VideoDetokenizerConfig(unet=_SMALL_UNET, motion_encoder=dict(dim=64, num_heads=2, depth=2, out_channels=64)),
    "paper": VideoDetokenizerConfig.from_name("paper"),
}


# ---------------------------------------------------------------------------------- the variants


class StockRouting(nn.Module):
    """Stock ``UNetSpatioTemporalConditionModel`` behind ``MotionConditionedUNet``'s call. ``tokens="frame0"``: it gets
    frame 0's ``(B, 256, C)`` tokens of the ``(B, T, 256, C)`` motion features; ``tokens="cell0"``: token 0 of every
    frame, ``(B, T, C)``."""

    def __init__(self, unet: UNetSpatioTemporalConditionModel, tokens: str):
        super().__init__()
        self.unet, self.tokens = unet, tokens
        self.config = unet.config

    def forward(self, sample, timestep, encoder_hidden_states, added_time_ids, return_dict=True):
        context = encoder_hidden_states[:, 0] if self.tokens == "frame0" else encoder_hidden_states[:, :, 0]
        return self.unet(sample, timestep, context, added_time_ids, return_dict=return_dict)


def stock_twin(model: VideoDetokenizerModel) -> UNetSpatioTemporalConditionModel:
    """Stock U-Net with the same config and the same weights (strict load), on the same device and dtype."""
    param = next(model.unet.parameters())
    with torch.device(param.device):
        stock = UNetSpatioTemporalConditionModel(**model.config.unet)
    stock.load_state_dict(model.unet.state_dict(), strict=True)
    stock.set_attn_processor(AttnProcessor2_0())
    return stock.to(param.dtype).eval()


@contextlib.contextmanager
def variant(s: "Setup", name: str):
    """Within the block, ``s.model.unet`` is the named variant ("ours" = unchanged)."""
    if name == "ours":
        yield
        return
    ours, model = s.model.unet, s.model
    model.unet = s.variants[name]
    try:
        yield
    finally:
        model.unet = ours


VARIANTS = ("ours", "stock", "stock-T")
BASELINES = {"stock": "frame0", "stock-T": "cell0"}


@dataclass
class Row:
    group: str
    config: str
    variant: str
    device: str
    dtype: str
    frames: int  # frames per call (B * T)
    batch: int = 1
    seconds: float | None = None
    peak_gib: float | None = None

    @property
    def frames_per_s(self) -> float | None:
        return self.frames / self.seconds if self.seconds else None


# ----------------------------------------------------------------------------------------- setup


@dataclass
class Setup:
    name: str
    model: VideoDetokenizerModel
    stock: UNetSpatioTemporalConditionModel
    pipe: VideoDetokenizerPipeline
    batch: int
    frames: int
    height: int  # pixels
    width: int
    steps: int
    dtype: torch.dtype
    build_s: float

    @property
    def variants(self) -> dict[str, nn.Module]:
        return {"ours": self.model.unet, **{name: StockRouting(self.stock, tokens) for name, tokens in BASELINES.items()}}


def build(name: str, device: torch.device, dtype: torch.dtype, vae_config: dict, batch: int, frames: int, height: int,
          width: int, steps: int) -> Setup:
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = VideoDetokenizerModel(CONFIGS[name])
        vae = AutoencoderKLTemporalDecoder(**vae_config)
    model.unet.set_attn_processor(AttnProcessor2_0())
    pipe = VideoDetokenizerPipeline(model, vae, load_scheduler()).to(device, dtype)
    stock = stock_twin(model)
    return Setup(name, model, stock, pipe, batch, frames, height, width, steps, dtype, time.perf_counter() - start)


def unet_inputs(s: Setup, seed: int, constant: bool = False):
    """(sample (B, T, 2c+2, h, w), timestep, motion features (B, T, 256, C), added_time_ids (B, 3))."""
    g = torch.Generator().manual_seed(seed)
    config = s.model.config
    factor = 2 ** (len(s.pipe.vae.config.block_out_channels) - 1)
    h, w = s.height // factor, s.width // factor
    device = next(s.model.parameters()).device
    sample = torch.randn(s.batch, s.frames, 2 * config.latent_channels + 2, h, w, generator=g)
    features = torch.randn(s.batch, s.frames, 256, s.model.unet.config.cross_attention_dim, generator=g)
    if constant:  # the same vector for every token and frame: both routings then compute the same thing
        features = features[:, :1, :1].expand_as(features).contiguous()
    t = torch.tensor(0.25 * 2.0)  # EDM c_noise at sigma = e^2
    ids = s.model.added_time_ids(s.batch)
    return [x.to(device, s.dtype) for x in (sample, t, features, ids)]


def clip_inputs(s: Setup, seed: int):
    g = torch.Generator().manual_seed(seed)
    keyframe = torch.randint(0, 256, (s.batch, s.height, s.width, 3), generator=g, dtype=torch.uint8)
    return keyframe, torch.randn(s.batch, 2, s.frames, 20, 36, generator=g) * 5


def check_equivalence(s: Setup, atol: float) -> str:
    sample, t, features, ids = unet_inputs(s, seed=99, constant=True)
    with torch.no_grad():
        out = {name: unet(sample, t, features, ids).sample.float() for name, unet in s.variants.items()}
    diff = max((out[name] - out["ours"]).abs().max().item() for name in BASELINES)
    assert diff <= atol, f"{s.name}: ours and stock differ by {diff:.3g} > {atol:g} on constant motion features"
    return f"ours == stock == stock-T on constant motion features (max |diff| {diff:.2e} <= {atol:g})"


# ----------------------------------------------------------------------------------------- rows


def forward_rows(s: Setup, args, device: torch.device) -> list[Row]:
    sample, t, features, ids = unet_inputs(s, args.seed)
    rows = []
    for name in VARIANTS:
        row = Row("forward", s.name, name, device.type, dtype_name(s.dtype), s.batch * s.frames)
        unet = s.variants[name]

        def call():
            with torch.no_grad():
                return unet(sample, t, features, ids).sample

        with peak_memory(device, row):
            row.seconds, _ = measure(call, args.repeats, args.stat, device)
        rows.append(row)
    return rows


def sampling_rows(s: Setup, args, device: torch.device, decode: bool) -> list[Row]:
    keyframe, motion = clip_inputs(s, args.seed)
    rows = []
    for name in VARIANTS:
        row = Row("sampling" + (" +decode" if decode else ""), s.name, name, device.type, dtype_name(s.dtype), s.batch * s.frames)

        def call():
            return s.pipe.generate(keyframe, motion, num_steps=s.steps, seed=0, output_type="uint8" if decode else "latent")

        with variant(s, name), peak_memory(device, row):
            row.seconds, _ = measure(call, args.repeats, args.stat, device, slow=SLOW_CALL_S)
        rows.append(row)
    return rows


def train_row(s: Setup, args, device: torch.device) -> Row:
    """One bf16-mixed training step of ``VideoDetokenizerModel.loss`` (fp32 weights, gradient checkpointing)."""
    model = s.model.float().train()
    model.unet.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(args.seed)
    factor = 2 ** (len(s.pipe.vae.config.block_out_channels) - 1)
    h, w = s.height // factor, s.width // factor
    c = model.config.latent_channels
    latents = torch.randn(s.batch, s.frames, c, h, w, generator=g).to(device)
    keyframe_latent = latents[:, 0].clone()
    motion = model.motion_condition(torch.randn(s.batch, 2, s.frames, 20, 36, generator=g).to(device), (h, w))
    row = Row("train step", s.name, "ours", device.type, "bf16-mixed", s.batch * s.frames, s.batch)

    def step():
        with autocast(device, True):
            loss = model.loss(latents, keyframe_latent, motion, generator=torch.Generator().manual_seed(0)).loss.mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    with peak_memory(device, row):
        row.seconds, _ = measure(step, args.repeats, args.stat, device)
    model.unet.disable_gradient_checkpointing()
    return row


# --------------------------------------------------------------------------------------- output


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def overheads(rows: list[Row]) -> dict[tuple, float]:
    """(group, config, device, dtype, baseline) -> ours seconds / baseline seconds - 1."""
    base = {(r.group, r.config, r.device, r.dtype, r.variant): r.seconds for r in rows if r.variant != "ours"}
    return {key: ours.seconds / base[key] - 1 for ours in rows if ours.variant == "ours" for name in BASELINES
            for key in [(ours.group, ours.config, ours.device, ours.dtype, name)] if key in base}


def print_rows(rows: list[Row], show_memory: bool) -> None:
    over = overheads(rows)
    headers = ["group", "config", "variant", "device", "dtype", "frames", "s/call", "frames/s", "vs stock", "vs stock-T"]
    headers += ["peak GiB"] if show_memory else []
    table = []
    for r in rows:
        cells = [r.group, r.config, r.variant, r.device, r.dtype, r.frames, f"{r.seconds:.4f}", f"{r.frames_per_s:.3g}"]
        for name in BASELINES:
            key = (r.group, r.config, r.device, r.dtype, name)
            cells.append(f"{100 * over[key]:+.1f}%" if r.variant == "ours" and key in over else "")
        if show_memory:
            cells.append(f"{r.peak_gib:.2f}" if r.peak_gib is not None else "-")
        table.append(cells)
    print_table(headers, table)


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (H, W)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


# ----------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,small", help="CPU comparison configs, comma-separated (default tiny,small; '' to skip)")
    parser.add_argument("--frames", type=int, default=8, help="frames T of the CPU rows (default 8)")
    parser.add_argument("--size", default="256x256", help="WxH pixels of the CPU rows (default 256x256: latent 32 x 32)")
    parser.add_argument("--steps", type=int, default=2, help="sampling steps of the CPU rows (default 2)")
    parser.add_argument("--paper", action=argparse.BooleanOptionalAction, default=None,
                        help="run the paper-size rows (default: only when CUDA is available)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="device of the paper rows")
    parser.add_argument("--paper-config", choices=tuple(CONFIGS), default="paper", help="config of the paper rows (default paper)")
    parser.add_argument("--paper-size", default="576x320", help="WxH of the paper rows (default 576x320)")
    parser.add_argument("--paper-frames", type=int, default=24, help="frames of the paper rows (default 24)")
    parser.add_argument("--paper-steps", type=int, default=25, help="sampling steps of the paper rows (default 25)")
    parser.add_argument("--paper-vae", choices=("svd", "tiny"), default="svd",
                        help="VAE layout of the paper rows (default svd; tiny: a smoke run of the paper path on CPU, where SVD's "
                             "VAE decodes 2 frames at 64x64 in bf16 in about 50 s)")
    parser.add_argument("--no-train", action="store_true", help="skip the paper training-step row")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row, after one warm-up (default 2)")
    parser.add_argument("--stat", choices=("best", "median"), default="best", help="which run to report (default best)")
    parser.add_argument("--atol", type=float, default=1e-4, help="tolerance of the ours == stock check (default 1e-4; bf16: x100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random inputs (default 1; the models always use 0)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.frames < 1 or args.steps < 1:
        parser.error("--repeats, --frames and --steps must be >= 1")
    configs = [c for c in args.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            parser.error(f"unknown config {c!r} in --configs; expected some of {sorted(CONFIGS)}")
    paper = torch.cuda.is_available() if args.paper is None else args.paper

    diffusers_logging.set_verbosity_error()  # "modules that should be kept in float32: []" on every .to(dtype)
    print(machine_line())
    rows: list[Row] = []
    cpu = torch.device("cpu")
    height, width = parse_size(args.size)
    for name in configs:
        s = build(name, cpu, torch.float32, TINY_VAE, 1, args.frames, height, width, args.steps)
        print(f"{name}: {sum(p.numel() for p in s.model.parameters()):,} parameters, built in {s.build_s:.1f} s; "
              f"B 1, T {args.frames}, {width}x{height} px, {args.steps} steps, fp32 -- {check_equivalence(s, args.atol)}")
        rows += forward_rows(s, args, cpu) + sampling_rows(s, args, cpu, decode=False)
        del s

    device = torch.device(args.device)
    if paper:
        height, width = parse_size(args.paper_size)
        vae = SVD_VAE if args.paper_vae == "svd" else TINY_VAE
        s = build(args.paper_config, device, torch.bfloat16, vae, 1, args.paper_frames, height, width, args.paper_steps)
        print(f"{args.paper_config} on {device}: {sum(p.numel() for p in s.model.parameters()):,} parameters, built in "
              f"{s.build_s:.1f} s; B 1, T {args.paper_frames}, {width}x{height} px, {args.paper_steps} steps + CFG, bf16 -- "
              f"{check_equivalence(s, 100 * args.atol)}")
        rows += forward_rows(s, args, device)
        paper_rows = sampling_rows(s, args, device, decode=True)
        rows += paper_rows
        if not args.no_train:
            s.stock = None  # free its memory before training
            rows.append(train_row(s, args, device))
        for r in paper_rows:
            print(f"{r.variant}: {r.seconds:.2f} s per {args.paper_frames}-frame clip ({args.paper_steps} steps, CFG, decode)")

    print()
    print_rows(rows, show_memory=any(r.device == "cuda" for r in rows))
    over = overheads(rows)
    stock = [v for key, v in over.items() if key[-1] == "stock"]
    if stock:
        worst = max(stock)
        print(f"\nrouting overhead, ours / stock - 1: worst {100 * worst:+.1f}% (target <= +10%): "
              f"{'OK' if worst <= 0.10 else 'OVER TARGET'}")
    bound = [v for key, v in over.items() if key[-1] == "stock-T"]
    if bound:
        print(f"ours / stock-T - 1 (stock-T attends spatially to T tokens instead of 256: a bound, no target): "
              f"worst {100 * max(bound):+.1f}%")
    for r in rows:
        if r.group == "train step":
            memory = f", peak {r.peak_gib:.2f} GiB" if r.peak_gib is not None else ""
            print(f"training step: {r.batch / r.seconds:.3g} samples/s ({r.frames // r.batch} frames each){memory}")
    if not paper:
        print("paper size (bf16, 576x320, 24 frames, 25 steps): skipped (no CUDA device; --paper runs it anyway)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
