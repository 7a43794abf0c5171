"""Parsing of the tools' list-like arguments: seeds ("0-7,10"), grids ("4x2"), angle lists ("0.4,0,-0.4").

Every parser accepts the already-parsed form too (a list, a tuple), so Python callers and the CLI
share them; malformed input raises ValueError naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# Seeds feed np.random.RandomState, which accepts [0, 2**32 - 1].
MAX_SEED = 2**32 - 1
MAX_SEEDS = 100_000
_RANGE = re.compile(r"^(\d+)-(\d+)$")
_GRID = re.compile(r"^(\d+)[x,](\d+)$")


def parse_seeds(value: str | Sequence[int], name: str = "seeds") -> list[int]:
    """'0-3,10' -> [0, 1, 2, 3, 10]; ranges are inclusive (EG3D's ``parse_range``); order is kept."""
    if not isinstance(value, str):
        seeds = list(value)
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"{name}: expected integers, got {seed!r}")
    else:
        seeds = []
        for part in value.replace(" ", "").split(","):
            if match := _RANGE.match(part):
                first, last = int(match.group(1)), int(match.group(2))
                if last < first:
                    raise ValueError(f"{name}: range {part!r} ends before it starts")
                if last - first + 1 > MAX_SEEDS:
                    raise ValueError(f"{name}: range {part!r} has more than {MAX_SEEDS} seeds")
                seeds.extend(range(first, last + 1))
            elif part.isdigit():
                seeds.append(int(part))
            else:
                raise ValueError(
                    f"{name}: cannot parse {part!r} in {value!r}; expected non-negative integers and "
                    "ranges like '0-7,10'"
                )
    if not seeds:
        raise ValueError(f"{name}: expected at least one seed")
    bad = [seed for seed in seeds if not 0 <= seed <= MAX_SEED]
    if bad:
        raise ValueError(f"{name}: seed {bad[0]} is out of range; seeds must lie in [0, {MAX_SEED}]")
    return seeds


def parse_grid(value: str | Sequence[int], name: str = "grid") -> tuple[int, int]:
    """'4x2' or '4,2' -> (width 4, height 2); both positive."""
    if isinstance(value, str):
        match = _GRID.match(value.strip())
        if match is None:
            raise ValueError(f"{name}: cannot parse {value!r}; expected WxH such as '4x2'")
        width, height = int(match.group(1)), int(match.group(2))
    else:
        if len(value) != 2:
            raise ValueError(f"{name}: expected (width, height), got {value!r}")
        width, height = (int(v) for v in value)
    if width < 1 or height < 1:
        raise ValueError(f"{name}: width and height must be at least 1, got {width}x{height}")
    return width, height


def parse_floats(value: str | Sequence[float], name: str) -> list[float]:
    """'0.4,0,-0.4' -> [0.4, 0.0, -0.4]; at least one finite number."""
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        try:
            numbers = [float(p) for p in parts]
        except ValueError as err:
            raise ValueError(f"{name}: cannot parse {value!r}; expected comma-separated numbers") from err
    else:
        numbers = [float(v) for v in value]
    if not numbers:
        raise ValueError(f"{name}: expected at least one number")
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name}: expected finite numbers, got {numbers}")
    return numbers


def parse_layers(value: str | None, num_layers: int, name: str = "mix_layers") -> list[int]:
    """Style-mixing layer spec for ``num_layers`` ws: '7-' (7 to the last), '0-3', '2,5' -> indices;
    None selects the second half (the finer layers: 7- for EG3D's 14 ws)."""
    if value is None:
        return list(range(num_layers // 2, num_layers))
    value = value.replace(" ", "")
    if value.endswith("-") and value[:-1].isdigit():
        layers = list(range(int(value[:-1]), num_layers))
    else:
        layers = parse_seeds(value, name)
    if not layers or any(layer >= num_layers for layer in layers):
        raise ValueError(f"{name}: {value!r} selects no layer or one beyond the model's {num_layers} ws")
    return sorted(set(layers))


def check_positive_int(value: object, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [``minimum``, ``maximum``] (bools refused), else ValueError naming ``name``."""
    too_big = maximum is not None and isinstance(value, int) and value > maximum
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or too_big:
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name}: expected an integer {bounds}, got {value!r}")
    return value
