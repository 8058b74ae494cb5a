"""Throughput of the multimodal LM: training tokens/s with model FLOPs utilisation, and video generation tokens/s with
and without the media grammar (the constraint processor).

Run (from the repository root, in the project's virtualenv)::

    python benchmarks/multimodal_lm.py                      # CPU rows; on CUDA also a 1B config in bf16
    python benchmarks/multimodal_lm.py --quick              # smoke run: small sizes, 1 repeat (seconds on a CPU)
    python benchmarks/multimodal_lm.py --repeats 5 --stat median --cuda-config llama2_7b

Every model is a transformers ``LlamaForCausalLM(MultimodalLMConfig(...).llama_config(attn_implementation=...))``
built after ``torch.manual_seed(0)`` (random weights) over the official vocabulary (49,412 ids: 32,000 text, 16,384
visual codes, 1,024 motion codes; 135 motion codes per clip). Rows:

  matmul peak   FLOP/s of ``a @ b`` for square (n, n) matrices in the training dtype (float32 on CPU, n 2048; bf16 on
                CUDA, n 8192): 2 n^3 / seconds. This measured peak is the MFU denominator (not a data-sheet number).
  train         tokens/s of one training step: forward, the next-token loss (``lavit.lm.loss.next_token_loss``, what
                ``MultimodalLM`` trains with), backward, ``torch.optim.AdamW`` step and ``zero_grad``, on random ids
                (B, L) over the whole vocabulary. Rows ``sdpa`` and ``eager`` (``attn_implementation``); "vs eager" =
                tokens/s over the eager row. MFU = 6 N tokens/s / peak with N = the non-embedding parameters + the
                output head (the LitGPT / nanoGPT convention: the input embedding is a lookup, no FLOPs; the head is a
                matmul; attention's own FLOPs are not counted). The parameter line says how much of all parameters
                the embeddings are (with a 49,412-id vocabulary and a small hidden size they dominate).
  generate      new tokens/s (B x new ids per call / seconds) of video generation (one clip: keyframe stage then
                motion stage, as ``lavit.lm.generation.generate_video``) with guidance on (keyframe 4.0 / motion 7.0,
                ``ClassifierFreeGuidanceLogitsProcessor``) and off (1.0). Variants: ``grammar`` = ``generate_video``
                itself (``MediaGrammarLogitsProcessor``), ``none`` = the same two ``model.generate`` calls, the same
                prompts, guidance processor and sampling (top-k 50), with NO constraint processor and eos off (the
                grammar run is given min = max keyframe codes, so both produce exactly the same number of ids);
                "vs none" = tokens/s over the none row. Sampling is seeded identically for both.
  grammar cost  the processor alone: ``MediaGrammarLogitsProcessor.__call__`` timed on every decoding step of that
                generation (input_ids = the grammar run's rows up to the step, scores (B, V) float32 ~ N(0, 1); the
                script checks each step allows the id generated there), summed over the steps, as a
                share of the ``none`` row's seconds per call. The line "constraint overhead" prints it with the
                end-to-end grammar / none - 1 (seconds per call) and says whether the processor is within the 5% budget (decided on the
                direct measurement; the end-to-end difference is within run-to-run noise on a shared CPU).

On CUDA a ``--cuda-config`` (default "1b": hidden 2048, 16 layers, 16 heads, intermediate 5632, ~1.3B parameters with
the 49,412-id vocabulary; or "llama2_7b") also runs in bf16: training under ``torch.autocast(bfloat16)`` with float32
weights and AdamW (llama2_7b: bf16 weights and AdamW states, gradient checkpointing, as the 139 GiB of an H200 allow)
with MFU against the bf16 peak and the peak memory, and generation tokens/s (grammar and none, guidance on). On a CPU
those rows are skipped with a note (and with ``--quick``).

Defaults on CPU: train hidden 256, intermediate 688, 4 layers, 4 heads, context 512, batch 4; generation the same model,
batch 8, prompt 16 text ids, 32 keyframe codes + 135 motion codes; 3 repeats. ``--quick``: train hidden 64, 2 layers,
context 128, batch 2; generation the "tiny" preset (hidden 16: the cheapest possible step, where the processor's share
is largest), 4 keyframe codes; 1 repeat, generation calls not warmed up (the first call is the timed one: --quick
checks that the script runs, its generation numbers include a cold call). Each measurement is warmed up once (calls slower than 2 s are not), then run
``--repeats`` times (``time.perf_counter``, CUDA synchronised; calls shorter than 0.25 s are looped); the best run is
reported (``--stat median`` for the median).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from harness import SLOW_CALL_S, autocast, machine_line, measure, peak_memory, print_table, ratio

import torch  # noqa: E402
from transformers import GenerationConfig, LlamaForCausalLM, LogitsProcessorList  # noqa: E402

from lavit.lm.config import MultimodalLMConfig  # noqa: E402
from lavit.lm.generation import SamplingSettings, generate_video, left_pad  # noqa: E402
from lavit.lm.loss import next_token_loss  # noqa: E402
from lavit.lm.processors import ClassifierFreeGuidanceLogitsProcessor, MediaGrammarLogitsProcessor  # noqa: E402

BUDGET = 0.05  # the constraint processors may cost at most 5% of generation time
CUDA_CONFIGS = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16),
    "llama2_7b": dict(),
}


@dataclass
class Row:
    group: str
    config: str
    variant: str
    device: str
    dtype: str
    batch: int
    tokens: int  # tokens per call
    seconds: float | None = None
    flops: float | None = None  # model FLOPs per call (6 N tokens), training rows
    peak_gib: float | None = None
    note: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None


# ------------------------------------------------------------------------------------------ peak


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int, stat: str) -> float:
    """Measured FLOP/s of an (n, n) @ (n, n) matmul in ``dtype``: 2 n^3 / seconds."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device, dtype) for _ in range(2))
    seconds, _ = measure(lambda: a @ b, repeats, stat, device)
    return 2 * n ** 3 / seconds


