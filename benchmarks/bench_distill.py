"""Teacher against distilled student, side by side (``python -m benchmarks.run --only distill``).

The efficiency gain of NeRF-GAN distillation measured in one run: for a teacher preset (random
weights; speed and memory do not depend on them) and its student (``mimic3d distill``'s
architecture: the teacher's rendering resolution and super-resolution, StyleGAN2 widths), both at the
same output resolution, images/s and the forward's peak memory at one batch size, then the largest
batch within the memory budget (``--memory-budget-gb``; each probe a fresh process, as the memory
suite does), and the student/teacher ratios. The paper's figure: 14 vs 96 images on a 24 GB GPU
(6.9x). The feature image alone (the teacher's volume render, the student's convolutions) is timed
too: the super-resolution that follows is the same network in both. Full run: eg3d-ffhq512
(render 64 + SR to 512); ``--quick``: tiny-eg3d.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from benchmarks.bench_generator import (
    ForwardCase,
    build_generator,
    build_student,
    forward_call,
    generator_inputs,
)
from benchmarks.bench_memory import QUICK_BUDGET_MIB, SearchTarget, search
from benchmarks.common import BenchSettings, default_memory_budget_mib, measure_peak_memory, timeit
from mimic3d.models.student import StudentGenerator
from mimic3d.tools.viewpoints import camera_preset_for

TEACHERS = {"full": ("eg3d-ffhq512", 64), "quick": ("tiny-eg3d", 16)}


def _batch(settings: BenchSettings) -> int:
    if settings.quick:
        return 2
    return 8 if settings.device.type == "cuda" else 1


def _speed(
    G: torch.nn.Module, case: ForwardCase, settings: BenchSettings, call: Callable[[], object] | None = None
) -> tuple[float, float]:
    """(images/s, peak MiB above the loaded model) of ``call`` (default: the full forward of ``case``)."""
    call = call or forward_call(G, case, settings.device)
    with measure_peak_memory(settings.device) as memory:
        seconds = timeit(call, repeat=case.repeat, warmup=case.warmup, device=settings.device)
    return case.batch / seconds, memory.above_baseline_mib


def feature_call(G: torch.nn.Module, case: ForwardCase, device: torch.device) -> Callable[[], object]:
    """One no-grad forward of the low-resolution feature image alone: the teacher's volume render
    (backbone + renderer) or the student's convolutional synthesis, the part distillation replaces."""
    z, c = generator_inputs(case.batch, G.z_dim, device, camera_preset_for(G))

    def call() -> object:
        with torch.inference_mode():
            ws = G.mapping(z, c)
            if isinstance(G, StudentGenerator):
                return G.feature_synthesis(G.student_ws(ws, c), noise_mode="const")
            planes = G.planes(ws, noise_mode="const", residual=False)
            return G.render(planes, c, case.resolution, perturb=False)

    return call


def run(settings: BenchSettings) -> list[dict]:
    preset, resolution = TEACHERS["quick" if settings.quick else "full"]
    batch = _batch(settings)
    repeat, warmup = (1, 1) if settings.quick or settings.device.type == "cpu" else (5, 2)
    case = ForwardCase(preset, "2d", resolution, batch, repeat, warmup)
    rows, measured = [], {}
    for name, build in (("teacher", build_generator), ("student", build_student)):
        G = build(preset, settings.device)
        params = sum(p.numel() for p in G.parameters()) / 1e6
        measured[name] = _speed(G, case, settings)
        measured[f"{name} features"] = _speed(G, case, settings, feature_call(G, case, settings.device))
        del G
        what = (
            f"{preset} {'teacher (render' if name == 'teacher' else 'student (features'} {resolution} + SR)"
        )
        rows.append(
            {
                "name": what,
                "value": measured[name][0],
                "unit": "images/s",
                "notes": f"batch {batch}, median of {repeat}; {params:.1f}M parameters",
            }
        )
        rows.append(
            {
                "name": f"  {name} peak memory above the loaded model",
                "value": measured[name][1],
                "unit": "MiB",
                "notes": f"batch {batch}",
            }
        )
    for name in ("teacher", "student"):
        speed, peak = measured[f"{name} features"]
        part = "volume render" if name == "teacher" else "convolutional synthesis"
        rows.append(
            {
                "name": f"  {name}: {resolution}^2 feature image alone ({part})",
                "value": speed,
                "unit": "images/s",
                "notes": f"peak {peak:,.0f} MiB above the loaded model, batch {batch}",
            }
        )
    rows.append(
        {
            "name": "  speed: student / teacher",
            "value": measured["student"][0] / measured["teacher"][0],
            "unit": "x",
            "notes": "same output resolution, one process",
        }
    )
    budget = settings.memory_budget_mib
    if budget is None:
        budget = QUICK_BUDGET_MIB if settings.quick else default_memory_budget_mib(settings.device)
    found = {}
    for name in ("teacher", "student"):
        target = SearchTarget(preset, "2d", resolution, student=name == "student")
        result, _ = search(target, settings, budget)
        found[name] = result
        bound = "" if result.exact else " (lower bound"
        if not result.exact and result.predicted is not None:
            bound += f"; linear fit of the probes: {result.predicted}"
        bound += ")" if bound else ""
        rows.append(
            {
                "name": f"max batch within {budget / 1024:.3g} GiB: {target.describe()}",
                "value": result.batch,
                "unit": "images",
                "notes": f"probes {dict(result.probes)}{bound}".replace("inf", "failed"),
            }
        )
    teacher_batch, student_batch = found["teacher"].batch, found["student"].batch
    ratio = student_batch / teacher_batch if teacher_batch else math.inf
    rows.append(
        {
            "name": "  max batch: student / teacher",
            "value": ratio,
            "unit": "x",
            "notes": "paper (24 GB GPU, EG3D FFHQ): 96 / 14 = 6.9x",
        }
    )
    return rows
