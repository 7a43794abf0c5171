"""Conversions between EG3D cam2world matrices and other camera conventions.

- OpenGL / Blender / NeRF cam2world: camera +x right, +y up, looking down -z. Only the camera
  axes differ (diag(1, -1, -1) on the right); the world frame is passed through unchanged.
- EpiGRAF / GRAM angles ``[yaw, pitch, roll]``: a y-up sphere with the frontal view at yaw 0,
  pitch pi/2 (pitch is the polar angle from +y, so smaller pitch is higher); positive yaw moves
  the camera towards -x of EG3D's world and an x-flip negates yaw. EpiGRAF's own world has the
  subject facing +x (origin r (sin p cos y, cos p, sin p sin y)); it is rotated about +y onto
  EG3D's world, where the subject faces +z. GRAM (pi-GAN) uses theta = yaw + pi/2 in the same
  world as EG3D, which gives the identical camera.
"""

from __future__ import annotations

import math

import torch

from mimic3d.camera.intrinsics import epigraf_focal, intrinsics_matrix
from mimic3d.camera.label import make_label
from mimic3d.camera.pose import PITCH_EPS, look_at
from mimic3d.camera.tensors import TensorLike, as_float_tensor, broadcast_float_tensors


def from_opengl(cam2world: TensorLike) -> torch.Tensor:
    """EG3D (OpenCV-axes) cam2world ``[..., 4, 4]`` from an OpenGL/Blender cam2world ``[..., 4, 4]``."""
    return _flip_camera_y_z(as_float_tensor(cam2world, "cam2world", trailing=(4, 4)))


def to_opengl(cam2world: TensorLike) -> torch.Tensor:
    """OpenGL/Blender cam2world ``[..., 4, 4]`` from an EG3D (OpenCV-axes) cam2world ``[..., 4, 4]``."""
    return _flip_camera_y_z(as_float_tensor(cam2world, "cam2world", trailing=(4, 4)))


def from_angles(
    yaw: TensorLike,
    pitch: TensorLike,
    roll: TensorLike = 0.0,
    radius: TensorLike = 2.7,
    pivot: TensorLike = (0.0, 0.0, 0.0),
) -> torch.Tensor:
    """EG3D cam2world ``[..., 4, 4]`` from EpiGRAF/GRAM angles (each ``[...]``, radians).

    The camera sits at radius * (-sin p sin y, cos p, sin p cos y) around the world origin (pitch
    clamped to [1e-5, pi - 1e-5] as in EpiGRAF) and looks at ``pivot``. ``roll`` turns the camera
    about its viewing axis: R = R_look_at @ Rz(roll), i.e. the camera's right axis tilts towards
    its down axis for positive roll (EpiGRAF and GRAM always store roll 0).
    """
    yaw, pitch, roll, radius = broadcast_float_tensors(
        (yaw, "yaw"), (pitch, "pitch"), (roll, "roll"), (radius, "radius")
    )
    if (radius <= 0).any():
        raise ValueError(f"radius: expected positive values, got min {float(radius.min())}")
    pitch = pitch.clamp(PITCH_EPS, math.pi - PITCH_EPS)
    origin = torch.stack(
        (
            -radius * torch.sin(pitch) * torch.sin(yaw),
            radius * torch.cos(pitch),
            radius * torch.sin(pitch) * torch.cos(yaw),
        ),
        dim=-1,
    )
    cam2world = look_at(origin, as_float_tensor(pivot, "pivot", like=origin, trailing=(3,)))
    cos, sin = torch.cos(roll), torch.sin(roll)
    right, down = cam2world[..., :3, 0], cam2world[..., :3, 1]
    rolled = cam2world.clone()
    rolled[..., :3, 0] = cos[..., None] * right + sin[..., None] * down
    rolled[..., :3, 1] = -sin[..., None] * right + cos[..., None] * down
    return rolled


def to_angles(cam2world: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
    """EpiGRAF/GRAM angles ``[..., 3]`` (yaw, pitch, roll) and radius ``[...]`` of cam2world ``[..., 4, 4]``.

    Yaw in (-pi, pi] and pitch in [0, pi] come from the camera position, roll from the camera's
    right axis relative to a roll-free camera with the same viewing direction. ``from_angles``
    with these angles, this radius and the camera's pivot reproduces ``cam2world``; the pivot is
    not returned because any point on the viewing ray would do.
    """
    cam2world = as_float_tensor(cam2world, "cam2world", trailing=(4, 4))
    origin = cam2world[..., :3, 3]
    radius = origin.norm(dim=-1)
    if not (radius > 0).all():
        raise ValueError("cam2world: camera at the world origin has no yaw/pitch")
    yaw = torch.atan2(-origin[..., 0], origin[..., 2])
    pitch = torch.arccos((origin[..., 1] / radius).clamp(-1, 1))
    forward = cam2world[..., :3, 2]
    unrolled = look_at(torch.zeros_like(forward), forward)
    right = cam2world[..., :3, 0]
    roll = torch.atan2((right * unrolled[..., :3, 1]).sum(-1), (right * unrolled[..., :3, 0]).sum(-1))
    return torch.stack((yaw, pitch, roll), dim=-1), radius


def epigraf_label(angles: TensorLike, radius: TensorLike = 1.0, fov_degrees: float = 12.0) -> torch.Tensor:
    """Labels ``[..., 25]`` of EpiGRAF cameras: angles ``[..., 3]`` (yaw, pitch, roll) at ``radius``
    looking at the origin, with EpiGRAF's field of view (``epigraf_focal``; render with the "corners"
    pixel grid, as EpiGRAF models do). Defaults: its FFHQ cameras (radius 1, fov 12 degrees)."""
    angles = as_float_tensor(angles, "angles", trailing=(3,))
    pose = from_angles(angles[..., 0], angles[..., 1], angles[..., 2], radius)
    intrinsics = intrinsics_matrix(epigraf_focal(float(fov_degrees)))
    return make_label(pose, intrinsics.to(pose.dtype))


def _flip_camera_y_z(cam2world: torch.Tensor) -> torch.Tensor:
    """Right-multiply by diag(1, -1, -1, 1): negates the camera's y and z axes, its own inverse."""
    flip = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=cam2world.dtype, device=cam2world.device)
    return cam2world * flip