# -------------------------------------------------------------------------------------- training


def parameter_counts(model: LlamaForCausalLM) -> tuple[int, int, int]:
    """(all parameters, input embedding, N = all - input embedding; the head counts even when tied)."""
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight
    tied = head is model.get_input_embeddings().weight
    return total, embed, total - embed + (head.numel() if tied else 0)


def build(config: MultimodalLMConfig, attention: str, device: torch.device, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    return LlamaForCausalLM(config.llama_config(attn_implementation=attention)).to(device, dtype)


def train_rows(config: MultimodalLMConfig, name: str, batch: int, length: int, device: torch.device, bf16: bool,
               repeats: int, stat: str, weights: torch.dtype = torch.float32, checkpointing: bool = False) -> list[Row]:
    """One training step per call, for each attention implementation; prints the parameter line."""
    vocab = config.vocabulary
    ids = torch.randint(0, vocab.size, (batch, length), generator=torch.Generator().manual_seed(1)).to(device)
    dtype = "bf16-mixed" if bf16 and weights == torch.float32 else ("bf16" if bf16 else "fp32")
    rows = []
    for attention in ("eager", "sdpa"):
        model = build(config, attention, device, weights).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        total, embed, n = parameter_counts(model)
        if attention == "eager":
            print(f"\ntrain {name} {dtype}: {total:,} parameters, input embedding {embed:,} ({embed / total:.0%}), "
                  f"head {model.get_output_embeddings().weight.numel():,}; N = non-embedding + head = {n:,}; "
                  f"batch ({batch}, {length})")
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.0)

        def step():
            with autocast(device, bf16):
                logits = model(input_ids=ids, use_cache=False).logits
            loss = next_token_loss(logits, ids, vocab).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        row = Row("train", name, attention, device.type, dtype, batch, batch * length, flops=6.0 * n * batch * length)
        with peak_memory(device, row):
            row.seconds, loss = measure(step, repeats, stat, device)
        if not torch.isfinite(loss):
            raise RuntimeError(f"training loss is {loss.item()} ({name}, {attention})")
        rows.append(row)
        del model, optimizer, step  # the closure holds both: free them before the next model is built
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------ generation


