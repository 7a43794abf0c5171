"""Surface normals from a rendered depth map and its camera.

Depths are Euclidean distances along each pixel's ray (the renderer's convention), so every pixel
lifts to the world point ``origin + depth * direction``; the normal is the cross product of the
point map's horizontal and vertical derivatives, turned to face the camera.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.camera import split_label
from mimic3d.render import generate_rays


def depth_to_points(depth: Tensor, c: Tensor) -> Tensor:
    """Depth [N, 1, R, R] seen by cameras c [N, 25] -> world points [N, 3, R, R]."""
    if depth.ndim != 4 or depth.shape[1] != 1 or depth.shape[-1] != depth.shape[-2]:
        raise ValueError(f"depth: expected shape [N, 1, R, R], got {list(depth.shape)}")
    if c.ndim != 2 or c.shape != (depth.shape[0], 25):
        raise ValueError(f"c: expected shape [{depth.shape[0]}, 25], got {list(c.shape)}")
    n, _, r, _ = depth.shape
    cam2world, intrinsics = split_label(c.float())
    origins, directions = generate_rays(cam2world, intrinsics, r)
    points = origins + depth.float().reshape(n, r * r, 1) * directions
    return points.permute(0, 2, 1).reshape(n, 3, r, r)


def normals_from_depth(depth: Tensor, c: Tensor, space: str = "camera") -> Tensor:
    """Unit normals [N, 3, R, R] of the surface in depth maps [N, 1, R, R] seen by cameras c [N, 25].

    ``space`` "world" gives world axes, "camera" the camera's OpenCV axes (x right, y down, z
    forward; a surface facing the camera has z < 0). Normals always face the camera.
    """
    if space not in ("camera", "world"):
        raise ValueError(f"space: expected 'camera' or 'world', got {space!r}")
    if depth.ndim == 4 and min(depth.shape[-2:]) < 2:
        raise ValueError(f"depth: normals need at least 2x2 pixels, got {list(depth.shape[-2:])}")
    points = depth_to_points(depth, c)
    # Central differences inside, one-sided at the image border.
    along_x = torch.gradient(points, dim=-1)[0]
    along_y = torch.gradient(points, dim=-2)[0]
    normals = F.normalize(torch.cross(along_x, along_y, dim=1), dim=1)
    cam2world, _ = split_label(c.float())
    rotation = cam2world[:, :3, :3]
    camera_normals = torch.einsum("nji,njhw->nihw", rotation, normals)
    # Facing the camera means pointing against the viewing ray; for each pixel the ray is the
    # camera-space direction of its point.
    camera_points = torch.einsum("nji,njhw->nihw", rotation, points - cam2world[:, :3, 3, None, None])
    flip = torch.where((camera_normals * camera_points).sum(1, keepdim=True) > 0, -1.0, 1.0)
    camera_normals = camera_normals * flip
    if space == "camera":
        return camera_normals
    return torch.einsum("nij,njhw->nihw", rotation, camera_normals)
