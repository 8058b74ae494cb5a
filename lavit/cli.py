"""The pipeline commands of the ``lavit`` console script (``extract``, ``tokenize``, ``reconstruct-motion``,
``reconstruct``, ``detokenize-image``, ``demo-data``, ``preprocess``, ``generate``, ``ask``), in plain Python: no Lightning import. The training subcommands (``fit``, ``validate``, ...)
and the ``lightning`` console script live in ``lightning_modules.cli``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lavit.video.defaults import DEFAULT_FPS, DEFAULT_MAX_CLIPS, DEFAULT_MIN_FRAMES

PIPELINE_COMMANDS = ("extract", "tokenize", "reconstruct-motion", "reconstruct", "detokenize-image", "demo-data", "preprocess",
                     "generate", "ask")
DEFAULT_PIPELINE_CONFIG = "configs/pipelines/demo.yaml"


def pipeline_main(argv: list[str]) -> int:
    """Run one pipeline subcommand (``argv[0]`` in ``PIPELINE_COMMANDS``); usage errors print one line, exit 2."""
    try:
        return _pipeline(argv)
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as err:
        # missing inputs or weights, unwritable outputs, mismatched checkpoints: the message, no traceback
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())  # one line, even for long messages
        print(f"lavit {argv[0]}: error: {message}", file=sys.stderr)
        return 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``lavit extract: error: ...`` and exit 2, no usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: type, minimum: float, strict: bool):
    """argparse ``type``: a ``kind`` number > ``minimum`` (``strict``) or >= it."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value

    return parse


