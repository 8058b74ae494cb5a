"""Throughput of the motion tokenizer: our SDPA attention against a naive attention, same weights.

Run (from the repository root, in the project's virtualenv)::

    python benchmarks/motion_tokenizer.py                         # paper size, cuda if available else cpu
    python benchmarks/motion_tokenizer.py --config tiny           # quick smoke run (seconds on a CPU)
    python benchmarks/motion_tokenizer.py --device cpu --train-cpu --config tiny
    python benchmarks/motion_tokenizer.py --batch 16 --repeats 20 --stat median

The model is ``lavit.tokenizers.MotionTokenizer`` built after ``torch.manual_seed(0)`` (``--config
paper``: dim 512, 8 heads, stage_depths (3, 3, 3, 3), 158,476,322 parameters; ``--config tiny``: dim 64,
4 heads, stage_depths (1, 1, 1, 1)). The input is ``torch.randn(B, 2, 24, 20, 36)`` from a generator
seeded with ``--seed``. Both variants run the very same module and parameters; only
``Attention.forward`` differs:

  sdpa   the library as is: ``F.scaled_dot_product_attention(q, k, v)`` (PyTorch picks the kernel:
         flash / memory-efficient on CUDA, the fused flash kernel on CPU).
  naive  written here: ``softmax((q * head_dim**-0.5) @ k.transpose(-2, -1)) @ v``, materialising
         the (B, heads, N, N) attention matrix; swapped in by temporarily replacing
         ``Attention.forward`` on the class (restored on exit).

Before timing, the eval-mode forward (encode + decode) of both variants is run on the benchmark
input and the script asserts identical tokens and reconstructions within ``--atol`` (1e-4), so
the comparison is between equal computations. That call is also the warm-up of the forward rows.

Rows (each a group; "vs naive" is clips/s over the naive row of the same group, same run):
  forward        ``model.tokenize(x)`` (encoder + quantiser) in eval mode under
                 ``torch.inference_mode()``, float32. On CUDA a second group runs it under
                 ``torch.autocast("cuda", dtype=torch.bfloat16)`` ("bf16-mixed").
  train          one optimisation step in train mode: forward, MSE reconstruction loss + quantiser
                 commitment loss, backward, ``AdamW(lr=1e-4)`` step. On CUDA under bf16 autocast
                 (skipped without a CUDA device); fp32 on CPU only with ``--train-cpu``. Each variant
                 trains its own deep copy of the same initial model; the first step (optimiser state
                 allocation) is the warm-up.

Each measurement is warmed up once, then run ``--repeats`` times (``time.perf_counter``, CUDA
synchronised; a call shorter than 0.25 s is looped inside each run); the best run is reported
(``--stat median`` for the median). Defaults: on CUDA batch 8 and 10 repeats; on CPU batch 2 and
5 repeats for ``tiny``, batch 1 and 2 repeats for ``paper`` (a paper-size clip is ~1 TFLOP).
On CUDA the last column is the peak GPU memory allocated during the row.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from dataclasses import dataclass

from harness import SLOW_CALL_S, autocast, machine_line, measure, peak_memory, print_table, ratio

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lavit.modules.spatiotemporal import Attention  # noqa: E402
from lavit.tokenizers.motion_tokenizer import MotionTokenizer, MotionTokenizerConfig  # noqa: E402

CONFIGS = {
    "paper": dict(dim=512, num_heads=8, stage_depths=(3, 3, 3, 3)),
    "tiny": dict(dim=64, num_heads=4, stage_depths=(1, 1, 1, 1)),
}
CLIP_SHAPE = (2, 24, 20, 36)


# ------------------------------------------------------------------------------ the two variants


def naive_attention_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """Same maths and parameters as ``Attention.forward``, with an explicit attention matrix."""
    b, n, c = x.shape
    head_dim = c // self.num_heads
    bias = None
    if self.q_bias is not None:
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
    qkv = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.num_heads, head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
    attn = (q * head_dim**-0.5) @ k.transpose(-2, -1)
    attn = attn.softmax(dim=-1)
    out = attn @ v
    return self.proj(out.transpose(1, 2).reshape(b, n, c))


@contextlib.contextmanager
def attention_variant(name: str):
    """Within the block, every ``Attention`` computes with the named variant ("sdpa" = unchanged)."""
    if name == "sdpa":
        yield
        return
    original = Attention.__dict__["forward"]
    Attention.forward = naive_attention_forward
    try:
        yield
    finally:
        Attention.forward = original


VARIANTS = ("sdpa", "naive")


@dataclass
class Row:
    group: str
    variant: str
    device: str
    dtype: str
    batch: int
    seconds: float | None = None
    peak_gib: float | None = None
    note: str = ""

    @property
    def clips_per_s(self) -> float | None:
        return self.batch / self.seconds if self.seconds else None


def check_equivalence(model: MotionTokenizer, x: torch.Tensor, atol: float) -> str:
    """Eval-mode encode + decode with both variants; assert equal tokens and close reconstructions."""
    out = {}
    for name in VARIANTS:
        with attention_variant(name):
            q = model.encode(x)
            out[name] = (q.indices.reshape(x.shape[0], -1), model.decode(q.quantized))
    (tok_s, rec_s), (tok_n, rec_n) = out["sdpa"], out["naive"]
    differing = int((tok_s != tok_n).sum())
    assert differing == 0, f"sdpa and naive attention give different tokens ({differing} of {tok_s.numel()})"
    max_diff = (rec_s - rec_n).abs().max().item()
    assert max_diff <= atol, f"sdpa and naive reconstructions differ by {max_diff:.3g} > {atol:g}"
    return f"tokens identical ({tok_s.numel()}), reconstruction max |diff| {max_diff:.2e} <= {atol:g}"


# ----------------------------------------------------------------------------------------- rows


def forward_rows(model: MotionTokenizer, x: torch.Tensor, args, bf16: bool) -> list[Row]:
    device = x.device
    dtype = "bf16-mixed" if bf16 else "fp32"
    rows = []
    for name in VARIANTS:
        row = Row("forward", name, device.type, dtype, x.shape[0])

        def call():
            with torch.inference_mode(), autocast(device, bf16):
                return model.tokenize(x)

        with attention_variant(name), peak_memory(device, row):
            # fp32 was warmed up by the equivalence check; bf16 needs its own warm-up.
            row.seconds, _ = measure(call, args.repeats, args.stat, device, slow=SLOW_CALL_S if bf16 or device.type == "cuda" else 0.0)
        rows.append(row)
    return rows


def train_rows(base: MotionTokenizer, x: torch.Tensor, args, bf16: bool) -> list[Row]:
    device = x.device
    dtype = "bf16-mixed" if bf16 else "fp32"
    rows = []
    for name in VARIANTS:
        row = Row("train", name, device.type, dtype, x.shape[0])
        with attention_variant(name), peak_memory(device, row):
            model = copy.deepcopy(base).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def step():
                with autocast(device, bf16):
                    recon, q = model(x)
                    loss = F.mse_loss(recon.float(), x) + q.loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss.detach()

            row.seconds, _ = measure(step, args.repeats, args.stat, device)
            del model, opt, step
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------- output


def print_rows(rows: list[Row], show_memory: bool) -> None:
    naive = {(r.group, r.dtype): r.clips_per_s for r in rows if r.variant == "naive"}
    headers = ["group", "variant", "device", "dtype", "batch", "s/batch", "clips/s", "vs naive"] + (["peak GiB"] if show_memory else []) + ["note"]
    table = []
    for r in rows:
        timed = r.seconds is not None
        cells = [r.group, r.variant, r.device, r.dtype, r.batch, f"{r.seconds:.4f}" if timed else "-",
                 f"{r.clips_per_s:.3g}" if timed else "-", ratio(r.clips_per_s, naive.get((r.group, r.dtype))) if timed else "-"]
        if show_memory:
            cells.append(f"{r.peak_gib:.2f}" if r.peak_gib is not None else "-")
        table.append(cells + [r.note])
    print_table(headers, table)


# ----------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=tuple(CONFIGS), default="paper", help="model size (default paper)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default cuda if available else cpu)")
    parser.add_argument("--batch", type=int, help="clips per call (default: 8 on CUDA; on CPU 2 for tiny, 1 for paper)")
    parser.add_argument("--repeats", type=int, help="timed runs per row, after one warm-up (default: 10 on CUDA; on CPU 5 for tiny, 2 for paper)")
    parser.add_argument("--stat", choices=("best", "median"), default="best", help="which run to report (default best)")
    parser.add_argument("--train-cpu", action="store_true", help="also time the fp32 training step on CPU (slow at paper size)")
    parser.add_argument("--atol", type=float, default=1e-4, help="tolerance of the sdpa/naive reconstruction check (default 1e-4)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random input (default 1; the model always uses 0)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    if args.batch is None:
        args.batch = 8 if on_cuda else (1 if args.config == "paper" else 2)
    if args.repeats is None:
        args.repeats = 10 if on_cuda else (2 if args.config == "paper" else 5)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be >= 1")

    torch.manual_seed(0)
    start = time.perf_counter()
    model = MotionTokenizer(MotionTokenizerConfig(**CONFIGS[args.config])).to(device).eval()
    build_s = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, *CLIP_SHAPE, generator=generator).to(device)

    print(machine_line())
    print(f"device {device}; config {args.config} ({n_params:,} parameters, built in {build_s:.1f} s); "
          f"input {tuple(x.shape)}; {args.repeats} repeats, reporting the {args.stat} run")

    start = time.perf_counter()
    print(f"equivalence (eval, fp32, encode + decode): {check_equivalence(model, x, args.atol)} "
          f"[{time.perf_counter() - start:.1f} s]")

    rows = forward_rows(model, x, args, bf16=False)
    if on_cuda:
        rows += forward_rows(model, x, args, bf16=True)
        rows += train_rows(model, x, args, bf16=True)
    elif args.train_cpu:
        rows += train_rows(model, x, args, bf16=False)

    print()
    print_rows(rows, show_memory=on_cuda)
    if not on_cuda:
        reason = "no CUDA device" if not torch.cuda.is_available() else f"--device {args.device}"
        print(f"\nbf16 training step: skipped ({reason})")
        if not args.train_cpu:
            print("fp32 CPU training step: skipped (pass --train-cpu)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
