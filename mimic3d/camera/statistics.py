"""Camera statistics of a set of labels: the focal, orbit radius, pivot and pose spread they share.

A model's training cameras decide where it can be looked at from; tools that place cameras for a model
(inversion's pose search, videos) read these statistics instead of assuming a face dataset's. The
Trainer stores ``camera_statistics(dataset.labels)`` in every checkpoint's metadata under ``"camera"``.
"""

from __future__ import annotations

import math

import torch

from mimic3d.camera.label import split_label
from mimic3d.camera.presets import CameraPreset
from mimic3d.camera.tensors import TensorLike, as_float_tensor

# Ridge (relative to the number of cameras) pulling the least-squares pivot towards the world origin:
# it only decides the directions no camera axis constrains (all cameras looking along one line).
_PIVOT_RIDGE = 1e-6
# Mean resultant length of the yaws below which they are taken to cover the whole circle (360 datasets).
_FULL_CIRCLE_RESULTANT = 0.3


def orbit_angles(cam2world: TensorLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(yaw, pitch, radius), each ``[...]``, of cameras ``[..., 4, 4]`` on EG3D's orbit (``orbit_origin``).

    The inverse of ``orbit_origin``: yaw = pi - atan2(z, x) in (0, 2 pi], pitch = pi (1 - y / r) / 2,
    radius = distance to the world origin; frontal is yaw = pitch = pi/2.
    """
    cam2world = as_float_tensor(cam2world, "cam2world", trailing=(4, 4))
    origin = cam2world[..., :3, 3]
    radius = origin.norm(dim=-1)
    if not (radius > 0).all():
        raise ValueError("cam2world: a camera at the world origin has no orbit angles")
    yaw = math.pi - torch.atan2(origin[..., 2], origin[..., 0])
    pitch = math.pi * (1 - (origin[..., 1] / radius).clamp(-1, 1)) / 2
    return yaw, pitch, radius


def look_at_pivot(cam2world: TensorLike) -> torch.Tensor:
    """The point [3] closest, in least squares, to every camera's optical axis (cam2world ``[N, 4, 4]``).

    Minimises sum_i |(I - d_i d_i^T)(p - o_i)|^2 over p (o_i the centres, d_i the viewing directions),
    with a small ridge towards the world origin for directions no axis constrains.
    """
    cam2world = as_float_tensor(cam2world, "cam2world", trailing=(4, 4)).reshape(-1, 4, 4).double()
    origin, forward = cam2world[:, :3, 3], cam2world[:, :3, 2]
    forward = forward / forward.norm(dim=-1, keepdim=True)
    projector = torch.eye(3, dtype=torch.float64) - forward[:, :, None] * forward[:, None, :]
    count = cam2world.shape[0]
    lhs = projector.sum(0) + _PIVOT_RIDGE * count * torch.eye(3, dtype=torch.float64)
    rhs = (projector @ origin[:, :, None]).sum(0)
    return torch.linalg.solve(lhs, rhs)[:, 0]


def camera_statistics(labels: TensorLike, name: str = "dataset") -> CameraPreset:
    """The ``CameraPreset`` that describes labels ``[N, 25]``.

    focal: median fx; radius: median distance to the world origin; pivot: ``look_at_pivot``; yaw: the
    circular mean and circular standard deviation, or a uniform full circle (``distribution="uniform"``,
    half-widths pi and half the pitch range) when the yaws cover it; pitch: mean and standard deviation.
    """
    labels = as_float_tensor(labels, "labels", trailing=(25,)).reshape(-1, 25).double()
    if labels.shape[0] == 0:
        raise ValueError("labels: no camera to take statistics of")
    cam2world, intrinsics = split_label(labels)
    yaw, pitch, radius = orbit_angles(cam2world)
    pivot = look_at_pivot(cam2world)
    resultant = torch.stack([torch.cos(yaw).mean(), torch.sin(yaw).mean()]).norm()
    common = dict(
        name=name,
        focal=float(intrinsics[:, 0, 0].median()),
        radius=float(radius.median()),
        pivot=tuple(float(v) for v in pivot),
    )
    if resultant < _FULL_CIRCLE_RESULTANT:
        low, high = float(pitch.min()), float(pitch.max())
        return CameraPreset(
            **common,
            yaw_std=math.pi,
            pitch_std=(high - low) / 2,
            pitch_mean=(high + low) / 2,
            distribution="uniform",
        )
    yaw_mean = float(torch.atan2(torch.sin(yaw).mean(), torch.cos(yaw).mean())) % (2 * math.pi)
    return CameraPreset(
        **common,
        yaw_mean=yaw_mean,
        yaw_std=math.sqrt(-2 * math.log(min(float(resultant), 1.0))),
        pitch_mean=float(pitch.mean()),
        pitch_std=float(pitch.std(unbiased=False)),
    )
