"""Camera poses in EG3D's convention: look-at construction and the yaw/pitch orbit.

World frame: +y up, the subject faces +z. Camera frame (OpenCV): +x right, +y down, +z forward.
"""

from __future__ import annotations

import math

import torch

from mimic3d.camera.tensors import TensorLike, as_float_tensor, broadcast_float_tensors

# EG3D keeps the pitch off the poles so that forward is never parallel to up.
PITCH_EPS = 1e-5
_DEGENERATE = 1e-7


def look_at(
    origin: TensorLike, target: TensorLike | None = None, up: TensorLike = (0.0, 1.0, 0.0)
) -> torch.Tensor:
    """Cam2world ``[..., 4, 4]`` of cameras at ``origin`` ``[..., 3]`` looking at ``target`` ``[..., 3]``.

    ``target`` defaults to the world origin. No roll: forward = normalize(target - origin),
    right = -normalize(up x forward), down-axis = normalize(forward x right); the rotation's columns
    are (right, down-axis, forward) and the translation is ``origin`` (EG3D's
    ``create_cam2world_matrix``). Shapes broadcast; raises ValueError when a camera sits on its
    target or looks straight along ``up``.
    """
    origin = as_float_tensor(origin, "origin", trailing=(3,))
    target = (
        torch.zeros_like(origin)
        if target is None
        else as_float_tensor(target, "target", like=origin, trailing=(3,))
    )
    up = as_float_tensor(up, "up", like=origin, trailing=(3,))
    dtype = torch.promote_types(torch.promote_types(origin.dtype, target.dtype), up.dtype)
    origin, target, up = (t.to(dtype) for t in (origin, target, up))
    try:
        batch = torch.broadcast_shapes(origin.shape[:-1], target.shape[:-1], up.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"look_at: shapes do not broadcast: origin {list(origin.shape)}, target {list(target.shape)}, "
            f"up {list(up.shape)}"
        ) from err
    origin, target, up = (t.expand(*batch, 3) for t in (origin, target, up))
    for values, label in ((origin, "origin"), (target, "target"), (up, "up")):
        if not torch.isfinite(values).all():
            raise ValueError(f"look_at: {label} has non-finite values")

    offset = target - origin
    distance = offset.norm(dim=-1, keepdim=True)
    _check_nonzero(distance, "look_at: camera origin coincides with its target")
    forward = offset / distance
    side = torch.cross(up, forward, dim=-1)
    side_norm = side.norm(dim=-1, keepdim=True)
    _check_nonzero(side_norm / up.norm(dim=-1, keepdim=True), "look_at: viewing direction is parallel to up")
    right = -side / side_norm
    down = torch.cross(forward, right, dim=-1)
    down = down / down.norm(dim=-1, keepdim=True)

    cam2world = torch.zeros(*batch, 4, 4, dtype=dtype, device=origin.device)
    cam2world[..., :3, :3] = torch.stack((right, down, forward), dim=-1)
    cam2world[..., :3, 3] = origin
    cam2world[..., 3, 3] = 1
    return cam2world


def orbit_origin(yaw: TensorLike, pitch: TensorLike, radius: TensorLike = 2.7) -> torch.Tensor:
    """Camera position ``[..., 3]`` on a sphere around the world origin, EG3D's parameterisation.

    yaw h and pitch v are both pi/2 for a frontal camera (on +z); v is clamped to
    [1e-5, pi - 1e-5] and mapped to the polar angle phi = arccos(1 - 2v/pi), so uniform v gives
    uniform points on the sphere; origin = r (sin phi cos(pi - h), cos phi, sin phi sin(pi - h)).
    Larger yaw moves the camera towards +x, larger pitch moves it down.
    """
    yaw, pitch, radius = broadcast_float_tensors((yaw, "yaw"), (pitch, "pitch"), (radius, "radius"))
    if (radius <= 0).any():
        raise ValueError(f"radius: expected positive values, got min {float(radius.min())}")
    v = pitch.clamp(PITCH_EPS, math.pi - PITCH_EPS) / math.pi
    phi = torch.arccos(1 - 2 * v)
    return torch.stack(
        (
            radius * torch.sin(phi) * torch.cos(math.pi - yaw),
            radius * torch.cos(phi),
            radius * torch.sin(phi) * torch.sin(math.pi - yaw),
        ),
        dim=-1,
    )


def orbit_cam2world(
    yaw: TensorLike,
    pitch: TensorLike,
    radius: TensorLike = 2.7,
    pivot: TensorLike = (0.0, 0.0, 0.0),
) -> torch.Tensor:
    """Cam2world ``[..., 4, 4]`` of a camera on EG3D's orbit (``orbit_origin``) looking at ``pivot``.

    This is what EG3D's ``LookAtPoseSampler`` produces for one (yaw, pitch): the origin stays on
    the sphere around the world origin and the pivot only changes the viewing direction.
    """
    origin = orbit_origin(yaw, pitch, radius)
    return look_at(origin, as_float_tensor(pivot, "pivot", like=origin, trailing=(3,)))


def _check_nonzero(lengths: torch.Tensor, message: str) -> None:
    bad = torch.nonzero(~(lengths.flatten() > _DEGENERATE)).flatten()
    if bad.numel() > 0:
        raise ValueError(f"{message} (camera {int(bad[0])} of {lengths.numel()})")
