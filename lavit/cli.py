"""Console scripts.

``lightning`` is a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) in subclass mode: any
LightningModule / LightningDataModule is named in YAML by ``class_path`` / ``init_args``, and configs
are parsed by OmegaConf, so they may interpolate (``${model.init_args.dim}``).

``lavit`` is the same CLI plus the pipeline subcommands (``extract``, ``demo-data``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PIPELINE_COMMANDS = ("extract", "demo-data")


def _register_components() -> None:
    # Importing the packages makes their classes resolvable by short name in class_path.
    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    import metrics  # noqa: F401


def lightning_cli(args: list[str] | None = None, run: bool = True):
    """The LightningCLI shared by ``lightning`` and ``lavit`` (returns the LightningCLI object)."""
    from lightning.pytorch.cli import LightningCLI

    _register_components()
    return LightningCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def lightning_main(args: list[str] | None = None) -> None:
    """Console script ``lightning``."""
    lightning_cli(args)


def lavit_main(args: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in PIPELINE_COMMANDS:
        return _pipeline(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_pipeline_parser().format_help())
        print("Training and evaluation (LightningCLI): lavit {fit,validate,test,predict} -c CONFIG.yaml [--help]\n")
    lightning_cli(argv)
    return None


def _pipeline_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lavit", description="Video-LaVIT pipeline and training CLI.")
    sub = parser.add_subparsers(dest="command", metavar="{extract,demo-data,fit,validate,test,predict}")

    p = sub.add_parser("extract", help="keyframes (PNG), motion (.npy) and motion pictures per clip")
    p.add_argument("videos", nargs="+", type=Path, help="video files or folders (searched recursively)")
    p.add_argument("-o", "--output-dir", type=Path, required=True)
    p.add_argument("--fps", type=float, default=6.0)
    p.add_argument("--max-clips", type=int, default=8, help="clips per video (0 = all)")
    p.add_argument("--sampling", choices=["official", "dense"], default="official")
    p.add_argument("--normalization", choices=["official", "unit", "pixels"], default="official")
    p.add_argument("--min-frames", type=int, default=12, help="shorter videos (after resampling) are skipped")

    d = sub.add_parser("demo-data", help="render the embedded demo dataset (videos + manifest.csv)")
    d.add_argument("output_dir", type=Path)
    d.add_argument("--num-videos", type=int, default=16)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--duration", type=float, default=8.0, help="seconds per video")
    return parser


def _pipeline(argv: list[str]) -> int:
    ns = _pipeline_parser().parse_args(argv)
    if ns.command == "extract":
        from lavit.pipelines.extract import extract_to_folder

        report = extract_to_folder(
            ns.videos, ns.output_dir, fps=ns.fps, max_clips=ns.max_clips or None, sampling=ns.sampling,
            normalization=ns.normalization, min_frames=ns.min_frames,
        )
        print(f"wrote {report.num_clips} clips from {len(report.clips)} videos to {ns.output_dir}")
        if report.skipped:
            print(f"{len(report.skipped)} videos skipped (reasons logged above)", file=sys.stderr)
        return 0 if report.clips or not report.skipped else 1
    if ns.command == "demo-data":
        from datamodules.demo_data import make_demo_dataset

        manifest = make_demo_dataset(ns.output_dir, num_videos=ns.num_videos, seed=ns.seed, duration=ns.duration)
        print(f"demo dataset: {manifest}")
        return 0
    raise AssertionError(ns.command)


if __name__ == "__main__":
    sys.exit(lavit_main())
