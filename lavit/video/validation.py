"""Argument checks where parameters enter the ``lavit.video`` API: a ValueError naming the parameter and value."""

from __future__ import annotations

import math
import numbers
from typing import Iterable


def check_positive(name: str, value, *, integer: bool = False, minimum: int = 1, allow_none: bool = False) -> None:
    """``value`` must be a finite number > 0 (``integer``: an int >= ``minimum``); None only with ``allow_none``."""
    if value is None and allow_none:
        return
    if integer:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
        if not ok:
            raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_choice(name: str, value, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_size(name: str, value) -> None:
    """``value`` must be an (H, W) pair of integers >= 1."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    ok = len(pair) == 2 and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in pair)
    if not ok:
        raise ValueError(f"{name} must be (height, width) with integers >= 1, got {value!r}")
