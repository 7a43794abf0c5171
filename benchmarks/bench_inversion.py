"""Inversion time per step and peak memory (``python -m benchmarks.run --only inversion``).

One target view, the default losses (LPIPS + L2; LPIPS untrained: the same network is evaluated, no
weights are read), the noise maps optimised, PTI's locality regulariser every step: the latent stage
(W+) and the pivotal-tuning stage of ``mimic3d.inversion.invert_targets``, each timed as the mean over
its steps after one warm-up step. Random weights (speed does not depend on them).

CPU: the tiny presets at 32^2 (the size of the CPU demo model: tiny-eg3d 2D branch, tiny-mimic3d 2D
and 3D branch) and eg3d-ffhq512's 2D branch (LPIPS on the 256^2 downsample, as the projector does).
CUDA adds mimic3d-ffhq512's 3D branch at 512^2. ``--quick``: tiny-eg3d only, a few steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from benchmarks.common import BenchSettings, measure_peak_memory, synchronize
from mimic3d.camera import PRESETS
from mimic3d.inversion import InversionConfig, Targets, invert_targets, render_views
from mimic3d.losses import LPIPS
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.viewpoints import conditioning_label, orbit_labels


@dataclass(frozen=True)
class InversionCase:
    preset: str
    branch: str
    steps: int  # timed steps per stage (one more runs as warm-up)


def inversion_cases(settings: BenchSettings) -> list[InversionCase]:
    if settings.quick:
        return [InversionCase("tiny-eg3d", "2d", 2)]
    cases = [
        InversionCase("tiny-eg3d", "2d", 20),
        InversionCase("tiny-mimic3d", "2d", 20),
        InversionCase("tiny-mimic3d", "3d", 20),
        InversionCase("eg3d-ffhq512", "2d", 2 if settings.device.type == "cpu" else 20),
    ]
    if settings.device.type == "cuda":
        cases.append(InversionCase("mimic3d-ffhq512", "3d", 10))
    return cases


def _stage_seconds(G, targets, lpips, config: InversionConfig, device) -> dict[str, float]:
    """Mean seconds per step of each stage, the first step excluded: (total of steps + 1) - (total of 1)."""
    totals = []
    for steps in (1, config.steps + 1):
        run_config = dataclasses.replace(config, steps=steps, pti_steps=steps)
        synchronize(device)
        result = invert_targets(G, targets, PRESETS["ffhq"], run_config, lpips, progress=False)
        synchronize(device)
        totals.append({stage: s * len(result.losses[stage]) for stage, s in result.seconds_per_step.items()})
    return {stage: (totals[1][stage] - totals[0][stage]) / config.steps for stage in totals[0]}


def _case_rows(case: InversionCase, settings: BenchSettings, lpips: LPIPS) -> list[dict]:
    device = settings.device
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset(case.preset)).to(device).eval().requires_grad_(False)
    preset = PRESETS["ffhq"]
    label = orbit_labels([1.77], 1.47, preset, device)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, device=device), conditioning_label(preset, 1, device))
        targets = Targets(render_views(G, ws, label, case.branch).clamp(-1, 1), label)
    config = InversionConfig(
        method="pti", pivot="w+", branch=case.branch, steps=case.steps, w_avg_samples=1000
    )
    with measure_peak_memory(device) as memory:
        seconds = _stage_seconds(G, targets, lpips, config, device)
    name = f"invert {case.preset} {case.branch} branch, {G.img_resolution}^2, one view"
    return [
        {
            "name": f"{name}: latent (W+) step",
            "value": seconds["latent"],
            "unit": "s/step",
            "notes": f"mean of {case.steps} steps after a warm-up; LPIPS + L2 + noise regulariser",
        },
        {
            "name": "  pivotal tuning step",
            "value": seconds["pti"],
            "unit": "s/step",
            "notes": "every weight; locality regulariser every step (one more render pair + LPIPS)",
        },
        {
            "name": "  peak memory",
            "value": memory.above_baseline_mib,
            "unit": "MiB",
            "notes": f"{memory.method}; both stages",
        },
    ]


def run(settings: BenchSettings) -> list[dict]:
    lpips = LPIPS.untrained(0).to(settings.device)
    rows: list[dict] = []
    for case in inversion_cases(settings):
        rows += _case_rows(case, settings, lpips)
    return rows
