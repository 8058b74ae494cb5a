"""Console scripts ``lightning`` and ``lavit``.

``lightning`` is a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) in subclass mode: any
LightningModule / LightningDataModule is named in YAML by ``class_path`` / ``init_args``, and configs
are parsed by OmegaConf, so they may interpolate (``${model.init_args.dim}``).

``lavit`` is the same CLI plus the pipeline subcommands of ``lavit.cli`` (``extract``, ``tokenize``, ...).

Errors in the user's input print one line, ``lightning fit: error: <message>``, and exit with code 2:
command-line and config errors, and the typed errors (``FileNotFoundError``, ``ValueError`` such as
``VideoDecodeError``, missing or bad weights, ...) that this project's code raises while the CLI builds
the classes or runs; a message of several lines (how to obtain missing weights) is shown whole.
Anything else keeps its traceback, and ``LAVIT_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lavit.cli import PIPELINE_COMMANDS, pipeline_main, print_pipeline_help

DEBUG_ENV = "LAVIT_DEBUG"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
USER_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError)
PACKAGES = ("lavit", "datamodules", "lightning_modules", "metrics")


def _register_components() -> None:
    # Importing the packages makes their classes resolvable by short name in class_path.
    import datamodules  # noqa: F401
    import lightning_modules
    import metrics  # noqa: F401

    lightning_modules.import_all()


def lightning_cli(args: list[str] | None = None, run: bool = True, prog: str | None = None):
    """The LightningCLI shared by ``lightning`` and ``lavit`` (returns the LightningCLI object);
    ``prog`` names the command in help and errors (default: from ``sys.argv[0]``)."""
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    class OneLineErrors(LightningArgumentParser):
        """Command-line and config errors as one line (``lightning fit: error: ...``), exit 2, no usage block."""

        def error(self, message: str, ex: Exception | None = None):
            if not self.exit_on_error or os.environ.get(DEBUG_ENV) == "1":
                super().error(message, ex)
            prog = (getattr(ex, "subcommand_parser", None) or self).prog.replace(" [options]", "")
            sys.stderr.write(f"{prog}: error: {' '.join(message.split())} (see {prog} --help)\n")
            sys.exit(2)

    _register_components()
    problem = preset_override_error(sys.argv[1:] if args is None else [str(a) for a in args])
    if problem:
        raise ValueError(problem)
    return LightningCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_class=OneLineErrors,
        parser_kwargs={"parser_mode": "omegaconf", **({"prog": prog} if prog else {})},
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def _preset_names() -> set[str]:
    from lavit.config import PresetConfig

    names, todo = set(), [PresetConfig]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        names |= set(cls.presets)
    return names


def preset_override_error(argv: list[str]) -> str | None:
    """The message for a dotted override below a config given as a preset name, else None.

    After ``tokenizer: tiny`` (YAML or ``--model.init_args.tokenizer=tiny``), jsonargparse reads
    ``--model.init_args.tokenizer.field_size=[8,16]`` as the dataclass's fields from its defaults, the paper size,
    and drops the preset without a word (seen: a 158 M parameter "tiny" model). Keys are compared without their
    ``init_args`` parts; the ``-c`` files and the arguments are read in order, later ones replacing earlier ones."""
    import yaml

    presets, values = _preset_names(), {}

    def flatten(tree, prefix: tuple[str, ...]) -> None:
        for key, value in tree.items():
            path = prefix + tuple(p for p in str(key).split(".") if p != "init_args")
            values[path] = value
            if isinstance(value, dict):
                flatten(value, path)

    i = 0
    while i < len(argv):
        token, i = argv[i], i + 1
        if not token.startswith("--") and token != "-c":
            continue
        key, has_value, value = token.partition("=")
        if not has_value and i < len(argv) and not argv[i].startswith("-"):
            value, i = argv[i], i + 1
        if key in ("-c", "--config"):
            try:
                tree = yaml.safe_load(Path(value).read_text())
            except (OSError, yaml.YAMLError):
                continue  # LightningCLI reports the file itself
            if isinstance(tree, dict):
                flatten(tree, ())
            continue
        path = tuple(p for p in key[2:].rstrip("+").split(".") if p != "init_args")
        for n in range(2, len(path)):  # below model / data / trainer: their own value is a class name
            given = values.get(path[:n])
            if isinstance(given, str) and given in presets:
                name = key[2:].rstrip("+").rsplit(".", len(path) - n)[0]
                return (f"{key} overrides a field of the preset name {given!r} given for --{name}: a dotted override "
                        f"starts from the class defaults (the paper size), not from the preset; give the fields as a "
                        f"mapping, e.g. --{name}='{{{path[n]}: ...}}' with the preset's other fields, or write them in the YAML")
        values[path] = value
    return None


def lightning_main(args: list[str] | None = None) -> int | None:
    """Console script ``lightning``; returns 2 after printing a user error."""
    argv = sys.argv[1:] if args is None else list(args)
    return _one_line_errors("lightning", argv, lambda: lightning_cli(args, prog="lightning"))


def lavit_main(args: list[str] | None = None) -> int | None:
    """Console script ``lavit``: pipeline subcommands, else the LightningCLI."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in PIPELINE_COMMANDS:
        return pipeline_main(argv)
    if argv and argv[0] == "sweep":  # needs Lightning (predict + test), so it is routed here, not through lavit.cli
        from lightning_modules.sweep import sweep_main

        return sweep_main(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print_pipeline_help()
        print("Training and evaluation (LightningCLI): lavit {fit,validate,test,predict} -c CONFIG.yaml [--help]")
        print("Benchmark sweeps: lavit sweep -c configs/sweeps/NAME.yaml [--devices N] [--help]\n")
    return _one_line_errors("lavit", argv, lambda: lightning_cli(args, prog="lavit"))


def _one_line_errors(prog: str, argv: list[str], run) -> int | None:
    try:
        run()
    except Exception as err:
        shown = user_error(err)
        if shown is None or os.environ.get(DEBUG_ENV) == "1":
            raise
        command = " ".join([prog] + argv[:1] if argv and argv[0] in SUBCOMMANDS else [prog])
        print(f"{command}: error: {shown}", file=sys.stderr)
        return 2
    return None


def user_error(err: BaseException) -> str | None:
    """The message to show for ``err`` if it is a user error, else None (a bug: keep the traceback).

    jsonargparse wraps an error raised in ``__init__`` while it instantiates a class (the ``Union``
    of subclass mode: "Does not validate against any of the Union subtypes"), so the cause chain is
    followed past the errors jsonargparse raised to the one this project's code raised.
    """
    from omegaconf.errors import InterpolationResolutionError

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, InterpolationResolutionError):  # ${oc.env:FAKE_VIDEOS} with the variable unset
            return f"{str(err).splitlines()[0]} (config key {err.full_key})"
        origin = _raised_in(err)
        if origin is None or "jsonargparse" not in origin.parts:
            break
        err = err.__cause__ or err.__context__
    if err is None or not isinstance(err, USER_ERRORS) or not _is_ours(_raised_in(err)):
        return None
    return str(err)


def _raised_in(err: BaseException) -> Path | None:
    tb = err.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename)


def _is_ours(path: Path | None) -> bool:
    if path is None:
        return False
    import importlib

    roots = [Path(importlib.import_module(name).__file__).parent for name in PACKAGES]
    return any(path.is_relative_to(root) for root in roots)


if __name__ == "__main__":
    sys.exit(lavit_main())
