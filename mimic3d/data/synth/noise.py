"""Procedural textures: hashed lattice value noise, fractal noise and cellular spots.

All functions take world/object-space coordinates ``x, y, z`` ``[M]`` so that a texture is
attached to the surface and stays consistent across views.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

_TABLE_SIZE = 4096
# A fixed random table makes the noise a deterministic function of position.
_TABLE = torch.rand(_TABLE_SIZE, generator=torch.Generator().manual_seed(20230101))


def _hash(ix: Tensor, iy: Tensor, iz: Tensor) -> Tensor:
    """Integer lattice coordinates -> indices into the random table (spatial hashing primes)."""
    return ((ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791)) & (_TABLE_SIZE - 1)


def lattice_random(ix: Tensor, iy: Tensor, iz: Tensor, channel: int = 0) -> Tensor:
    """Uniform [0, 1) value attached to each integer lattice cell; ``channel`` gives independent draws."""
    return _TABLE[_hash(ix + 1013 * channel, iy, iz)]


def value_noise(x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    """Smooth noise in [0, 1] with features of unit size (trilinear, smoothstep-faded)."""
    fx, fy, fz = torch.floor(x), torch.floor(y), torch.floor(z)
    ix, iy, iz = fx.long(), fy.long(), fz.long()
    ux, uy, uz = x - fx, y - fy, z - fz
    ux, uy, uz = ux * ux * (3 - 2 * ux), uy * uy * (3 - 2 * uy), uz * uz * (3 - 2 * uz)
    result = torch.zeros_like(x)
    for dx in (0, 1):
        wx = ux if dx else 1 - ux
        for dy in (0, 1):
            wxy = wx * (uy if dy else 1 - uy)
            for dz in (0, 1):
                weight = wxy * (uz if dz else 1 - uz)
                result = result + weight * _TABLE[_hash(ix + dx, iy + dy, iz + dz)]
    return result


def fbm(x: Tensor, y: Tensor, z: Tensor, frequency: float, octaves: int = 3) -> Tensor:
    """Fractal (multi-octave) value noise in [0, 1]; each octave doubles frequency, halves amplitude."""
    total = torch.zeros_like(x)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        f = frequency * 2.0**octave
        # Offsets decorrelate the octaves (they would otherwise share lattice points at the origin).
        total = total + amplitude * value_noise(
            x * f + 17.1 * octave, y * f + 3.7 * octave, z * f - 9.3 * octave
        )
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def spots(x: Tensor, y: Tensor, z: Tensor, cell: float, density: Tensor | float, radius: float) -> Tensor:
    """Soft round spots in [0, 1]: at most one per cubic cell of side ``cell``, kept with prob. ``density``.

    ``radius`` is relative to the cell (< 0.5); spot centres stay inside their cell so a point
    only needs its own cell.
    """
    gx, gy, gz = x / cell, y / cell, z / cell
    fx, fy, fz = torch.floor(gx), torch.floor(gy), torch.floor(gz)
    ix, iy, iz = fx.long(), fy.long(), fz.long()
    span = 1.0 - 2.0 * radius
    cx = radius + span * lattice_random(ix, iy, iz, 1)
    cy = radius + span * lattice_random(ix, iy, iz, 2)
    cz = radius + span * lattice_random(ix, iy, iz, 3)
    distance = torch.sqrt((gx - fx - cx) ** 2 + (gy - fy - cy) ** 2 + (gz - fz - cz) ** 2)
    present = (lattice_random(ix, iy, iz, 4) < density).float()
    return present * (1.0 - distance / radius).clamp(0.0, 1.0).sqrt()