def grammar_steps(vocab, prompts, videos, device: torch.device) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The whole rows (B, L) and the (input_ids (B, L_t), scores (B, V) float32) of every decoding step of ``videos``
    (one clip each), generated after ``prompts`` of one length: the prefixes before each keyframe code, [/IMG], motion
    code and [/MOV] (the id generated at a step is ``rows[:, L_t]``)."""
    rows = torch.stack([torch.cat([p, p.new_tensor([vocab.img_start]), v.keyframes[0] + vocab.visual_offset,
                                   p.new_tensor([vocab.img_end, vocab.mov_start]), v.motion[0] + vocab.motion_offset,
                                   p.new_tensor([vocab.mov_end])]) for p, v in zip(prompts, videos)]).to(device)
    length, keyframe = len(prompts[0]), len(videos[0].keyframes[0])
    ends = [length + 1 + k for k in range(keyframe + 1)]
    ends += [length + keyframe + 3 + k for k in range(vocab.motion_tokens_per_clip + 1)]
    scores = torch.randn(rows.shape[0], vocab.size, generator=torch.Generator().manual_seed(4)).to(device)
    return rows, [(rows[:, :end], scores) for end in ends]


def unconstrained_video(model, vocab, prompts, keyframe_codes: int, guidance: tuple[float, float],
                        sampling: SamplingSettings, seed: int) -> int:
    """``generate_video``'s two stages (one clip) with no constraint processor: ``keyframe_codes`` + 1 then
    ``motion_tokens_per_clip`` + 1 new ids per row (eos off), the guidance of the stage, the same sampling. Returns the
    new ids per row."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    rows = [p.to(device) for p in prompts]
    total = 0
    for start, new, scale in ((vocab.img_start, keyframe_codes + 1, guidance[0]),
                              (vocab.mov_start, vocab.motion_tokens_per_clip + 1, guidance[1])):
        rows = [torch.cat([r, r.new_tensor([start])]) for r in rows]
        ids, mask = left_pad(rows, vocab.eos_id)
        processors = [ClassifierFreeGuidanceLogitsProcessor(model, scale)] if scale != 1.0 else []
        config = GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=sampling.do_sample, num_beams=1,
                                  top_k=sampling.top_k, top_p=sampling.top_p, temperature=sampling.temperature,
                                  eos_token_id=None, pad_token_id=vocab.eos_id, bos_token_id=vocab.bos_id,
                                  use_cache=True, return_dict_in_generate=True)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                             logits_processor=LogitsProcessorList(processors))
        rows = [torch.cat([r, s]) for r, s in zip(rows, out.sequences[:, ids.shape[1]:])]
        total += new
    return total


def generation_rows(model, config: MultimodalLMConfig, name: str, batch: int, prompt_length: int, keyframe_codes: int,
                    device: torch.device, dtype: str, repeats: int, stat: str, guidances,
                    slow: float = SLOW_CALL_S) -> tuple[list[Row], list[str]]:
    """Rows ``grammar`` / ``none`` per guidance, and the overhead lines (direct processor cost, end to end)."""
    vocab = config.vocabulary
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, vocab.text_size, (prompt_length,), generator=g) for _ in range(batch)]
    sampling = SamplingSettings(top_k=50)
    new = keyframe_codes + 1 + vocab.motion_tokens_per_clip + 1
    rows, lines = [], []
    print(f"\ngenerate {name} {dtype}: batch {batch}, prompt {prompt_length} text ids, {keyframe_codes} keyframe codes "
          f"+ [/IMG] + {vocab.motion_tokens_per_clip} motion codes + [/MOV] = {new} new ids per row ([IMG], [MOV] given)")
    for guidance in guidances:
        label = f"{guidance[0]:g}/{guidance[1]:g}"

        def grammar():
            videos = generate_video(model, vocab, prompts, 1, guidance[0], guidance[1], keyframe_sampling=sampling,
                                    motion_sampling=sampling, min_keyframe_tokens=keyframe_codes,
                                    max_keyframe_tokens=keyframe_codes, seed=3)
            assert all(len(v.keyframes[0]) == keyframe_codes and len(v.motion[0]) == vocab.motion_tokens_per_clip for v in videos)
            return videos

        def none():
            return unconstrained_video(model, vocab, prompts, keyframe_codes, guidance, sampling, seed=3)

        pair = {}
        for variant, fn in (("none", none), ("grammar", grammar)):
            row = Row("generate", name, variant, device.type, dtype, batch, batch * new, note=f"guidance {label}")
            with peak_memory(device, row), torch.inference_mode():
                row.seconds, result = measure(fn, repeats, stat, device, slow=slow)
            pair[variant], videos = row, (result if variant == "grammar" else None)
            rows.append(row)

        full, steps = grammar_steps(vocab, prompts, videos, device)
        processor = MediaGrammarLogitsProcessor(vocab, "video", keyframe_codes, keyframe_codes)
        with torch.inference_mode():  # the reconstructed steps are the grammar's: each generated id is allowed
            for input_ids, scores in steps:
                generated = full[:, input_ids.shape[1]:input_ids.shape[1] + 1]
                assert bool(processor(input_ids, scores).gather(1, generated).isfinite().all()), "a step forbids its id"

        def processor_alone():
            for input_ids, scores in steps:
                processor(input_ids, scores)

        with torch.inference_mode():
            cost, _ = measure(processor_alone, repeats, stat, device)
        share = cost / pair["none"].seconds
        end_to_end = pair["grammar"].seconds / pair["none"].seconds - 1
        verdict = "within" if share <= BUDGET else "OVER"
        lines.append(f"constraint overhead ({name} {dtype}, guidance {label}): MediaGrammarLogitsProcessor "
                     f"{cost / len(steps) * 1e6:.0f} us/step x {len(steps)} steps = {share:.2%} of the "
                     f"unconstrained generation ({verdict} the {BUDGET:.0%} budget); end to end grammar / none - 1 "
                     f"{end_to_end:+.2%}")
    return rows, lines


# ----------------------------------------------------------------------------------------- output


