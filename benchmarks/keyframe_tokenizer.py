"""Throughput of the keyframe tokenizer: the EVA encoder, and selector + merger + quantiser with the exact
soft-policy attention against the SDPA formulation of the same masked attention, same weights.

Run (from the repository root, in the project's virtualenv)::

    python benchmarks/keyframe_tokenizer.py                      # tiny and paper size, cuda if available else cpu
    python benchmarks/keyframe_tokenizer.py --quick              # smoke run: tiny only, 1 repeat (seconds on a CPU)
    python benchmarks/keyframe_tokenizer.py --configs paper --batch 4 --repeats 3 --stat median

The model is ``lavit.tokenizers.KeyframeTokenizer.with_encoder(config)`` built after ``torch.manual_seed(0)``
(random weights; ``paper``: EVA-CLIP ViT-g/14, 1,012,588,928 parameters, and the 409,819,394-parameter tokenizer
at 224 x 224; ``tiny``: the parity files' config, 56 x 56, width 64). The input is ``torch.randn(B, 3, S, S)`` from
a generator seeded with ``--seed``; selection is ``"deterministic"`` (the data-set default). Rows:

  encoder          ``model.encode_images(x)``: EVA patch features (B, N, D), SDPA attention (the library).
  attention        the merger's two attentions alone (one causal + one cross, q / k / v (B, heads, N, head_dim)
                   ~ N(0, 1), the policies of the selector's keep mask): ``policy_attention(..., "exact")``
                   against ``policy_attention(..., "sdpa")``; their max |difference| is printed.
  select+merge+vq  ``model.encode(features)``: selector, merger, task layer and quantiser, with the merger's
                   attention ``exact`` (``soft_policy_softmax``, the official computation, the baseline) or
                   ``sdpa`` (``scaled_dot_product_attention`` with the additive mask ``log(policy)``;
                   ``lavit.tokenizers.keyframe_tokenizer.policy_attention``), set on the same modules.
  tokenize         derived: encoder + select+merge+vq seconds, i.e. images -> code ids end to end.

"vs exact" is images/s over the ``exact`` row of the same group, config and dtype, measured in the same run.
The two variants' runs alternate (a change of load during the run does not favour either).
Before timing, both attention variants run on the benchmark features; the script asserts identical keep masks
and merged features within ``--atol`` and prints the max |difference| and how many code ids differ (a code id
can flip where two codes are nearly equidistant). On CUDA the paper size also runs under
``torch.autocast("cuda", dtype=torch.bfloat16)`` ("bf16-mixed") and the last column is the peak GPU memory
allocated during the row; on a CPU that group is skipped with a note.

Each measurement is warmed up once (calls slower than 2 s are not), then run ``--repeats`` times
(``time.perf_counter``, CUDA synchronised; a call shorter than 0.25 s is looped inside each run); the best run
is reported (``--stat median`` for the median). Defaults: on CUDA batch 32 and 10 repeats; on CPU batch 8 and
5 repeats for ``tiny``, batch 1 and 2 repeats for ``paper``. Paper size needs ~6 GiB of memory in float32; it
is skipped with a note when less is available.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass

from harness import SLOW_CALL_S, autocast, machine_line, measure, peak_memory, print_table, ratio

import torch  # noqa: E402

from lavit.tokenizers.keyframe_tokenizer import (KeyframeTokenizer, TokenCausalAttention, TokenCrossAttention,  # noqa: E402
                                                 policy_attention)

VARIANTS = ("exact", "sdpa")
PAPER_GIB = 6.0  # float32 encoder + tokenizer weights and activations at batch 1, with room to spare


@contextlib.contextmanager
def attention_variant(model: KeyframeTokenizer, name: str):
    """Within the block, every merger attention of ``model`` computes with ``name`` (restored on exit)."""
    modules = [m for m in model.modules() if isinstance(m, (TokenCausalAttention, TokenCrossAttention))]
    before = [m.attention for m in modules]
    for m in modules:
        m.attention = name
    try:
        yield
    finally:
        for m, b in zip(modules, before):
            m.attention = b


@dataclass
class Row:
    group: str
    config: str
    variant: str
    device: str
    dtype: str
    batch: int
    seconds: float | None = None
    peak_gib: float | None = None
    note: str = ""

    @property
    def images_per_s(self) -> float | None:
        return self.batch / self.seconds if self.seconds else None


def available_gib() -> float | None:
    """MemAvailable of /proc/meminfo in GiB (None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def check_equivalence(model: KeyframeTokenizer, features: torch.Tensor, atol: float, bf16: bool) -> str:
    """Deterministic encode with both variants: assert equal keep masks and merged features within ``atol``."""
    out = {}
    for name in VARIANTS:
        with attention_variant(model, name), torch.inference_mode(), autocast(features.device, bf16):
            out[name] = model.encode(features, selection="deterministic")
    e, s = out["exact"], out["sdpa"]
    assert torch.equal(e.keep, s.keep), "exact and sdpa attention give different keep masks"
    diff = (e.merged.float() - s.merged.float()).abs().max().item()
    assert diff <= atol, f"exact and sdpa merged features differ by {diff:.3g} > {atol:g}"
    differing = int((e.code_ids != s.code_ids).sum())
    return (f"keep masks identical ({int(e.token_nums.sum())} kept of {e.keep.numel()}), merged max |diff| {diff:.2e} "
            f"<= {atol:g}, code ids differing {differing} of {e.code_ids.numel()}")


def attention_calls(model: KeyframeTokenizer, features: torch.Tensor, bf16: bool):
    """The merger's two attentions alone, at the config's shapes: q, k, v (B, heads, N, head_dim) drawn from a seeded
    generator, the causal and the cross policy of the selector's deterministic keep mask. Prints the max |difference|
    of exact and sdpa; returns ``call(variant)`` that runs one causal and one cross attention."""
    c = model.config
    b, n = features.shape[:2]
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(b, c.heads, n, c.head_dim, generator=g).to(features.device) for _ in range(3))
    with torch.inference_mode():
        keep = model.keep_policy(model.selector_scores(features), "deterministic").to(q.dtype)
    eye = torch.eye(n, dtype=q.dtype, device=q.device)
    causal = (keep.reshape(b, 1, 1, n) + (1 - keep.reshape(b, 1, 1, n)) * eye) * torch.ones_like(eye).tril()
    cross = (1 - keep).reshape(b, 1, 1, n)
    scale, eps = c.head_dim ** -0.5, c.policy_eps

    def call(variant: str):
        with torch.inference_mode(), autocast(features.device, bf16):
            return (policy_attention(q, k, v, causal, scale, eps, variant), policy_attention(q, k, v, cross, scale, eps, variant))

    diff = max((a.float() - s.float()).abs().max().item() for a, s in zip(call("exact"), call("sdpa")))
    print(f"attention alone (q, k, v {tuple(q.shape)} ~ N(0, 1), causal + cross policy): exact vs sdpa max |diff| {diff:.2e}")
    return call


