"""Tri-plane generator speed and memory (``python -m benchmarks.run --only generator``).

Mimic3D stage-2 FFHQ-512 architecture (3D-aware stream at 4..256, S^3D, 2D super-resolution to 512),
random weights, batch 2, no grad, noise "const", deterministic sampling. Reference numbers: the
official Mimic3D code on this machine took 17.3 s for the 2D branch (render 128 + SR to 512) and
28.6 s for the 3D branch rendered at 128 x 128 (issue 3). The FLOP floor is the multiply-adds our
forward actually runs (convolutions and matrix products, counted by torch's FlopCounterMode)
divided by the measured matmul rate.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import current_rss_mb, matmul_gflops, peak_rss_mb, timeit
from mimic3d.camera import intrinsics_matrix, make_label, orbit_cam2world
from mimic3d.models import TriplaneGenerator, generator_preset

BATCH = 2
OFFICIAL_SECONDS = {"2d": 17.3, "3d": 28.6}
TARGET_SPEEDUP = {"2d": 1.6, "3d": 4.0}


def _inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    cam2world = orbit_cam2world(
        torch.linspace(1.3, 1.8, batch), torch.full((batch,), 1.5), 2.7, (0.0, 0.0, 0.2)
    )
    c = make_label(cam2world, intrinsics_matrix(4.2647).expand(batch, 3, 3))
    return torch.randn(batch, 512, generator=gen), c


def _gflop(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def run() -> list[dict]:
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("mimic3d-ffhq512")).eval()
    z, c = _inputs(BATCH)
    rate = matmul_gflops()
    calls = {
        "2d": lambda: G(z, c, branch="2d", neural_rendering_resolution=128, perturb=False),
        "3d": lambda: G(z, c, branch="3d", neural_rendering_resolution=128, perturb=False),
    }
    rows = []
    with torch.inference_mode():
        # First, so that the process peak is this render's: 512 x 512 rays of P^c + P^r, batch 1.
        baseline = current_rss_mb()
        seconds = timeit(lambda: G(z[:1], c[:1], branch="3d", perturb=False), repeat=1, warmup=0)
        rows.append(
            {
                "name": "mimic3d-ffhq512 3d branch 512 x 512, batch 1",
                "value": seconds,
                "unit": "s",
                "notes": f"{G.renderer.config.chunk_rays} rays per chunk",
            }
        )
        rows.append(
            {
                "name": "  peak memory above baseline (3d 512 x 512)",
                "value": peak_rss_mb() - baseline,
                "unit": "MiB",
                "notes": "process peak RSS minus RSS before the call",
            }
        )
        for branch, call in calls.items():
            seconds = timeit(call, repeat=2, warmup=1)
            gflop = _gflop(call)
            speedup = OFFICIAL_SECONDS[branch] / seconds
            what = "render 128 + SR to 512" if branch == "2d" else "P^c + P^r rendered at 128"
            rows += [
                {
                    "name": f"mimic3d-ffhq512 {branch} branch, batch {BATCH} ({what})",
                    "value": seconds,
                    "unit": "s",
                    "notes": f"official {OFFICIAL_SECONDS[branch]} s",
                },
                {
                    "name": f"  speed-up over official ({branch})",
                    "value": speedup,
                    "unit": "x",
                    "notes": f"target >= {TARGET_SPEEDUP[branch]}x",
                },
                {
                    "name": f"  FLOP floor ({branch}): {gflop:,.0f} GFLOP at {rate:.0f} GFLOP/s",
                    "value": gflop / rate,
                    "unit": "s",
                    "notes": f"{gflop / rate / seconds:.0%} of the measured time",
                },
            ]
    return rows
