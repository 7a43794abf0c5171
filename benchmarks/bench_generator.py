"""Tri-plane generator forward speed and memory (``python -m benchmarks.run --only generator``).

Images/s and peak memory per preset, branch and volume-render resolution: mimic3d-ffhq512-stage2's 2D branch
(render 128 + super-resolution to 512), its 3D branch rendered at 128, 256 and 512 (P^c + P^r, chunked
rays), eg3d-ffhq512 (render 128 + SR to 512) and epigraf-ffhq512's full 512^2 render (512^2 x 96
tri-plane, 48 + 48 samples, EpiGRAF integration, its own cameras); random weights, no grad, noise
"const", no sampling jitter. Peak memory is the forward's own, above what was resident with the model
loaded.

On CPU the 2D branch and the 3D branch at 128 (batch 2) are compared with the official Mimic3D code
on this machine: 17.3 s and 28.6 s (issue 3). The FLOP floor is the multiply-adds our forward runs
(convolutions and matrix products, counted by torch's FlopCounterMode) at the run's measured matmul
rate. ``--quick`` runs the tiny presets instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import BenchSettings, matmul_gflops, measure_peak_memory, timeit
from mimic3d.camera import PRESETS, CameraPreset, intrinsics_matrix, make_label, orbit_cam2world
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.models.config import EPIGRAF_FACE_RENDERING, epigraf_architecture
from mimic3d.models.student import StudentGenerator, student_config
from mimic3d.tools.viewpoints import camera_preset_for
from mimic3d.training.presets import load_config

OFFICIAL_SECONDS = {"2d": 17.3, "3d": 28.6}  # official Mimic3D, batch 2, render 128, this CPU
OFFICIAL_BATCH, OFFICIAL_RENDER = 2, 128
TARGET_SPEEDUP = {"2d": 1.6, "3d": 4.0}
RENDER_2D = 128  # the 2D branch's volume-render resolution of the released 512 models


@dataclass(frozen=True)
class ForwardCase:
    """One timed forward: ``preset`` at ``batch`` through ``branch``, volume-rendered at ``resolution``."""

    preset: str
    branch: str
    resolution: int
    batch: int
    repeat: int
    warmup: int
    compare_official: bool = False
    count_flops: bool = False

    def __post_init__(self) -> None:
        if self.compare_official and (self.batch, self.resolution) != (OFFICIAL_BATCH, OFFICIAL_RENDER):
            raise ValueError(
                f"ForwardCase: the official timings are for batch {OFFICIAL_BATCH} rendered at "
                f"{OFFICIAL_RENDER}, got batch {self.batch} at {self.resolution}"
            )


def forward_cases(settings: BenchSettings) -> list[ForwardCase]:
    """The plan of this device and mode (CPU: a few slow calls; CUDA: larger batches, more repeats)."""
    if settings.quick:
        return [
            ForwardCase("tiny-mimic3d", "3d", 32, 2, 1, 1),
            ForwardCase("tiny-mimic3d", "3d", 16, 2, 1, 1),
            ForwardCase("tiny-mimic3d", "2d", 16, 2, 1, 1, count_flops=True),
            ForwardCase("tiny-eg3d", "2d", 16, 2, 1, 1),
            ForwardCase("tiny-epigraf", "3d", 32, 2, 1, 1),
        ]
    if settings.device.type == "cuda":
        return [
            ForwardCase("mimic3d-ffhq512-stage2", "3d", 512, 4, 3, 1),
            ForwardCase("mimic3d-ffhq512-stage2", "3d", 256, 8, 5, 2),
            ForwardCase("mimic3d-ffhq512-stage2", "3d", 128, 8, 5, 2, count_flops=True),
            ForwardCase("mimic3d-ffhq512-stage2", "2d", RENDER_2D, 8, 5, 2, count_flops=True),
            ForwardCase("eg3d-ffhq512", "2d", RENDER_2D, 8, 5, 2, count_flops=True),
            ForwardCase("epigraf-ffhq512", "3d", 512, 4, 3, 1, count_flops=True),
        ]
    # CPU: the 512 render takes about a minute per image, so it runs once, and first, so that
    # its peak is measured before anything else has grown the heap.
    return [
        ForwardCase("mimic3d-ffhq512-stage2", "3d", 512, 1, 1, 0),
        ForwardCase("mimic3d-ffhq512-stage2", "3d", 256, 1, 1, 0),
        ForwardCase("mimic3d-ffhq512-stage2", "3d", 128, 2, 2, 1, compare_official=True, count_flops=True),
        ForwardCase(
            "mimic3d-ffhq512-stage2", "2d", RENDER_2D, 2, 2, 1, compare_official=True, count_flops=True
        ),
        ForwardCase("eg3d-ffhq512", "2d", RENDER_2D, 2, 1, 1),
        ForwardCase("epigraf-ffhq512", "3d", 512, 1, 1, 0),
    ]


def generator_inputs(
    batch: int, z_dim: int, device: torch.device | str = "cpu", camera: CameraPreset = PRESETS["ffhq"]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed latents z [batch, z_dim] and near-frontal cameras c [batch, 25] of ``camera``."""
    gen = torch.Generator().manual_seed(0)
    cam2world = orbit_cam2world(
        torch.linspace(1.3, 1.8, batch), torch.full((batch,), 1.5), camera.radius, camera.pivot
    )
    c = make_label(cam2world, intrinsics_matrix(camera.focal).expand(batch, 3, 3))
    return torch.randn(batch, z_dim, generator=gen).to(device), c.to(device)


