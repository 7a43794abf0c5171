"""Volume-renderer throughput and memory (``python -m benchmarks.run --only render``).

EG3D's face setup: 48 stratified + 48 importance samples per ray, 256^2 x 32-channel tri-planes and
the 32 -> 64 -> 33 decoder, random weights, perturbation on (training-time sampling). ``--quick``
shrinks every ray grid and plane 8x (same sample counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmarks.common import BenchSettings, measure_peak_memory, timeit
from mimic3d.camera import intrinsics_matrix, orbit_cam2world
from mimic3d.render import RenderConfig, TriplaneDecoder, TriplaneRenderer, generate_patch_rays, generate_rays

SAMPLES_PER_RAY = 96


@dataclass(frozen=True)
class RenderSizes:
    """Plane and ray-grid sizes of the suite; ``repeat`` timed runs of the small renders."""

    plane: int = 256
    residual_plane: int = 512
    full_image: int = 512
    small_image: int = 64
    batch: int = 2
    repeat: int = 3

    @classmethod
    def for_settings(cls, settings: BenchSettings) -> RenderSizes:
        if settings.quick:
            return cls(plane=32, residual_plane=64, full_image=64, small_image=8, repeat=1)
        if settings.device.type == "cuda":
            return cls(batch=8, repeat=10)
        return cls()


def _scene(
    batch: int, resolutions: tuple[int, ...], device: torch.device, seed: int = 0
) -> tuple[list[torch.Tensor], TriplaneDecoder]:
    gen = torch.Generator().manual_seed(seed)
    planes = [torch.randn(batch, 3, 32, r, r, generator=gen).to(device) for r in resolutions]
    torch.manual_seed(seed)
    return planes, TriplaneDecoder().to(device)


def _cameras(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    yaw = torch.linspace(1.3, 1.8, batch)
    cam2world = orbit_cam2world(yaw, torch.full((batch,), 1.5), 2.7, (0.0, 0.0, 0.2))
    return cam2world.to(device), intrinsics_matrix(torch.full((batch,), 4.2647)).to(device)


def _render_full_image(sizes: RenderSizes, device: torch.device) -> list[dict]:
    """One full image of rays, batch 1, no grad: throughput and the render's peak memory."""
    planes, decoder = _scene(1, (sizes.plane,), device)
    res = sizes.full_image
    origins, directions = generate_rays(*_cameras(1, device), res)
    renderer = TriplaneRenderer(RenderConfig())
    samples = origins.shape[1] * SAMPLES_PER_RAY
    with torch.no_grad(), measure_peak_memory(device) as memory:
        seconds = timeit(lambda: renderer(planes[0], decoder, origins, directions), 1, 0, device)
    chunk = f"{renderer.config.rays_per_chunk(torch.device(device))} rays per chunk"
    return [
        {
            "name": f"render fwd {res}x{res} x {SAMPLES_PER_RAY} (batch 1, chunked)",
            "value": samples / seconds,
            "unit": "samples/s",
            "notes": f"{seconds:.3g} s per image; {chunk}",
        },
        {
            "name": f"  peak memory above baseline (render {res}x{res})",
            "value": memory.above_baseline_mib,
            "unit": "MiB",
            "notes": f"{memory.notes()}; no grad, {chunk}; tri-plane + decoder resident before the render",
        },
    ]


def _render_small(sizes: RenderSizes, device: torch.device) -> list[dict]:
    """A small ray grid: forward, and forward + backward to planes and decoder."""
    batch, res = sizes.batch, sizes.small_image
    planes, decoder = _scene(batch, (sizes.plane,), device)
    plane = planes[0].requires_grad_(True)
    origins, directions = generate_rays(*_cameras(batch, device), res)
    renderer = TriplaneRenderer(RenderConfig())
    samples = batch * origins.shape[1] * SAMPLES_PER_RAY

    def forward() -> None:
        with torch.no_grad():
            renderer(plane, decoder, origins, directions)

    def forward_backward() -> None:
        result = renderer(plane, decoder, origins, directions)
        (result.features.square().mean() + result.depth.mean()).backward()

    fwd = timeit(forward, repeat=sizes.repeat, device=device)
    with measure_peak_memory(device) as memory:
        bwd = timeit(forward_backward, repeat=sizes.repeat, device=device)
    notes = f"EG3D config 48+48, {sizes.plane}^2 x 32ch tri-planes, batch {batch}"
    return [
        {
            "name": f"render fwd {res}x{res} x {SAMPLES_PER_RAY}",
            "value": samples / fwd,
            "unit": "samples/s",
            "notes": f"{fwd * 1e3:.0f} ms; {notes}",
        },
        {
            "name": f"render fwd+bwd {res}x{res} x {SAMPLES_PER_RAY}",
            "value": samples / bwd,
            "unit": "samples/s",
            "notes": f"{bwd * 1e3:.0f} ms; grads to planes and decoder; {notes}",
        },
        {
            "name": "  peak memory above baseline (fwd+bwd)",
            "value": memory.above_baseline_mib,
            "unit": "MiB",
            "notes": memory.notes(),
        },
    ]


def _render_mimic3d_patch(sizes: RenderSizes, device: torch.device) -> list[dict]:
    """Mimic3D's 3D branch: a 1/8-size patch of the full image over coarse + residual tri-planes."""
    batch, full = sizes.batch, sizes.full_image
    patch = full // 8
    planes, decoder = _scene(batch, (sizes.plane, sizes.residual_plane), device)
    cam2world, intrinsics = _cameras(batch, device)
    origins, directions = generate_patch_rays(
        cam2world, intrinsics, full, full * 7 // 16, full * 3 // 8, patch
    )
    renderer = TriplaneRenderer(RenderConfig(convention="xyz"))
    samples = batch * origins.shape[1] * SAMPLES_PER_RAY
    with torch.no_grad():
        seconds = timeit(
            lambda: renderer(planes, decoder, origins, directions), repeat=sizes.repeat, device=device
        )
    return [
        {
            "name": f"render fwd Mimic3D patch {patch}x{patch} x {SAMPLES_PER_RAY}, P^c + P^r",
            "value": samples / seconds,
            "unit": "samples/s",
            "notes": (
                f"{seconds * 1e3:.0f} ms; {sizes.plane}^2 + {sizes.residual_plane}^2 tri-planes summed, "
                f"batch {batch}"
            ),
        },
    ]


def run(settings: BenchSettings) -> list[dict]:
    sizes = RenderSizes.for_settings(settings)
    device = settings.device
    return (
        _render_full_image(sizes, device)
        + _render_small(sizes, device)
        + _render_mimic3d_patch(sizes, device)
    )
