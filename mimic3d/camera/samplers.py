"""Random camera poses on EG3D's orbit (its LookAt/Gaussian/Uniform pose samplers).

Every sampler draws yaw first, then pitch, each as a ``[batch_size, 1]`` tensor, like EG3D, so a
``torch.Generator`` seeded identically to EG3D's global RNG reproduces its poses. Angles are in
radians with yaw = pitch = pi/2 frontal (see ``orbit_origin``).
"""

from __future__ import annotations

import math

import torch

from mimic3d.camera.intrinsics import intrinsics_matrix
from mimic3d.camera.label import make_label
from mimic3d.camera.pose import orbit_cam2world
from mimic3d.camera.presets import CameraPreset
from mimic3d.camera.tensors import TensorLike

_FRONTAL = math.pi / 2


def sample_look_at(
    batch_size: int,
    yaw_mean: float = _FRONTAL,
    pitch_mean: float = _FRONTAL,
    yaw_std: float = 0.0,
    pitch_std: float = 0.0,
    radius: float = 2.7,
    pivot: TensorLike = (0.0, 0.0, 0.0),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Cam2world ``[batch_size, 4, 4]``: Gaussian yaw/pitch on the orbit, looking at ``pivot``.

    EG3D's ``LookAtPoseSampler``; with zero stds it returns the camera at (yaw_mean, pitch_mean).
    """
    device = _device(generator, device)
    _check_batch_and_spread(batch_size, yaw_std, pitch_std)
    yaw = torch.randn((batch_size, 1), generator=generator, device=device) * yaw_std + yaw_mean
    pitch = torch.randn((batch_size, 1), generator=generator, device=device) * pitch_std + pitch_mean
    return orbit_cam2world(yaw[:, 0], pitch[:, 0], radius, pivot)


def sample_gaussian(
    batch_size: int,
    yaw_mean: float = _FRONTAL,
    pitch_mean: float = _FRONTAL,
    yaw_std: float = 0.0,
    pitch_std: float = 0.0,
    radius: float = 2.7,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Cam2world ``[batch_size, 4, 4]`` looking at the world origin (EG3D's ``GaussianCameraPoseSampler``)."""
    return sample_look_at(
        batch_size, yaw_mean, pitch_mean, yaw_std, pitch_std, radius, generator=generator, device=device
    )


def sample_uniform(
    batch_size: int,
    yaw_mean: float = _FRONTAL,
    pitch_mean: float = _FRONTAL,
    yaw_range: float = math.pi,
    pitch_range: float = math.pi / 2,
    radius: float = 2.7,
    pivot: TensorLike = (0.0, 0.0, 0.0),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Cam2world ``[batch_size, 4, 4]`` with yaw, pitch uniform in mean +- range, looking at ``pivot``.

    EG3D's ``UniformCameraPoseSampler`` (its ``*_stddev`` are these half-widths). Because pitch
    maps to the polar angle through arccos(1 - 2v/pi), the defaults (full yaw circle, pitch in
    [0, pi]) are uniform over the whole sphere.
    """
    device = _device(generator, device)
    _check_batch_and_spread(batch_size, yaw_range, pitch_range)
    yaw = (torch.rand((batch_size, 1), generator=generator, device=device) * 2 - 1) * yaw_range + yaw_mean
    pitch = (
        torch.rand((batch_size, 1), generator=generator, device=device) * 2 - 1
    ) * pitch_range + pitch_mean
    return orbit_cam2world(yaw[:, 0], pitch[:, 0], radius, pivot)


def sample_labels(
    preset: CameraPreset,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Labels ``[batch_size, 25]`` drawn from a dataset preset's pose distribution and focal."""
    sampler = sample_look_at if preset.distribution == "gaussian" else sample_uniform
    pose = sampler(
        batch_size,
        preset.yaw_mean,
        preset.pitch_mean,
        preset.yaw_std,
        preset.pitch_std,
        preset.radius,
        preset.pivot,
        generator=generator,
        device=device,
    )
    return make_label(pose, intrinsics_matrix(preset.focal).to(pose.device))


def _device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")


def _check_batch_and_spread(batch_size: int, yaw_spread: float, pitch_spread: float) -> None:
    if not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size: expected a non-negative int, got {batch_size!r}")
    for value, name in ((yaw_spread, "yaw spread"), (pitch_spread, "pitch spread")):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: expected a finite value >= 0, got {value}")
