"""Generators with a known answer for the inversion tests: tiny models whose renders depend on the camera.

An untrained tiny generator is a near-transparent fog (raw sigma within a narrow band everywhere), so its
images barely change with the camera (30 degrees of yaw change them by ~1 dB). ``structured_generator``
rescales the decoder's density output so raw sigma spans ``sigma_spread`` between its 10% and 90%
quantiles over the box, around 0: the field becomes a textured, partly opaque object whose views differ.
``style_scale`` < 1 shrinks every style affine's weights: all latents then give nearly the same object,
as in a trained GAN whose samples share one 3D structure, so that a pose is identifiable from one image.
"""

from __future__ import annotations

import math

import torch

from mimic3d.camera import PRESETS
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.viewpoints import conditioning_label, orbit_labels

PRESET = PRESETS["ffhq"]  # the tiny presets' rendering settings are FFHQ's
# The ground-truth target view: off the frontal pose, inside the FFHQ pose spread (yaw 0.3, pitch 0.155).
TARGET_YAW, TARGET_PITCH = math.pi / 2 + 0.2, math.pi / 2 - 0.1
HELD_OUT = math.radians(30)


@torch.no_grad()
def structured_generator(
    name: str = "tiny-eg3d", seed: int = 0, sigma_spread: float = 4.0, style_scale: float = 1.0
) -> TriplaneGenerator:
    torch.manual_seed(seed)
    G = TriplaneGenerator(generator_preset(name)).eval().requires_grad_(False)
    for module_name, module in G.named_modules():
        if module_name.endswith("affine"):
            module.weight.mul_(style_scale)
    generator = torch.Generator().manual_seed(seed)
    ws = G.mapping(torch.randn(64, G.z_dim, generator=generator), conditioning_label(PRESET, 64))
    points = torch.rand(64, 512, 3, generator=generator) - 0.5
    low, median, high = G.sample_density(points, ws).quantile(torch.tensor([0.1, 0.5, 0.9]))
    scale = sigma_spread / float(high - low)
    last = G.decoder.net[2]
    last.weight[0] *= scale
    last.bias[0] = (last.bias[0] * last.bias_gain - median) * scale / last.bias_gain
    return G


def true_latent(G: TriplaneGenerator, seed: int = 1) -> torch.Tensor:
    """ws [1, num_ws, w_dim] of a mapped sample: the subject the targets show."""
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G.mapping(z, conditioning_label(PRESET, 1))


def cameras(yaws: list[float], pitches: list[float]) -> torch.Tensor:
    """Labels [V, 25] on the FFHQ orbit."""
    return orbit_labels(torch.tensor(yaws), torch.tensor(pitches), PRESET)


def held_out_cameras() -> torch.Tensor:
    """The target view turned 30 degrees to either side: labels [2, 25]."""
    return cameras([TARGET_YAW - HELD_OUT, TARGET_YAW + HELD_OUT], [TARGET_PITCH] * 2)