def print_rows(rows: list[Row], peak: dict[str, float], show_memory: bool) -> None:
    eager = {(r.config, r.dtype): r.tokens_per_s for r in rows if r.group == "train" and r.variant == "eager"}
    none = {(r.config, r.dtype, r.note): r.tokens_per_s for r in rows if r.group == "generate" and r.variant == "none"}
    headers = (["group", "config", "variant", "device", "dtype", "batch", "tokens", "s/call", "tokens/s", "vs base", "MFU"]
               + (["peak GiB"] if show_memory else []) + ["note"])
    table = []
    for r in rows:
        base = eager.get((r.config, r.dtype)) if r.group == "train" else none.get((r.config, r.dtype, r.note))
        mfu = f"{r.flops / r.seconds / peak[r.dtype]:.1%}" if r.flops else "-"
        cells = [r.group, r.config, r.variant, r.device, r.dtype, r.batch, r.tokens, f"{r.seconds:.4f}",
                 f"{r.tokens_per_s:.4g}", ratio(r.tokens_per_s, base), mfu]
        if show_memory:
            cells.append(f"{r.peak_gib:.2f}" if r.peak_gib is not None else "-")
        table.append(cells + [r.note])
    print_table(headers, table)
    print("vs base: train rows over eager, generate rows over none (same config, dtype and guidance)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repeat (seconds on a CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default cuda if available else cpu)")
    parser.add_argument("--repeats", type=int, help="timed runs per row (default 3; --quick 1)")
    parser.add_argument("--stat", choices=("best", "median"), default="best", help="which run to report (default best)")
    parser.add_argument("--keyframe-codes", type=int, help="keyframe codes per generated clip (default 32; --quick 8)")
    parser.add_argument("--cuda-config", choices=tuple(CUDA_CONFIGS), default="1b", help="the bf16 CUDA config (default 1b)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    keyframe_codes = args.keyframe_codes or (4 if args.quick else 32)
    if repeats < 1 or keyframe_codes < 1:
        parser.error("--repeats and --keyframe-codes must be >= 1")

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    print(machine_line())
    print(f"device {device}; {repeats} repeats, reporting the {args.stat} run")
    peak = {"fp32": matmul_peak(device, torch.float32, 512 if args.quick else 2048, repeats, args.stat)}
    print(f"matmul peak fp32 ({'512' if args.quick else '2048'}^2 @ {'512' if args.quick else '2048'}^2 on {device.type}): "
          f"{peak['fp32'] / 1e9:.1f} GFLOP/s (the MFU denominator of fp32 rows)")

    if args.quick:
        small = MultimodalLMConfig(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=2,
                                   max_position_embeddings=128)
        train_batch, length, gen_config, gen_name = 2, 128, MultimodalLMConfig.from_name("tiny"), "tiny"
    else:
        small = MultimodalLMConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                                   max_position_embeddings=512)
        train_batch, length, gen_config, gen_name = 4, 512, small, "small"
    rows = train_rows(small, "small", train_batch, length, device, False, repeats, args.stat)
    model = build(gen_config, "sdpa", device).eval()
    gen, lines = generation_rows(model, gen_config, gen_name, 8, 16, keyframe_codes, device, "fp32", repeats, args.stat,
                                 ((4.0, 7.0), (1.0, 1.0)), slow=0.0 if args.quick else SLOW_CALL_S)
    rows += gen
    del model

    notes = []
    if on_cuda and not args.quick:
        name = args.cuda_config
        big = MultimodalLMConfig(**CUDA_CONFIGS[name])
        peak["bf16"] = peak["bf16-mixed"] = matmul_peak(device, torch.bfloat16, 8192, repeats, args.stat)
        print(f"\nmatmul peak bf16 (8192^2 @ 8192^2): {peak['bf16'] / 1e12:.1f} TFLOP/s (the MFU denominator of bf16 rows)")
        seven = name == "llama2_7b"
        rows += train_rows(big, name, 4 if seven else 8, 2048, device, True, repeats, args.stat,
                           weights=torch.bfloat16 if seven else torch.float32, checkpointing=seven)
        model = build(big, "sdpa", device, torch.bfloat16).eval()
        gen, more = generation_rows(model, big, name, 8, 16, keyframe_codes, device, "bf16", repeats, args.stat, ((4.0, 7.0),))
        rows += gen
        lines += more
        del model
    else:
        reason = "--quick" if args.quick else ("no CUDA device" if not torch.cuda.is_available() else f"--device {args.device}")
        notes.append(f"{args.cuda_config} bf16 (training MFU, peak memory, generation): skipped ({reason})")

    print()
    print_rows(rows, peak, show_memory=on_cuda)
    print()
    for line in lines:
        print(line)
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