def _output_dir(text: str) -> Path:
    from lavit.pipelines.extract import check_output_dir

    try:
        return check_output_dir(text)
    except OSError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _output_file(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
    _output_dir(str(path.parent))
    return path


def _size(text: str) -> tuple[int, int]:
    """argparse ``type``: ``WxH`` -> (H, W) positive integers."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected WxH with positive integers, e.g. 576x320, got {text!r}")
    return int(parts[1]), int(parts[0])


def print_pipeline_help() -> None:
    print(_pipeline_parser().format_help())


def _pipeline_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lavit", description="Video-LaVIT pipeline and training CLI.")
    sub = parser.add_subparsers(dest="command", metavar="{extract,tokenize,reconstruct-motion,reconstruct,detokenize-image,demo-data,preprocess,generate,ask,fit,validate,test,predict}")

    p = sub.add_parser("extract", help="keyframes (PNG), motion (.npy) and motion pictures per clip")
    _add_clip_options(p)
    p.add_argument("-o", "--output-dir", type=_output_dir, required=True, help="one sub-folder per input video (created)")

    t = sub.add_parser("tokenize", help="motion (and keyframe) token ids, one JSON line per clip: video, clip, start, "
                       "[keyframe_ids,] motion_ids")
    _add_clip_options(t, checkpoint=True)
    t.add_argument("--keyframe-tokenizer", type=Path, default=None,
                   help="keyframe tokenizer (tokenizer_encoder.bin or its Video-LaVIT root, .safetensors, a KeyframeTokenizer "
                   ".ckpt): adds keyframe_ids, codebook ids 0..16383 (not LM ids), deterministic selection")
    t.add_argument("-o", "--output", type=_output_file, required=True, help="JSON-lines file to write")

    r = sub.add_parser("reconstruct-motion", help="decoded motion (.npy) and input-vs-reconstruction pictures")
    _add_clip_options(r, checkpoint=True)
    r.add_argument("-o", "--output-dir", type=_output_dir, required=True)

    v = sub.add_parser("reconstruct", help="videos from keyframe + (tokenized) motion: mp4 per clip, ground truth | reconstruction")
    v.add_argument("videos", nargs="+", type=Path, help="video files or folders (searched recursively)")
    v.add_argument("--detokenizer", type=Path, required=True, help="video_3d_unet.bin, .safetensors, a unet/ folder or a VideoDetokenizer .ckpt")
    v.add_argument("--motion-tokenizer", type=Path, default=None, help="tokenize and decode the motion first (what generation sees)")
    v.add_argument("--vae", type=Path, default=None, help="SVD VAE folder (default: the checkpoint's; pixel space for pixel-space models)")
    v.add_argument("--scheduler", type=Path, default=None, help="scheduler folder (default: SVD's Euler EDM config)")
    v.add_argument("--size", type=_size, default=None, help="WxH, e.g. 576x320 (default: the checkpoint's training size, else 576x320)")
    v.add_argument("--steps", type=_number(int, 1, strict=False), default=25)
    v.add_argument("--min-guidance", type=_number(float, 0, strict=False), default=1.0)
    v.add_argument("--max-guidance", type=_number(float, 0, strict=False), default=3.0)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--max-clips", type=_number(int, 0, strict=False), default=DEFAULT_MAX_CLIPS, help="clips per video (0 = all)")
    v.add_argument("--device", default="cpu")
    v.add_argument("-o", "--output-dir", type=_output_dir, required=True, help="one sub-folder per input video (created)")

    i = sub.add_parser("detokenize-image", help="one image (PNG) from keyframe codebook ids with the keyframe detokenizer")
    i.add_argument("ids", metavar="IDS", help="codebook ids: a JSON list, comma-separated, or a .json/.jsonl file "
                   "(lavit tokenize output: the keyframe_ids of the first line, or of --line)")
    i.add_argument("--line", type=_number(int, 0, strict=False), default=None, help="line of a .jsonl IDS file (0-based; default 0)")
    i.add_argument("--detokenizer", type=Path, required=True,
                   help="Video-LaVIT root: visual_tokenizer/{highres_tokenizer_decoder,tokenizer_encoder}.bin, image_detokenizer/")
    i.add_argument("--decoder-config", default="paper", help="code-to-feature decoder preset (default: paper)")
    i.add_argument("--size", type=_size, default=(1024, 1024), help="WxH, multiples of 64 for SDXL (default 1024x1024)")
    i.add_argument("--guidance", type=_number(float, 0, strict=False), default=3.0, help="classifier-free guidance, zero negatives (1 = none)")
    i.add_argument("--steps", type=_number(int, 1, strict=False), default=50, help="scheduler steps")
    i.add_argument("--seed", type=int, default=0, help="same seed, same image")
    i.add_argument("--device", default="cpu")
    i.add_argument("-o", "--output", type=_output_file, required=True, help="PNG file to write")

    about = ("litdata shards of clips from a manifest (motion, detokenizer or tokens stage), or of text token ids from a "
             "text corpus (--text), resumable")
    s = sub.add_parser("preprocess", help=about, description=about + ". Multi-node: set DATA_OPTIMIZER_NUM_NODES and "
                       "DATA_OPTIMIZER_NODE_RANK on each node.")
    s.add_argument("manifest", type=Path, help="video manifest (CSV / TSV / JSON lines, as the DataModules read), or an "
                   "image-text manifest with --images")
    s.add_argument("-o", "--output-dir", type=Path, required=True, help="shard folder (litdata chunks, lavit_preprocess.json, skipped.jsonl)")
    s.add_argument("--stage", choices=["motion", "detokenizer", "tokens"], required=True)
    s.add_argument("--workers", type=_number(int, 1, strict=False), default=1, help="processes on this machine")
    s.add_argument("--fps", type=_number(float, 0, strict=True), default=None, help=f"output frame rate (default {DEFAULT_FPS:g}, "
                   "or the motion tokenizer's)")
    s.add_argument("--max-clips", type=_number(int, 1, strict=False), default=DEFAULT_MAX_CLIPS, help="clips per video (>= 1)")
    s.add_argument("--sampling", choices=["official", "dense"], default=None)
    s.add_argument("--normalization", choices=["official", "unit", "pixels"], default=None)
    s.add_argument("--min-frames", type=_number(int, 1, strict=False), default=DEFAULT_MIN_FRAMES,
                   help="shorter videos (after resampling) are skipped (>= 1)")
    s.add_argument("--frame-size", type=_size, default=None, help="WxH of the clip frames (stage detokenizer)")
    s.add_argument("--keyframe-format", choices=["png", "jpeg"], default="png", help="png: lossless (default)")
    s.add_argument("--frames-format", choices=["jpeg", "mp4"], default="jpeg", help="jpeg per frame (default) or lossless mp4")
    s.add_argument("--keyframe-tokenizer", type=Path, default=None, help="stage tokens: keyframe tokenizer checkpoint")
    s.add_argument("--motion-tokenizer", type=Path, default=None, help="stage tokens: motion tokenizer checkpoint")
    s.add_argument("--num-heads", type=int, default=None, help="motion tokenizer attention heads, for weights without config")
    s.add_argument("--images", action="store_true", help="MANIFEST lists images (stage tokens: keyframe ids + caption)")
    s.add_argument("--text", action="store_true", help="MANIFEST is a text corpus: JSON lines with a \"text\" field, or plain "
                   "text, one document per line (stage tokens: text ids; needs --text-tokenizer)")
    s.add_argument("--text-tokenizer", type=Path, default=None, help="--text: the LM's text tokenizer folder (Llama-2's: "
                   "tokenizer.model, tokenizer_config.json, ... from meta-llama/Llama-2-7b-hf)")
    s.add_argument("--field-size", type=_size, default=None, help="WxH of the motion fields (default 36x20, the paper's)")
    s.add_argument("--overwrite", action="store_true", help="replace shards made with other options")

    g = sub.add_parser("generate", help="a video (.mp4, .gif) from a prompt, or from an image (--image); an image (.png) from a prompt")
    g.add_argument("prompt", metavar="PROMPT", help="the text (may be empty with --image)")
    g.add_argument("-o", "--output", type=_output_file, required=True, help=".mp4 / .mkv / .mov / .gif: video; .png: text-to-image")
    g.add_argument("-c", "--config", type=Path, default=Path(DEFAULT_PIPELINE_CONFIG), help=f"pipeline config (default {DEFAULT_PIPELINE_CONFIG})")
    g.add_argument("--clips", type=_number(int, 1, strict=False), default=1, help="clips: 24 + 23 (N - 1) frames (default 1)")
    g.add_argument("--image", type=Path, default=None, help="image-to-video: animate this image (its keyframe codes prefix the motion)")
    g.add_argument("--seed", type=int, default=0, help="same seed, same output")
    g.add_argument("--chaining", choices=["renoise", "ddim_inversion", "none"], default=None,
                   help="long videos: how clip k+1's keyframe starts from clip k's last frame (default: the config's)")
    g.add_argument("--keyframe-guidance", type=_number(float, 0, strict=False), default=None, help="LM guidance of keyframe codes")
    g.add_argument("--motion-guidance", type=_number(float, 0, strict=False), default=None, help="LM guidance of motion codes")
    g.add_argument("--video-steps", type=_number(int, 1, strict=False), default=None, help="video detokenizer steps")
    g.add_argument("--keyframe-steps", type=_number(int, 1, strict=False), default=None, help="keyframe detokenizer steps")
    g.add_argument("--device", default=None, help="default: the config's")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    a = sub.add_parser("ask", help="answer a question about a video (understanding path), or caption it (--caption)")
    a.add_argument("video", metavar="VIDEO", type=Path)
    a.add_argument("question", metavar="QUESTION", nargs="?", default=None)
    a.add_argument("-c", "--config", type=Path, default=Path(DEFAULT_PIPELINE_CONFIG), help=f"pipeline config (default {DEFAULT_PIPELINE_CONFIG})")
    a.add_argument("--caption", action="store_true", help="describe the video (no QUESTION)")
    a.add_argument("--max-clips", type=_number(int, 1, strict=False), default=DEFAULT_MAX_CLIPS, help="clips read from the video")
    a.add_argument("--max-tokens", type=_number(int, 1, strict=False), default=None, help="answer length bound")
    a.add_argument("--device", default=None, help="default: the config's")

    d = sub.add_parser("demo-data", help="render the embedded demo dataset (videos + manifest.csv)")
    d.add_argument("output_dir", type=Path)
    d.add_argument("--num-videos", type=_number(int, 1, strict=False), default=16)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--duration", type=_number(float, 0, strict=True), default=8.0, help="seconds per video")
    return parser


def _add_clip_options(p: argparse.ArgumentParser, checkpoint: bool = False) -> None:
    p.add_argument("videos", nargs="+", type=Path, help="video files or folders (searched recursively)")
    if checkpoint:
        p.add_argument("--checkpoint", type=Path, required=True, help="motion_tokenizer.bin, .safetensors or a MotionVQVAE .ckpt")
        p.add_argument("--num-heads", type=int, default=None, help="attention heads, for weights that carry no config (the official ones: 8)")
        p.add_argument("--device", default="cpu")
    p.add_argument("--fps", type=_number(float, 0, strict=True), default=DEFAULT_FPS, help="output frame rate (> 0)")
    p.add_argument("--max-clips", type=_number(int, 0, strict=False), default=DEFAULT_MAX_CLIPS, help="clips per video (0 = all)")
    p.add_argument("--sampling", choices=["official", "dense"], default="official")
    p.add_argument("--normalization", choices=["official", "unit", "pixels"], default="official")
    p.add_argument("--min-frames", type=_number(int, 1, strict=False), default=DEFAULT_MIN_FRAMES,
                   help="shorter videos (after resampling) are skipped (>= 1)")
    if checkpoint:  # the clip settings the checkpoint was trained with, unless given (lavit.tokenizers.loading.clip_options)
        p.set_defaults(fps=None, sampling=None, normalization=None)


def _clip_options(ns: argparse.Namespace) -> dict:
    return dict(fps=ns.fps, max_clips=ns.max_clips or None, sampling=ns.sampling, normalization=ns.normalization, min_frames=ns.min_frames)


def _finish(report, what: str) -> int:
    print(f"{what}: {report.num_clips} clips from {len(report.clips)} videos")
    if report.skipped:
        print(f"{len(report.skipped)} videos skipped (reasons logged above)", file=sys.stderr)
    return 0 if report.clips or not report.skipped else 1


def _pipeline(argv: list[str]) -> int:
    ns = _pipeline_parser().parse_args(argv)
    if ns.command == "extract":
        from lavit.pipelines.extract import extract_to_folder

        report = extract_to_folder(ns.videos, ns.output_dir, **_clip_options(ns))
        return _finish(report, f"wrote to {ns.output_dir}")
    if ns.command in ("tokenize", "reconstruct-motion"):
        from lavit.pipelines.tokenize import reconstruct_motion_videos, tokenize_videos

        config = {} if ns.num_heads is None else {"num_heads": ns.num_heads}
        run, target = (tokenize_videos, ns.output) if ns.command == "tokenize" else (reconstruct_motion_videos, ns.output_dir)
        extra = {"keyframe_tokenizer": ns.keyframe_tokenizer} if ns.command == "tokenize" else {}
        report = run(ns.videos, ns.checkpoint, target, device=ns.device, tokenizer_config=config, **extra, **_clip_options(ns))
        return _finish(report, f"wrote to {target}")
    if ns.command == "reconstruct":
        from lavit.pipelines.reconstruct import reconstruct_videos

        report = reconstruct_videos(
            ns.videos, ns.detokenizer, ns.output_dir, motion_tokenizer=ns.motion_tokenizer, vae=ns.vae, scheduler=ns.scheduler,
            size=ns.size, num_steps=ns.steps, min_guidance=ns.min_guidance, max_guidance=ns.max_guidance, seed=ns.seed,
            device=ns.device, max_clips=ns.max_clips or None,
        )
        return _finish(report, f"wrote to {ns.output_dir}")
    if ns.command == "detokenize-image":
        from lavit.pipelines.detokenize_image import detokenize_image, parse_code_ids

        ids = parse_code_ids(ns.ids, ns.line)
        out = detokenize_image(ids, ns.output, ns.detokenizer, size=ns.size, guidance=ns.guidance, num_steps=ns.steps,
                               seed=ns.seed, decoder_config=ns.decoder_config, device=ns.device)
        print(out)
        return 0
    if ns.command == "preprocess":
        return _preprocess(ns)
    if ns.command == "generate":
        from lavit.pipelines.generate_command import generate_command

        return generate_command(ns)
    if ns.command == "ask":
        from lavit.pipelines.generate_command import ask_command

        return ask_command(ns)
    if ns.command == "demo-data":
        from lavit.video.demo_data import make_demo_dataset

        manifest = make_demo_dataset(ns.output_dir, num_videos=ns.num_videos, seed=ns.seed, duration=ns.duration)
        print(f"demo dataset: {manifest}")
        return 0
    raise AssertionError(ns.command)


def _preprocess(ns: argparse.Namespace) -> int:
    from lavit.shards.preprocess import preprocess

    if ns.text:
        if ns.text_tokenizer is None or ns.stage != "tokens" or ns.images:
            raise ValueError("--text needs --stage tokens and --text-tokenizer DIR (and no --images)")
        report = preprocess(ns.manifest, ns.output_dir, "tokens", ns.workers, text_tokenizer=ns.text_tokenizer, overwrite=ns.overwrite)
        return _preprocess_done(report)

    # the manifest readers live in datamodules (which imports Lightning): only this command loads them
    if ns.images:
        from datamodules.image_text import read_image_manifest as read
    else:
        from datamodules.manifest import read_manifest as read
    config = {} if ns.num_heads is None else {"num_heads": ns.num_heads}
    options = dict(fps=ns.fps, max_clips=ns.max_clips, sampling=ns.sampling, normalization=ns.normalization, min_frames=ns.min_frames,
                   field_size=ns.field_size)
    report = preprocess(read(ns.manifest), ns.output_dir, ns.stage, ns.workers, frame_size=ns.frame_size,
                        keyframe_format=ns.keyframe_format, frames_format=ns.frames_format, keyframe_tokenizer=ns.keyframe_tokenizer,
                        motion_tokenizer=ns.motion_tokenizer, tokenizer_config=config, images=ns.images, overwrite=ns.overwrite, **options)
    return _preprocess_done(report)


def _preprocess_done(report) -> int:
    print(f"wrote {report.num_samples} samples to {report.output_dir}")
    if report.skipped:
        print(f"{len(report.skipped)} inputs skipped: {report.output_dir / 'skipped.jsonl'}", file=sys.stderr)
    return 0 if report.num_samples or not report.skipped else 1


if __name__ == "__main__":
    sys.exit(pipeline_main(sys.argv[1:]))