def interleaved(call, group: str, config: str, device: torch.device, dtype: str, batch: int, repeats: int, stat: str) -> list[Row]:
    """Time ``call(variant)`` for each variant, alternating the variants run by run (so that a change of load during
    the measurement does not favour one of them); the first call of each is a warm-up unless slower than 2 s, as in
    ``harness.measure``."""
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rows = {v: Row(group, config, v, device.type, dtype, batch) for v in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            with peak_memory(device, rows[variant]):
                seconds, _ = measure(lambda: call(variant), 1, "best", device, warmup=(lambda: None) if times[variant] else None)
            times[variant].append(seconds)
    for variant, row in rows.items():
        row.seconds = min(times[variant]) if stat == "best" else statistics.median(times[variant])
    return list(rows.values())


def config_rows(name: str, args, device: torch.device, bf16: bool) -> list[Row]:
    torch.manual_seed(0)
    start = time.perf_counter()
    model = KeyframeTokenizer.with_encoder(name).to(device).eval()
    build_s = time.perf_counter() - start
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    n_tok = sum(p.numel() for p in model.parameters()) - n_enc
    batch = args.batch or (32 if device.type == "cuda" else (1 if name == "paper" else 8))
    repeats = args.repeats or (10 if device.type == "cuda" else (2 if name == "paper" else 5))
    s = model.config.img_size
    x = torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(args.seed)).to(device)
    dtype = "bf16-mixed" if bf16 else "fp32"
    print(f"\nconfig {name} {dtype}: encoder {n_enc:,} + tokenizer {n_tok:,} parameters, built in {build_s:.1f} s; "
          f"input {tuple(x.shape)}; {repeats} repeats, reporting the {args.stat} run")

    enc = Row("encoder", name, "-", device.type, dtype, batch)

    def encode():
        with torch.inference_mode(), autocast(device, bf16):
            return model.encode_images(x)

    with peak_memory(device, enc):
        enc.seconds, features = measure(encode, repeats, args.stat, device)
    features = features.clone()
    start = time.perf_counter()
    print(f"equivalence (deterministic selection): {check_equivalence(model, features, args.atol, bf16)} "
          f"[{time.perf_counter() - start:.1f} s]")

    rows = [enc]
    rows += interleaved(attention_calls(model, features, bf16), "attention", name, device, dtype, batch, repeats, args.stat)

    def select_merge_vq(variant: str):
        with attention_variant(model, variant), torch.inference_mode(), autocast(device, bf16):
            return model.encode(features, selection="deterministic").code_ids

    rows += interleaved(select_merge_vq, "select+merge+vq", name, device, dtype, batch, repeats, args.stat)
    part = {r.variant: r for r in rows if r.group == "select+merge+vq"}
    for variant in VARIANTS:
        rows.append(Row("tokenize", name, variant, device.type, dtype, batch, enc.seconds + part[variant].seconds,
                        note="derived: encoder + select+merge+vq"))
    del model, x, features
    return rows


