"""Argument types shared by every command: argparse reports a bad value naming the flag the user typed
(``argument --resolution: expected an integer in [2, 4096], got '-5'``), exit status 2.

Each type checks what its value can be checked for alone; checks that need the model or several
flags stay in the tool functions, whose errors the console script maps back to flags
(``mimic3d.cli.main.user_message``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from mimic3d.paths import expand_path

CHECKPOINT_HELP = (
    "checkpoint: a run folder (its latest snapshot), a snapshot folder, a network folder (e.g. "
    "SNAPSHOT/G_ema), a .safetensors file, an official EG3D/Mimic3D/EpiGRAF .pkl, or a built-in "
    "model's name (heads64: a small Mimic3D trained on the synthetic heads, docs/models.md)"
)


def path(text: str) -> str:
    """A file or folder argument with ``~`` and ``$VARIABLES`` expanded."""
    return expand_path(text)


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An int in [minimum, maximum] (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if (
            value is None
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            raise argparse.ArgumentTypeError(
                f"expected {_describe('an integer', minimum, maximum)}, got {text!r}"
            )
        return value

    parse.__name__ = "integer"
    return parse


def number(
    minimum: float | None = None, maximum: float | None = None, above: float | None = None
) -> Callable[[str], float]:
    """A finite float (anything ``float()`` reads) in [minimum, maximum], or > ``above``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        bad = not math.isfinite(value)
        bad = bad or (minimum is not None and value < minimum) or (maximum is not None and value > maximum)
        bad = bad or (above is not None and not value > above)
        if bad:
            what = (
                f"a number > {above:g}"
                if above is not None
                else _describe("a finite number", minimum, maximum)
            )
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def checked(parse: Callable[[str], Any]) -> Callable[[str], str]:
    """A type that validates the text with a tool's parser (``parse_seeds``, ``parse_grid``, ...) and
    keeps the text; the parser's ValueError becomes argparse's error for the flag."""

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None
        return text

    check.__name__ = getattr(parse, "__name__", "value")
    return check


def _describe(kind: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} in [{minimum:g}, {maximum:g}]"
    if minimum is not None:
        return f"{kind} >= {minimum:g}"
    if maximum is not None:
        return f"{kind} <= {maximum:g}"
    return kind


positive_int = integer(1)
non_negative_int = integer(0)
positive_number = number(above=0.0)
