"""The largest batch whose peak memory fits a budget, found with few probes (pure logic, no torch).

Search: batch 1, then 2; while no probe has exceeded the budget, jump to the batch at which the line
through the two largest fitting probes reaches the budget (at least one more than the largest fitting
batch, so a constant or sublinear cost keeps climbing); once a probe exceeds it, bisect between the
largest fitting and the smallest exceeding batch. Memory that grows linearly with the batch is
therefore pinned in four probes (1, 2, the prediction, the prediction + 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class BatchSearch:
    """Outcome of ``search_max_batch``.

    Attributes:
        batch: largest probed batch whose peak fits the budget (0: not even batch 1 fits).
        over: smallest probed batch whose peak exceeds the budget (None: none did).
        probes: batch -> measured peak (``math.inf`` for a probe that failed, e.g. out of memory),
            in probing order.
        stopped: why the search ended: ``exact`` (over == batch + 1), ``probes`` (probe limit),
            ``limit`` (reached ``max_batch``), ``declined`` (``can_probe`` refused the next batch),
            ``inconsistent`` (a batch fitted above one that did not: the peak is not monotonic).
        predicted: batch at which the line through the two largest fitting probes meets the budget
            (None with fewer than two finite fitting probes or a non-increasing cost).
    """

    batch: int
    over: int | None
    probes: dict[int, float] = field(default_factory=dict)
    stopped: str = "exact"
    predicted: int | None = None

    @property
    def exact(self) -> bool:
        return self.over is not None and self.over == self.batch + 1


def linear_prediction(probes: dict[int, float], budget: float) -> int | None:
    """Largest batch within ``budget`` on the line through the two largest fitting probes."""
    fitting = sorted(b for b, peak in probes.items() if math.isfinite(peak) and peak <= budget)
    if len(fitting) < 2:
        return None
    b1, b2 = fitting[-2], fitting[-1]
    slope = (probes[b2] - probes[b1]) / (b2 - b1)
    if slope <= 0:
        return None
    return b2 + math.floor((budget - probes[b2]) / slope)


def _next_batch(probes: dict[int, float], fit: int, over: int | None, budget: float) -> int:
    if not probes:
        return 1
    if over is not None:
        return (fit + over) // 2
    predicted = linear_prediction(probes, budget)
    if predicted is None:
        return 2 * fit
    return max(fit + 1, predicted)


def search_max_batch(
    peak_of: Callable[[int], float],
    budget: float,
    max_probes: int = 6,
    max_batch: int = 4096,
    can_probe: Callable[[int], bool] | None = None,
) -> BatchSearch:
    """Find the largest batch ``b <= max_batch`` with ``peak_of(b) <= budget`` in at most ``max_probes``.

    Args:
        peak_of: measured peak memory of one run at a batch (``math.inf`` when the run failed);
            assumed non-decreasing in the batch.
        budget: memory budget, in the unit ``peak_of`` returns.
        max_probes: most calls of ``peak_of``.
        max_batch: largest batch worth probing.
        can_probe: asked before each probe (e.g. "is there time left for this batch?"); False stops.
    """
    if max_probes < 1:
        raise ValueError(f"max_probes: expected >= 1, got {max_probes}")
    if max_batch < 1:
        raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
    probes: dict[int, float] = {}
    fit, over = 0, None
    while True:
        if over is not None and over == fit + 1:
            stopped = "exact"
            break
        if over is not None and over <= fit:
            stopped = "inconsistent"
            break
        if fit >= max_batch:
            stopped = "limit"
            break
        if len(probes) >= max_probes:
            stopped = "probes"
            break
        batch = min(_next_batch(probes, fit, over, budget), max_batch)
        if can_probe is not None and not can_probe(batch):
            stopped = "declined"
            break
        peak = peak_of(batch)
        probes[batch] = peak
        if peak <= budget:
            fit = max(fit, batch)
        else:
            over = batch if over is None else min(over, batch)
    return BatchSearch(fit, over, probes, stopped, linear_prediction(probes, budget))
