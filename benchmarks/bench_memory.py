"""Largest inference batch within a memory budget (``python -m benchmarks.run --only memory``).

For mimic3d-ffhq512-stage2's 2D branch (render 128 + SR to 512) and its 3D branch at 512 x 512, every
candidate batch runs in a fresh process (``benchmarks.probe_batch``), whose whole peak is compared
with the budget (``--memory-budget-gb``; default: the GPU's memory, or 8 GiB on CPU). The batches
probed follow ``batch_search.search_max_batch``. On CPU a large probe takes many minutes, so each
search gets ``--search-seconds`` (default 180 s on CPU) and skips a probe that its predicted time
(from the probes so far) would overrun; the result then is a lower bound plus the batch the linear
fit of the measured peaks predicts. ``--quick`` searches the tiny preset with a few small probes.
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.batch_search import BatchSearch, search_max_batch
from benchmarks.bench_generator import RENDER_2D
from benchmarks.common import CPU_SEARCH_SECONDS, BenchSettings, default_memory_budget_mib

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_PROBES = 6
QUICK_BUDGET_MIB = 1024.0
# A probe gets this long beyond its predicted time before it is treated as hung.
PROBE_GRACE_SECONDS = 300.0


@dataclass(frozen=True)
class SearchTarget:
    preset: str
    branch: str
    resolution: int
    student: bool = False  # the distilled student of the preset (its features at ``resolution``)

    def describe(self) -> str:
        if self.student:
            return f"student of {self.preset}, features {self.resolution} + SR"
        if self.branch == "2d":
            return f"{self.preset} 2d branch, render {self.resolution} + SR"
        return f"{self.preset} 3d branch at {self.resolution} x {self.resolution}"


def search_targets(quick: bool) -> list[SearchTarget]:
    if quick:
        return [SearchTarget("tiny-mimic3d", "2d", 16), SearchTarget("tiny-mimic3d", "3d", 32)]
    name = "mimic3d-ffhq512-stage2"
    return [SearchTarget(name, "2d", RENDER_2D), SearchTarget(name, "3d", 512)]


@dataclass
class ProbeClock:
    """Wall time of a search so far, and a prediction of the next probe's: a fixed process cost
    (start-up, model build) plus a per-image forward cost, each the largest seen so far."""

    allowance: float | None
    start: float = field(default_factory=time.perf_counter)
    startup: float = 0.0
    per_image: float = 0.0

    def record(self, batch: int, wall: float, forward: float) -> None:
        if math.isfinite(forward):
            self.per_image = max(self.per_image, forward / batch)
            self.startup = max(self.startup, wall - forward)

    def predicted(self, batch: int) -> float:
        return self.startup + self.per_image * batch

    def can_probe(self, batch: int) -> bool:
        if self.allowance is None:
            return True
        return time.perf_counter() - self.start + self.predicted(batch) <= self.allowance


def run_probe(target: SearchTarget, batch: int, device: str, timeout: float | None) -> dict:
    """Run ``benchmarks.probe_batch`` in a child process (with this process's torch thread count);
    its JSON result plus ``wall`` seconds.

    A child killed by a signal (the kernel's out-of-memory killer) counts as failed; any other error
    raises ``RuntimeError`` with the child's last output.
    """
    spec = {"preset": target.preset, "branch": target.branch, "resolution": target.resolution}
    spec["student"] = target.student
    spec.update(batch=batch, device=device, threads=torch.get_num_threads())
    command = [sys.executable, "-m", "benchmarks.probe_batch", json.dumps(spec)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"probe {spec}: no result after {timeout:.0f} s") from err
    wall = time.perf_counter() - start
    if proc.returncode < 0:
        failed = f"killed by signal {-proc.returncode} (out of memory?)"
        return {
            "batch": batch,
            "peak_mib": math.inf,
            "forward_seconds": math.nan,
            "wall": wall,
            "failed": failed,
        }
    if proc.returncode != 0:
        raise RuntimeError(f"probe {spec} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def search(
    target: SearchTarget, settings: BenchSettings, budget_mib: float
) -> tuple[BatchSearch, ProbeClock]:
    """The max-batch search of ``target`` with probes in child processes, within the time allowance."""
    allowance = settings.search_seconds
    if allowance is None and settings.device.type == "cpu" and not settings.quick:
        allowance = CPU_SEARCH_SECONDS
    clock = ProbeClock(allowance)

    def peak_of(batch: int) -> float:
        timeout = None if allowance is None else clock.predicted(batch) + PROBE_GRACE_SECONDS
        result = run_probe(target, batch, settings.device.type, timeout)
        clock.record(batch, result["wall"], result["forward_seconds"])
        outcome = result["failed"] or f"{result['peak_mib']:,.0f} MiB"
        print(
            f"  probe {target.describe()}, batch {batch}: {outcome}, {result['wall']:.1f} s", file=sys.stderr
        )
        return math.inf if result["failed"] else result["peak_mib"]

    max_probes, max_batch = (3, 16) if settings.quick else (MAX_PROBES, 4096)
    found = search_max_batch(peak_of, budget_mib, max_probes, max_batch, clock.can_probe)
    return found, clock


def _notes(found: BatchSearch, clock: ProbeClock, device_type: str) -> str:
    probes = ", ".join(
        f"{b}: {'failed' if math.isinf(p) else f'{p:,.0f} MiB'}" for b, p in found.probes.items()
    )
    if found.exact:
        verdict = f"exact ({found.over} exceeds the budget)"
    elif found.stopped == "declined":
        verdict = (
            f"lower bound: the next probe would overrun the {clock.allowance:.0f} s allowance "
            f"(~{clock.per_image:.1f} s per image)"
        )
    elif found.stopped == "limit":
        verdict = "lower bound: the largest batch searched fits"
    else:
        verdict = f"lower bound (stopped: {found.stopped})"
    if not found.exact and found.predicted is not None:
        verdict += f"; the line through the largest two fitting probes predicts {found.predicted}"
    measured = "peak RSS of the process" if device_type == "cpu" else "max_memory_allocated"
    return f"{verdict}; probes (batch: {measured}, each a fresh process): {probes}"


def run(settings: BenchSettings) -> list[dict]:
    budget = settings.memory_budget_mib
    if budget is None:
        budget = QUICK_BUDGET_MIB if settings.quick else default_memory_budget_mib(settings.device)
    if settings.device.type == "cuda":
        # The probes run beside this process: hand back the blocks its allocator cached for earlier suites.
        gc.collect()
        torch.cuda.empty_cache()
    rows = []
    for target in search_targets(settings.quick):
        found, clock = search(target, settings, budget)
        rows.append(
            {
                "name": f"max batch within {budget / 1024:.3g} GiB: {target.describe()}",
                "value": found.batch,
                "unit": "images",
                "notes": _notes(found, clock, settings.device.type),
            }
        )
    return rows
