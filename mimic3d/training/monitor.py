"""What a run shows and records: log lines, per-tick statistics, TensorBoard, a progress bar.

Files in the run folder (written by the main process only):
- ``log.txt``: every log line;
- ``stats.jsonl``: one JSON object per tick, ``{"Loss/G/loss": {"mean", "num"}, ...,
  "Progress/kimg": ..., "Timing/sec_per_kimg": ..., "timestamp": ...}`` (StyleGAN's layout);
- TensorBoard event files (``tensorboard --logdir <run>``): the same scalars, the sample grids.
Statistics are averaged over all processes.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from mimic3d.training.distributed import all_reduce_

LOGGER_NAME = "mimic3d.training"
# Phase objectives shown in the progress bar, when the phase ran this step.
BAR_KEYS = {"G": "Gmain", "D": "Dmain", "Dpatch": "Dpatch_main"}


class StatsCollector:
    """Running sums of named per-sample statistics, reduced over processes once per tick.

    Sums stay on the statistics' device and counts on the host until ``reduce``: adding costs no
    host-device transfer.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, name: str, values: Tensor) -> None:
        total = values.detach().flatten().to(torch.float64).sum()
        self._sums[name] = self._sums[name] + total if name in self._sums else total
        self._counts[name] = self._counts.get(name, 0) + values.numel()

    def reduce(self) -> dict[str, dict[str, float]]:
        """{name: {"mean", "num"}} over all processes since the last call (then cleared).

        Every process must hold the same names (they run the same phases).
        """
        names = sorted(self._sums)
        (self._sums, sums), (self._counts, counts) = ({}, self._sums), ({}, self._counts)
        if not names:
            return {}
        device = sums[names[0]].device
        count_column = torch.tensor([float(counts[n]) for n in names], dtype=torch.float64).to(device)
        pairs = torch.stack([torch.stack([sums[n] for n in names]), count_column], dim=1)
        stacked = all_reduce_(pairs).cpu().tolist()
        return {n: {"mean": s / max(c, 1.0), "num": c} for n, (s, c) in zip(names, stacked)}


class RunMonitor:
    """Log, statistics files, TensorBoard and progress bar of one process (silent off the main one)."""

    def __init__(
        self, run_dir: Path, is_main: bool, total_kimg: float, start_kimg: float, progress_bar: bool
    ) -> None:
        self.run_dir, self.is_main = Path(run_dir), is_main
        self.logger = logging.getLogger(f"{LOGGER_NAME}.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self._writer = None
        self._bar = None
        if not is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.run_dir / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.logger.addHandler(handler)
        self._stats_file = open(self.run_dir / "stats.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.run_dir))
        if progress_bar:
            self._bar = tqdm(
                total=round(total_kimg, 3),
                initial=round(start_kimg, 3),
                unit="kimg",
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}{postfix}]",
                file=sys.stderr,
            )

    def log(self, message: str) -> None:
        """A line on the console (above the progress bar) and in ``log.txt``."""
        if not self.is_main:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)
        self.logger.info(message)

    def advance(self, cur_kimg: float, sec_per_kimg: float | None, losses: Mapping[str, float]) -> None:
        """Move the progress bar to ``cur_kimg`` and show speed and this step's phase objectives."""
        if self._bar is None:
            return
        self._bar.n = round(cur_kimg, 3)
        postfix = {} if sec_per_kimg is None else {"s/kimg": f"{sec_per_kimg:.1f}"}
        postfix.update({short: f"{losses[key]:.3f}" for short, key in BAR_KEYS.items() if key in losses})
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def write_tick(
        self, stats: Mapping[str, Mapping[str, float]], scalars: Mapping[str, float], nimg: int
    ) -> None:
        """Append one ``stats.jsonl`` record and the matching TensorBoard scalars."""
        if not self.is_main:
            return
        record = {**{k: dict(v) for k, v in stats.items()}, **scalars, "timestamp": time.time()}
        self._stats_file.write(json.dumps(record) + "\n")
        self._stats_file.flush()
        for name, value in stats.items():
            self._writer.add_scalar(name, value["mean"], global_step=nimg, walltime=record["timestamp"])
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, global_step=nimg, walltime=record["timestamp"])
        self._writer.flush()

    def write_images(self, images: Mapping[str, np.ndarray], nimg: int) -> None:
        if not self.is_main:
            return
        for tag, image in images.items():
            self._writer.add_image(tag, image, global_step=nimg, dataformats="HWC")
        self._writer.flush()

    def write_metric(self, name: str, value: float, nimg: int) -> None:
        if self.is_main:
            self._writer.add_scalar(f"Metrics/{name}", value, global_step=nimg)
            self._writer.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._stats_file.close()
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
