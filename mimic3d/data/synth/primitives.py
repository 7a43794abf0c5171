"""Signed distance primitives and their combinations, on separate coordinate tensors.

Points are passed as three tensors ``x, y, z`` of one shape ``[M]`` and parameters as tensors
broadcastable to it (per-point rows gathered from a per-object table), so that thousands of
objects with different shapes are evaluated in one batch. Distances are exact for spheres, boxes
and capsules and a close bound-like approximation for ellipsoids (Quilez); sphere tracing steps
are scaled down to stay safe with the approximate ones.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def length3(x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    return torch.sqrt(x * x + y * y + z * z)


def sphere(x: Tensor, y: Tensor, z: Tensor, cx, cy, cz, radius) -> Tensor:
    """Distance to a sphere of ``radius`` at (cx, cy, cz)."""
    return length3(x - cx, y - cy, z - cz) - radius


def ellipsoid(x: Tensor, y: Tensor, z: Tensor, cx, cy, cz, inv_rx, inv_ry, inv_rz) -> Tensor:
    """Approximate distance to an axis-aligned ellipsoid given by its inverse semi-axes.

    d = k0 (k0 - 1) / k1 with k0 = |p / r|, k1 = |p / r^2|: exact on the surface, accurate near
    it, which is all that sphere tracing and the depth consistency of the data need.
    """
    qx, qy, qz = (x - cx) * inv_rx, (y - cy) * inv_ry, (z - cz) * inv_rz
    k0 = length3(qx, qy, qz)
    k1 = length3(qx * inv_rx, qy * inv_ry, qz * inv_rz)
    return k0 * (k0 - 1.0) / (k1 + 1e-9)


def rounded_box(x: Tensor, y: Tensor, z: Tensor, cx, cy, cz, hx, hy, hz, rounding) -> Tensor:
    """Distance to a box of half-extents (hx, hy, hz) whose edges are rounded by ``rounding``."""
    qx = (x - cx).abs() - (hx - rounding)
    qy = (y - cy).abs() - (hy - rounding)
    qz = (z - cz).abs() - (hz - rounding)
    outside = length3(qx.clamp(min=0), qy.clamp(min=0), qz.clamp(min=0))
    inside = torch.maximum(torch.maximum(qx, qy), qz).clamp(max=0)
    return outside + inside - rounding


def capsule(x: Tensor, y: Tensor, z: Tensor, ax, ay, az, bx, by, bz, radius) -> Tensor:
    """Distance to the segment a-b thickened by ``radius``."""
    px, py, pz = x - ax, y - ay, z - az
    dx, dy, dz = bx - ax, by - ay, bz - az
    h = ((px * dx + py * dy + pz * dz) / (dx * dx + dy * dy + dz * dz)).clamp(0.0, 1.0)
    return length3(px - dx * h, py - dy * h, pz - dz * h) - radius


def cylinder_x(x: Tensor, y: Tensor, z: Tensor, cx, cy, cz, radius, half_width, rounding) -> Tensor:
    """Distance to a cylinder with its axis along x (a wheel), edges rounded by ``rounding``."""
    radial = torch.sqrt((y - cy) ** 2 + (z - cz) ** 2) - (radius - rounding)
    axial = (x - cx).abs() - (half_width - rounding)
    outside = torch.sqrt(radial.clamp(min=0) ** 2 + axial.clamp(min=0) ** 2)
    return outside + torch.maximum(radial, axial).clamp(max=0) - rounding


def plane(x: Tensor, y: Tensor, z: Tensor, nx, ny, nz, offset) -> Tensor:
    """Signed distance to the half-space n . p <= offset (n unit length); negative inside."""
    return x * nx + y * ny + z * nz - offset


def smooth_union(a: Tensor, b: Tensor, k) -> Tensor:
    """Polynomial smooth minimum: blends the two surfaces over a band of width ``k``."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smooth_subtract(a: Tensor, b: Tensor, k) -> Tensor:
    """``a`` with ``b`` carved out, with a rounded crease of width ``k``."""
    return -smooth_union(-a, b, k)
