"""Volume-renderer throughput and memory (``python -m benchmarks.run --only render``).

EG3D's face setup: 48 stratified + 48 importance samples per ray, 256^2 x 32-channel tri-planes and
the 32 -> 64 -> 33 decoder, random weights, perturbation on (training-time sampling).
"""

from __future__ import annotations

import torch

from benchmarks.common import current_rss_mb, peak_rss_mb, timeit
from mimic3d.camera import intrinsics_matrix, orbit_cam2world
from mimic3d.render import RenderConfig, TriplaneDecoder, TriplaneRenderer, generate_patch_rays, generate_rays

SAMPLES_PER_RAY = 96


def _scene(
    batch: int, resolutions: tuple[int, ...], seed: int = 0
) -> tuple[list[torch.Tensor], TriplaneDecoder]:
    gen = torch.Generator().manual_seed(seed)
    planes = [torch.randn(batch, 3, 32, r, r, generator=gen) for r in resolutions]
    torch.manual_seed(seed)
    return planes, TriplaneDecoder()


def _cameras(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    yaw = torch.linspace(1.3, 1.8, batch)
    cam2world = orbit_cam2world(yaw, torch.full((batch,), 1.5), 2.7, (0.0, 0.0, 0.2))
    return cam2world, intrinsics_matrix(torch.full((batch,), 4.2647))


def _render_512_memory() -> list[dict]:
    """512 x 512 rays, batch 1, no grad: throughput and the render's peak RSS above the baseline."""
    planes, decoder = _scene(1, (256,))
    origins, directions = generate_rays(*_cameras(1), 512)
    renderer = TriplaneRenderer(RenderConfig())
    samples = origins.shape[1] * SAMPLES_PER_RAY
    baseline = current_rss_mb()
    with torch.no_grad():
        seconds = timeit(lambda: renderer(planes[0], decoder, origins, directions), repeat=1, warmup=0)
    chunk = f"{renderer.config.chunk_rays} rays per chunk"
    return [
        {
            "name": "render fwd 512x512 x 96 (batch 1, chunked)",
            "value": samples / seconds,
            "unit": "samples/s",
            "notes": f"{seconds:.1f} s per image; {chunk}",
        },
        {
            "name": "render 512x512 peak RSS above baseline",
            "value": peak_rss_mb() - baseline,
            "unit": "MiB",
            "notes": f"no grad, {chunk}; tri-plane + decoder resident before the render",
        },
    ]


def _render_64(batch: int = 2) -> list[dict]:
    """64 x 64 rays, batch 2: forward, and forward + backward to planes and decoder."""
    planes, decoder = _scene(batch, (256,))
    plane = planes[0].requires_grad_(True)
    origins, directions = generate_rays(*_cameras(batch), 64)
    renderer = TriplaneRenderer(RenderConfig())
    samples = batch * origins.shape[1] * SAMPLES_PER_RAY

    def forward() -> None:
        with torch.no_grad():
            renderer(plane, decoder, origins, directions)

    def forward_backward() -> None:
        result = renderer(plane, decoder, origins, directions)
        (result.features.square().mean() + result.depth.mean()).backward()

    fwd = timeit(forward, repeat=3)
    bwd = timeit(forward_backward, repeat=3)
    notes = "EG3D config 48+48, 256^2 x 32ch tri-planes, batch 2"
    return [
        {
            "name": "render fwd 64x64 x 96",
            "value": samples / fwd,
            "unit": "samples/s",
            "notes": f"{fwd * 1e3:.0f} ms; {notes}",
        },
        {
            "name": "render fwd+bwd 64x64 x 96",
            "value": samples / bwd,
            "unit": "samples/s",
            "notes": f"{bwd * 1e3:.0f} ms; grads to planes and decoder; {notes}",
        },
    ]


def _render_mimic3d_patch(batch: int = 2) -> list[dict]:
    """Mimic3D's 3D branch: a 64 x 64 patch of a 512 image over coarse 256^2 + residual 512^2 tri-planes."""
    planes, decoder = _scene(batch, (256, 512))
    cam2world, intrinsics = _cameras(batch)
    origins, directions = generate_patch_rays(cam2world, intrinsics, 512, 224, 192, 64)
    renderer = TriplaneRenderer(RenderConfig(convention="xyz"))
    samples = batch * origins.shape[1] * SAMPLES_PER_RAY
    with torch.no_grad():
        seconds = timeit(lambda: renderer(planes, decoder, origins, directions), repeat=3)
    return [
        {
            "name": "render fwd Mimic3D patch 64x64 x 96, P^c + P^r",
            "value": samples / seconds,
            "unit": "samples/s",
            "notes": f"{seconds * 1e3:.0f} ms; 256^2 + 512^2 tri-planes summed, batch 2",
        },
    ]


def run() -> list[dict]:
    # The 512 render goes first so that its peak RSS is not hidden by an earlier, larger peak.
    return _render_512_memory() + _render_64() + _render_mimic3d_patch()
