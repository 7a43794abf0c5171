"""Between the browser's camera (viser) and our EG3D camera label, and the canvas layout of a frame.

viser reports a browser camera as T_world_camera: the rotation as a unit quaternion ``wxyz`` and the
``position``, in OpenCV camera axes (+x right, +y down, +z forward), which are the axes of EG3D's
cam2world. With the scene's up direction set to +y, viser's world is EG3D's world (+y up, the
subject facing +z), so the pose carries over unchanged.

Intrinsics: the browser's canvas has vertical field of view ``fov`` (radians) and aspect W / H. A
frame of ``panels`` side by side squares (one per branch shown) splits the canvas into that many
equal columns; each square spans the shorter side of its column, centred, so it sees
tan(half angle) = tan(fov / 2) * min(1, aspect / panels) and its normalised focal length is
0.5 / that (principal point at the centre). The square render, padded to the column's aspect
(``pad_to_aspect``) and stretched over the canvas by the browser, lands exactly where the
browser's own perspective camera would have drawn that part of the scene.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mimic3d.camera import intrinsics_matrix, make_label, split_label


def _check_view(fov: float, aspect: float, panels: int) -> None:
    if not (math.isfinite(fov) and 0 < fov < math.pi):
        raise ValueError(f"fov: expected a vertical field of view in (0, pi) radians, got {fov}")
    if not (math.isfinite(aspect) and aspect > 0):
        raise ValueError(f"aspect: expected a positive canvas width / height, got {aspect}")
    if panels not in (1, 2):
        raise ValueError(f"panels: expected 1 or 2 side-by-side renders, got {panels}")


def square_focal(fov: float, aspect: float, panels: int = 1) -> float:
    """Normalised focal length of the square render in one of ``panels`` canvas columns (module docs)."""
    _check_view(fov, aspect, panels)
    return 0.5 / (math.tan(fov / 2) * min(1.0, aspect / panels))


def canvas_fov(focal: float, aspect: float, panels: int = 1) -> float:
    """The browser's vertical field of view (radians) at which the square render has ``focal``."""
    if not (math.isfinite(focal) and focal > 0):
        raise ValueError(f"focal: expected a positive normalised focal length, got {focal}")
    _check_view(1.0, aspect, panels)
    return 2 * math.atan(0.5 / (focal * min(1.0, aspect / panels)))


def wxyz_to_rotation(wxyz: Sequence[float]) -> np.ndarray:
    """float64 rotation matrix [3, 3] of the quaternion (w, x, y, z), normalised first."""
    q = np.asarray(wxyz, dtype=np.float64)
    norm = float(np.linalg.norm(q)) if q.shape == (4,) else 0.0
    if not (math.isfinite(norm) and norm > 0.5):
        raise ValueError(f"wxyz: expected a unit quaternion (w, x, y, z), got {list(np.ravel(q))}")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def browser_label(
    wxyz: Sequence[float], position: Sequence[float], fov: float, aspect: float, panels: int = 1
) -> torch.Tensor:
    """EG3D label [25] (float32) of the browser camera: pose from ``wxyz`` and ``position``, focal from
    the canvas's ``fov`` and ``aspect`` for a frame of ``panels`` squares (module docs)."""
    position = np.asarray(position, dtype=np.float64)
    if position.shape != (3,) or not np.isfinite(position).all():
        raise ValueError(f"position: expected 3 finite numbers, got {list(np.ravel(position))}")
    cam2world = np.eye(4)
    cam2world[:3, :3] = wxyz_to_rotation(wxyz)
    cam2world[:3, 3] = position
    intrinsics = intrinsics_matrix(torch.tensor(square_focal(fov, aspect, panels), dtype=torch.float64))
    return make_label(torch.from_numpy(cam2world), intrinsics).float()


@dataclass(frozen=True)
class BrowserPose:
    """What the viewer sets on a browser camera: ``position``, ``look_at``, ``up`` (world, float64 [3])
    and the vertical ``fov`` in radians."""

    position: np.ndarray
    look_at: np.ndarray
    up: np.ndarray
    fov: float


def label_pose(label: torch.Tensor, aspect: float, target: Sequence[float], panels: int = 1) -> BrowserPose:
    """The browser pose showing camera ``label`` [25]: at its position, looking along its forward axis
    at the depth of ``target`` (the orbit pivot, so orbiting turns around it), with the field of view
    that gives the label's focal length (x focal; EG3D's are square pixels). ``up`` is the world's +y
    for a camera without roll (its right axis horizontal: the browser's look-at then rebuilds the very
    rotation, and orbiting stays level), else the camera's own up, -(camera y)."""
    cam2world, intrinsics = split_label(label.detach().double().cpu())
    rotation, position = cam2world[:3, :3].numpy(), cam2world[:3, 3].numpy()
    forward = rotation[:, 2]
    depth = float(np.dot(np.asarray(target, dtype=np.float64) - position, forward))
    if not depth > 0:
        raise ValueError(f"target: {list(target)} lies behind the camera")
    level = abs(rotation[1, 0]) < 1e-6  # float32 labels: a horizontal right axis to rounding
    return BrowserPose(
        position=position.copy(),
        look_at=position + depth * forward,
        up=np.array([0.0, 1.0, 0.0]) if level else -rotation[:, 1].copy(),
        fov=canvas_fov(float(intrinsics[0, 0]), aspect, panels),
    )


def pad_to_aspect(image: np.ndarray, aspect: float, colour: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """uint8 image [h, w, 3] centred on a ``colour`` canvas of width / height ~ ``aspect``.

    The padding is even on both sides (the width, or height, keeps the parity of the image's), so a
    square render stays centred to the pixel and its principal point stays the canvas column's centre.
    """
    if not (math.isfinite(aspect) and aspect > 0):
        raise ValueError(f"aspect: expected a positive canvas width / height, got {aspect}")
    h, w = image.shape[:2]
    width = max(w, w + 2 * round((h * aspect - w) / 2))
    height = max(h, h + 2 * round((w / aspect - h) / 2))
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = np.asarray(colour, dtype=np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    canvas[top : top + h, left : left + w] = image
    return canvas


def canvas_frame(
    panels: Sequence[np.ndarray], aspect: float, colour: Sequence[int] = (0, 0, 0)
) -> np.ndarray:
    """The background image for a canvas of ``aspect``: each panel (uint8 [S, S, 3], one size) centred
    in its column, the columns side by side."""
    if not panels or len({p.shape for p in panels}) != 1:
        raise ValueError(f"panels: expected one or more images of one shape, got {[p.shape for p in panels]}")
    column = aspect / len(panels)
    return np.concatenate([pad_to_aspect(panel, column, colour) for panel in panels], axis=1)