def print_rows(rows: list[Row], show_memory: bool) -> None:
    exact = {(r.group, r.config, r.dtype): r.images_per_s for r in rows if r.variant == "exact"}
    headers = (["group", "config", "variant", "device", "dtype", "batch", "s/batch", "images/s", "vs exact"]
               + (["peak GiB"] if show_memory else []) + ["note"])
    table = []
    for r in rows:
        cells = [r.group, r.config, r.variant, r.device, r.dtype, r.batch, f"{r.seconds:.4f}", f"{r.images_per_s:.3g}",
                 ratio(r.images_per_s, exact.get((r.group, r.config, r.dtype))) if r.variant != "-" else "-"]
        if show_memory:
            cells.append(f"{r.peak_gib:.2f}" if r.peak_gib is not None else "-")
        table.append(cells + [r.note])
    print_table(headers, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,paper", help="comma-separated of tiny,paper (default both)")
    parser.add_argument("--quick", action="store_true", help="smoke run: --configs tiny, batch 2, 1 repeat")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default cuda if available else cpu)")
    parser.add_argument("--batch", type=int, help="images per call (default: 32 on CUDA; on CPU 8 for tiny, 1 for paper)")
    parser.add_argument("--repeats", type=int, help="timed runs per row (default: 10 on CUDA; on CPU 5 for tiny, 2 for paper)")
    parser.add_argument("--stat", choices=("best", "median"), default="best", help="which run to report (default best)")
    parser.add_argument("--atol", type=float, default=1e-4, help="tolerance of the exact/sdpa merged-feature check (default 1e-4)")
    parser.add_argument("--bf16-atol", type=float, default=0.25, help="the same check under bf16 autocast (default 0.25)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random images (default 1; the model always uses 0)")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    if args.quick:
        configs = [c for c in configs if c == "tiny"] or ["tiny"]
        args.batch, args.repeats = args.batch or 2, args.repeats or 1
    if any(c not in ("tiny", "paper") for c in configs):
        parser.error(f"--configs: choose from tiny,paper, got {args.configs!r}")
    if (args.batch is not None and args.batch < 1) or (args.repeats is not None and args.repeats < 1):
        parser.error("--batch and --repeats must be >= 1")

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    print(machine_line())
    print(f"device {device}; configs {','.join(configs)}; selection deterministic")
    rows, notes = [], []
    if args.quick and "paper" in args.configs.split(","):
        notes.append("paper size: skipped (--quick)")
    for name in configs:
        free = available_gib()
        if name == "paper" and not on_cuda and free is not None and free < PAPER_GIB:
            notes.append(f"paper size: skipped ({free:.1f} GiB available, needs ~{PAPER_GIB:g})")
            continue
        rows += config_rows(name, args, device, bf16=False)
    if "paper" in configs:
        if on_cuda:
            atol, args.atol = args.atol, args.bf16_atol
            rows += config_rows("paper", args, device, bf16=True)
            args.atol = atol
        else:
            reason = "no CUDA device" if not torch.cuda.is_available() else f"--device {args.device}"
            notes.append(f"paper size bf16: skipped ({reason})")

    print()
    if rows:
        print_rows(rows, show_memory=on_cuda)
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
