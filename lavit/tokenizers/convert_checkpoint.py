"""Convert a MotionVQVAE checkpoint written before the tokenizer config was nested (main at 04a15bb and
earlier: ``hyper_parameters`` holding ``dim``, ``num_heads``, ... flat) to the current layout
(``hyper_parameters["tokenizer"] = {dim: ..., ...}``), so ``MotionVQVAE.load_from_checkpoint`` and
``lightning fit/validate/test --ckpt_path`` take it::

    python -m lavit.tokenizers.convert_checkpoint OLD.ckpt NEW.ckpt

Weights, optimiser and loop states are copied unchanged. (``lavit.load_motion_tokenizer`` reads both
layouts without conversion.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from lavit.tokenizers.loading import is_legacy_hyperparameters, nest_legacy_hyperparameters
from lavit.weights import WeightsError, read_checkpoint


def convert_checkpoint(old: str | os.PathLike, new: str | os.PathLike) -> Path:
    """Write ``new``: ``old`` with its tokenizer hyper-parameters nested (a copy when already nested).

    Raises:
        lavit.weights.WeightsError: ``old`` is not a readable Lightning checkpoint.
    """
    checkpoint = read_checkpoint(old)
    if "state_dict" not in checkpoint or not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise WeightsError(old, "not a MotionVQVAE Lightning checkpoint (no state_dict / hyper_parameters)")
    if is_legacy_hyperparameters(checkpoint["hyper_parameters"]):
        checkpoint["hyper_parameters"] = nest_legacy_hyperparameters(checkpoint["hyper_parameters"])
    new = Path(new)
    new.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, new)
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lavit.tokenizers.convert_checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="checkpoint with flat tokenizer hyper-parameters")
    parser.add_argument("new", type=Path, help="converted checkpoint to write")
    args = parser.parse_args(argv)
    try:
        print(f"wrote {convert_checkpoint(args.old, args.new)}")
    except (FileNotFoundError, ValueError) as error:
        print(f"convert_checkpoint: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
