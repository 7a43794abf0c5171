"""The renderer's GPU memory at 128^2 rays x 96 samples (48 + 48), batch 4, EG3D's ffhq setting
(256^2 x 32-channel tri-planes): one chunk of 65,536 rays, 6.3 M samples.

Stated bounds (peak ``max_memory_allocated`` above what was allocated before the render):
- forward without gradients <= 4 GiB: ~3.1 M points per pass x (features 128 B + hidden and
  softplus 512 B + outputs 132 B + corner indices and weights 96 B) ~ 2.6 GiB live at the peak;
- forward + backward <= 8 GiB: the autograd graph keeps ~75 KiB per ray (measured on the CPU with
  saved-tensor hooks: 4.9 GB for 65,536 rays), plus the 256 MiB backward scatter chunk.
The reserved (cached) memory is reported too; it is not bounded here (the allocator's choice).
"""

from __future__ import annotations

import torch

from mimic3d.camera import PRESETS
from mimic3d.render import RenderConfig, TriplaneDecoder, TriplaneRenderer, generate_rays
from mimic3d.tools.viewpoints import view_labels

GIB = 2**30
FORWARD_BOUND = 4 * GIB
TRAINING_BOUND = 8 * GIB


def _scene(device: torch.device):
    torch.manual_seed(0)
    planes = torch.randn(4, 3, 32, 256, 256, device=device)
    decoder = TriplaneDecoder(32, 64, 32).to(device)
    c = view_labels([0.0, 0.2, -0.2, 0.4], 0.0, PRESETS["ffhq"], device)
    origins, directions = generate_rays(c[:, :16].view(-1, 4, 4), c[:, 16:].view(-1, 3, 3), 128)
    return planes, decoder, origins, directions


def _peak(fn, device) -> tuple[int, int]:
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before, torch.cuda.max_memory_reserved(device)


def test_renderer_memory_at_128_squared_by_96_samples_batch_4(cuda_only, record_property) -> None:
    device = cuda_only
    planes, decoder, origins, directions = _scene(device)
    renderer = TriplaneRenderer(RenderConfig(perturb=False))
    assert renderer.config.rays_per_chunk(device) >= origins.shape[0] * origins.shape[1]  # one chunk

    def forward():
        with torch.no_grad():
            renderer(planes, decoder, origins, directions)

    def training():
        trainable = planes.clone().requires_grad_(True)
        result = renderer(trainable, decoder, origins, directions)
        (result.features.square().mean() + result.depth.mean()).backward()

    forward_peak, forward_reserved = _peak(forward, device)
    training_peak, training_reserved = _peak(training, device)
    for name, value in (
        ("forward_peak_gib", forward_peak / GIB),
        ("forward_reserved_gib", forward_reserved / GIB),
        ("training_peak_gib", training_peak / GIB),
        ("training_reserved_gib", training_reserved / GIB),
    ):
        record_property(name, round(value, 3))
        print(f"renderer memory {name} {value:.3f}")
    assert forward_peak <= FORWARD_BOUND
    assert training_peak <= TRAINING_BOUND
