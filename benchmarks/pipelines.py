"""Seconds per generated clip by stage of ``TextToVideoPipeline`` (LM, keyframe detokenizer, motion decode, video
detokenizer, VAE decode), each stage's share of the total measured in the same run.

Run (from the repository root, in the project's virtualenv)::

    python benchmarks/pipelines.py                     # tiny random components on the CPU (~1 min on 2 cores)
    python benchmarks/pipelines.py --quick             # smoke run (seconds)
    LAVIT_WEIGHTS_DIR=/path/to/Video-LaVIT-v1 python benchmarks/pipelines.py --config configs/pipelines/paper.yaml \
        --device cuda --dtype bf16                     # paper size (needs the official weights and a GPU)

Tiny mode (no ``--config``): the test suite's components (tests/pipelines/pipeline_fixtures.py: a 2-layer 16-wide
Llama, the ``demo`` motion tokenizer, the tiny SDXL-shaped keyframe U-Net / VAE at 32 x 32, the pixel-space ``demo``
video detokenizer at 8 x 16) with RANDOM WEIGHTS, saved to a temporary folder and loaded through the pipeline config
like real checkpoints. The outputs are noise; only the cost is measured, which does not depend on the weights.
Settings: ``--keyframe-steps`` (default 10), ``--video-steps`` (default 4), ``--clips`` (default 2), ``--prompts`` (batch,
default 1); with ``--config`` the config's steps unless given.

Timing: the pipeline records each stage's seconds itself (``TextToVideoOutput.timings``, CUDA synchronised at every
stage boundary); the total is the wall time of the whole call around it, so "other" (prompt encoding, stitching,
resizes, progress bars) is the total minus the stages. One untimed warm-up call, then ``--repeats`` timed calls; the
fastest call (by total) is reported. Numbers are per clip: seconds / (clips x prompts). Other processes on the same
CPUs inflate every number; the load average is printed at start (see ``harness.machine_line``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness import machine_line, print_table, sync  # noqa: E402  (puts the checkout first on sys.path)

import torch  # noqa: E402

STAGES = ("lm", "keyframe_detokenizer", "motion_decode", "video_detokenizer", "vae_decode")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def run(pipe, prompts, clips: int, repeats: int, device: torch.device, overrides: dict) -> tuple[float, dict[str, float]]:
    """-> (total seconds, stage seconds) of the fastest of ``repeats`` calls after one warm-up."""
    pipe(prompts, num_clips=clips, seed=0, progress=False, **overrides)
    best = None
    for r in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = pipe(prompts, num_clips=clips, seed=r, progress=False, **overrides)
        sync(device)
        total = time.perf_counter() - start
        if best is None or total < best[0]:
            best = (total, dict(out.timings))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="a pipeline config (default: tiny random components)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 clip, 1 repeat, 2 keyframe / 1 video steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--clips", type=int, default=None, help="clips per video (default 2; --quick 1)")
    parser.add_argument("--prompts", type=int, default=1, help="prompts per call (batch)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 3; --quick 1)")
    parser.add_argument("--keyframe-steps", type=int, default=None)
    parser.add_argument("--video-steps", type=int, default=None)
    args = parser.parse_args(argv)
    clips = args.clips or (1 if args.quick else 2)
    repeats = args.repeats or (1 if args.quick else 3)
    if min(clips, repeats, args.prompts) < 1:
        parser.error("--clips, --repeats and --prompts must be >= 1")
    device = torch.device(args.device)

    from lavit.pipelines import TextToVideoPipeline

    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        if args.config is None:
            from tests.pipelines.pipeline_fixtures import build_pipeline_assets

            config = build_pipeline_assets(Path(tmp) / "tiny")
            steps = dict(keyframe_steps=args.keyframe_steps or (2 if args.quick else 10),
                         video_steps=args.video_steps or (1 if args.quick else 4))
            what = "tiny random components (RANDOM WEIGHTS: cost only)"
        else:
            config = args.config
            steps = {k: v for k, v in dict(keyframe_steps=args.keyframe_steps, video_steps=args.video_steps).items() if v}
            what = str(config)
        pipe = TextToVideoPipeline.from_config(config, device=device, dtype=DTYPES[args.dtype])
        g = pipe.generation.replace(**steps)
        prompts = ["a red square moving left"] * args.prompts
        print(f"{what}; device {device} {args.dtype}; {args.prompts} prompt(s) x {clips} clip(s); keyframe "
              f"{g.keyframe_steps} steps, video {g.video_steps} steps, video size {pipe.stages.video_size}; "
              f"fastest of {repeats} call(s) after a warm-up")
        total, stages = run(pipe, prompts, clips, repeats, device, steps)
    per_clip = clips * args.prompts
    rows = [[name, f"{stages.get(name, 0.0) / per_clip:.4f}", f"{100 * stages.get(name, 0.0) / total:.1f}%"] for name in STAGES]
    other = total - sum(stages.values())
    rows.append(["other", f"{other / per_clip:.4f}", f"{100 * other / total:.1f}%"])
    rows.append(["total", f"{total / per_clip:.4f}", "100.0%"])
    print()
    print_table(["stage", "s/clip", "share of total"], rows, title="TextToVideoPipeline, seconds per generated clip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
