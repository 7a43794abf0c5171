"""Viewer frame times (``python -m benchmarks.run --only viewer``).

Seconds per frame of ``mimic3d view``'s frame renderer (``FrameRenderer.render``, what the browser is
sent, tri-planes cached) for two models with random weights: the demo model (the generator of the
``tiny-mimic3d-heads`` training preset, which ``mimic3d demo`` trains) and an ffhq512-size Mimic3D
(``mimic3d-ffhq512-stage2``). Per model: the tri-planes (computed once per latent: a new seed, psi, blend or
style mix), the preview while the camera moves (a 32^2 volume render, no super-resolution), the 3D
branch at 64^2, 128^2 and 256^2, and the 2D branch volume-rendered at 64^2, 128^2 and 256^2 then
super-resolved to the model's image size. The camera is frontal; batch 1, as in the viewer.
``--quick`` runs the demo model only, at 32^2 and 64^2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from benchmarks.common import BenchSettings, synchronize, timeit
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.models.config import GeneratorConfig
from mimic3d.tools.viewpoints import camera_preset_for
from mimic3d.training.presets import load_config
from mimic3d.viewer.frames import FrameRenderer, ViewSettings

DEMO_PRESET = "tiny-mimic3d-heads"
PREVIEW = 32


@dataclass(frozen=True)
class ModelPlan:
    name: str  # shown in the table
    sizes: tuple[int, ...]
    repeat: int
    warmup: int


def model_plans(settings: BenchSettings) -> list[ModelPlan]:
    if settings.quick:
        return [ModelPlan("demo", (32, 64), 1, 1)]
    if settings.device.type == "cuda":
        return [
            ModelPlan("demo", (64, 128, 256), 10, 2),
            ModelPlan("mimic3d-ffhq512-stage2", (64, 128, 256), 5, 1),
        ]
    # CPU: a 256^2 frame of the full-size model takes minutes; each is timed once.
    return [
        ModelPlan("demo", (64, 128, 256), 5, 1),
        ModelPlan("mimic3d-ffhq512-stage2", (64, 128, 256), 1, 0),
    ]


def model_config(name: str) -> GeneratorConfig:
    if name == "demo":
        return load_config(DEMO_PRESET, [])[0].generator
    return generator_preset(name)


def _rows(plan: ModelPlan, settings: BenchSettings) -> list[dict]:
    torch.manual_seed(0)
    G = TriplaneGenerator(model_config(plan.name)).eval().requires_grad_(False).to(settings.device)
    preset = camera_preset_for(G)
    label = preset.frontal_label().float()
    renderer = FrameRenderer(G, preset, cache_size=1)
    rows: list[dict] = []

    started = time.perf_counter()
    renderer.cache.get(ViewSettings(seed=0), residual=True)
    synchronize(settings.device)
    planes_seconds = time.perf_counter() - started
    kind = "P^c + P^r" if G.config.sr3d else "P^c"
    rows.append(
        {
            "name": f"{plan.name}: tri-planes of a new latent ({kind})",
            "value": planes_seconds,
            "unit": "s",
            "notes": "once per seed / psi / blend / mix, then cached",
        }
    )

    def frame_seconds(view: ViewSettings, preview: bool = False) -> float:
        def call() -> None:
            renderer.render(view, label, preview=preview)

        return timeit(call, repeat=plan.repeat, warmup=plan.warmup, device=settings.device)

    def row(name: str, seconds: float, notes: str = "") -> dict:
        shown = [f"{1 / seconds:.3g} frames/s", notes, f"median of {plan.repeat}"]
        return {
            "name": f"{plan.name}: {name}",
            "value": seconds,
            "unit": "s/frame",
            "notes": "; ".join(filter(None, shown)),
        }

    preview = ViewSettings(seed=0, branch="3d", preview_resolution=PREVIEW)
    rows.append(row(f"preview while moving, {PREVIEW}^2", frame_seconds(preview, True), "no SR"))
    for size in plan.sizes:
        rows.append(
            row(
                f"3d branch frame {size}^2",
                frame_seconds(ViewSettings(seed=0, branch="3d", resolution_3d=size)),
            )
        )
    for size in plan.sizes:
        seconds = frame_seconds(ViewSettings(seed=0, branch="2d", resolution_2d=size))
        rows.append(row(f"2d branch frame, render {size}^2 + SR", seconds, f"to {G.img_resolution}^2"))
    return rows


def run(settings: BenchSettings) -> list[dict]:
    rows: list[dict] = []
    for plan in model_plans(settings):
        rows += _rows(plan, settings)
    return rows
