"""Console scripts ``lightning`` and ``lavit``.

``lightning`` is a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) in subclass mode: any
LightningModule / LightningDataModule is named in YAML by ``class_path`` / ``init_args``, and configs
are parsed by OmegaConf, so they may interpolate (``${model.init_args.dim}``).

``lavit`` is the same CLI plus the pipeline subcommands of ``lavit.cli`` (``extract``, ``tokenize``, ...).
"""

from __future__ import annotations

import sys

from lavit.cli import PIPELINE_COMMANDS, pipeline_main, print_pipeline_help


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
    """Console script ``lavit``: pipeline subcommands, else the LightningCLI."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in PIPELINE_COMMANDS:
        return pipeline_main(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print_pipeline_help()
        print("Training and evaluation (LightningCLI): lavit {fit,validate,test,predict} -c CONFIG.yaml [--help]\n")
    lightning_cli(argv)
    return None


if __name__ == "__main__":
    sys.exit(lavit_main())