# EpiGRAF's FFHQ 512 generator, built directly: its training preset of the same name holds the same
# configuration (tests/test_models_epigraf.py checks), and the bench does not depend on it.
ARCHITECTURES = {"epigraf-ffhq512": lambda: epigraf_architecture(512, EPIGRAF_FACE_RENDERING)}


def build_generator(preset: str, device: torch.device | str = "cpu") -> TriplaneGenerator:
    """A randomly initialised generator of ``preset`` (seed 0) in eval mode on ``device``."""
    torch.manual_seed(0)
    config = ARCHITECTURES[preset]() if preset in ARCHITECTURES else generator_preset(preset)
    return TriplaneGenerator(config).eval().to(device)


def build_student(preset: str, device: torch.device | str = "cpu") -> StudentGenerator:
    """A randomly initialised distilled student of a ``preset`` teacher (seed 0): the architecture
    ``mimic3d distill`` builds (its weights do not change its speed or memory); tiny teachers get
    the widths of the tiny CPU preset's student."""
    widths = {}
    if preset.startswith("tiny-"):
        student = load_config("tiny-distill-heads")[0].distill.student
        widths = dict(channel_base=student.channel_base, channel_max=student.channel_max)
    torch.manual_seed(0)
    return StudentGenerator(student_config(generator_preset(preset), **widths)).eval().to(device)


def forward_call(G: TriplaneGenerator, case: ForwardCase, device: torch.device | str) -> Callable[[], object]:
    """A closure running one deterministic no-grad forward of ``case``."""
    z, c = generator_inputs(case.batch, G.z_dim, device, camera_preset_for(G))

    def call() -> object:
        with torch.inference_mode():
            return G(z, c, branch=case.branch, neural_rendering_resolution=case.resolution, perturb=False)

    return call


def _describe(case: ForwardCase, img_resolution: int) -> str:
    if case.branch == "2d":
        return f"{case.preset} 2d branch, render {case.resolution} + SR to {img_resolution}"
    return f"{case.preset} 3d branch at {case.resolution} x {case.resolution}"


def _gflop(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _case_rows(G: TriplaneGenerator, case: ForwardCase, settings: BenchSettings, rate: float) -> list[dict]:
    device = settings.device
    call = forward_call(G, case, device)
    with measure_peak_memory(device) as memory:
        seconds = timeit(call, repeat=case.repeat, warmup=case.warmup, device=device)
    what = _describe(case, G.img_resolution)
    timing = f"{seconds:.3g} s per batch of {case.batch}, median of {case.repeat}"
    rows = [
        {"name": what, "value": case.batch / seconds, "unit": "images/s", "notes": timing},
        {
            "name": "  peak memory above the loaded model",
            "value": memory.above_baseline_mib,
            "unit": "MiB",
            "notes": f"{memory.notes()}; {memory.baseline_mib:,.0f} MiB before",
        },
    ]
    if case.compare_official:
        official, target = OFFICIAL_SECONDS[case.branch], TARGET_SPEEDUP[case.branch]
        rows.append(
            {
                "name": f"  speed-up over official Mimic3D ({case.branch}, batch {case.batch})",
                "value": official / seconds,
                "unit": "x",
                "notes": f"official {official} s, ours {seconds:.3g} s; target >= {target}x",
            }
        )
    if case.count_flops:
        gflop = _gflop(call)
        rows.append(
            {
                "name": f"  FLOP floor: {gflop:,.1f} GFLOP at {rate:,.0f} GFLOP/s",
                "value": gflop / rate,
                "unit": "s",
                "notes": f"{gflop / rate / seconds:.0%} of the measured time",
            }
        )
    return rows


def run(settings: BenchSettings) -> list[dict]:
    rate = settings.matmul_gflops
    if not math.isfinite(rate):
        rate = matmul_gflops(device=settings.device)
    rows: list[dict] = []
    models: dict[str, TriplaneGenerator] = {}
    for case in forward_cases(settings):
        if case.preset not in models:
            models.clear()  # one model resident at a time
            models[case.preset] = build_generator(case.preset, settings.device)
        rows += _case_rows(models[case.preset], case, settings, rate)
    return rows
