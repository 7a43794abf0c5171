"""The viewer benchmark suite's quick run: one row per measured frame kind, all timed."""

from __future__ import annotations

import math

import torch

from benchmarks.bench_viewer import run
from benchmarks.common import BenchSettings


def test_viewer_suite_quick_rows():
    rows = run(BenchSettings(device=torch.device("cpu"), quick=True))
    names = [row["name"] for row in rows]
    assert names == [
        "demo: tri-planes of a new latent (P^c + P^r)",
        "demo: preview while moving, 32^2",
        "demo: 3d branch frame 32^2",
        "demo: 3d branch frame 64^2",
        "demo: 2d branch frame, render 32^2 + SR",
        "demo: 2d branch frame, render 64^2 + SR",
    ]
    assert all(math.isfinite(row["value"]) and row["value"] > 0 for row in rows)
    assert all(row["unit"] == "s/frame" for row in rows[1:])
