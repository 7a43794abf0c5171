"""Camera trajectories for videos and EPI images, as pure functions of the frame count.

Angles are EG3D's orbit angles (``orbit_cam2world``): yaw = pitch = pi/2 is the frontal view, larger
yaw moves the camera towards +x, larger pitch moves it down. Cameras stay on the preset's sphere and
look at its pivot. Looping trajectories sample t = k / F (no repeated end frame).

- ``orbit``: EG3D's gen_videos loop, yaw pi/2 + 0.35 sin(2 pi t), pitch pi/2 - 0.05 + 0.25 cos(2 pi t).
- ``yaw-sweep``: one linear pass from yaw pi/2 - 0.35 to pi/2 + 0.35 at pitch pi/2 (EPI images).
- ``turntable``: a full turn of yaw, ``pitch_range`` (0.2) above the horizon.
- ``front-circle``: EpiGRAF's circle in front of the subject, yaw +-0.3, pitch +-0.2.
- ``wiggle``: EpiGRAF's sweep from yaw pi/2 - pi/2 to pi/2 + pi/2 while the pitch swings by 0.5 cos.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mimic3d.camera import CameraPreset
from mimic3d.tools.parsing import check_positive_int
from mimic3d.tools.viewpoints import orbit_labels

# name: (default yaw_range, default pitch_range)
TRAJECTORY_DEFAULTS: dict[str, tuple[float, float]] = {
    "orbit": (0.35, 0.25),
    "yaw-sweep": (0.35, 0.0),
    "turntable": (math.pi, 0.2),
    "front-circle": (0.3, 0.2),
    "wiggle": (math.pi / 2, 0.5),
}
TRAJECTORIES = tuple(TRAJECTORY_DEFAULTS)
_EG3D_PITCH_OFFSET = -0.05


def check_trajectory(name: str) -> str:
    if name not in TRAJECTORY_DEFAULTS:
        raise ValueError(f"trajectory: unknown name {name!r}; expected one of {', '.join(TRAJECTORIES)}")
    return name


def trajectory_angles(
    name: str,
    num_frames: int,
    yaw_range: float | None = None,
    pitch_range: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(yaw [F], pitch [F]) in radians for trajectory ``name``; ranges default per trajectory."""
    check_trajectory(name)
    check_positive_int(num_frames, "frames")
    default_yaw, default_pitch = TRAJECTORY_DEFAULTS[name]
    yr = default_yaw if yaw_range is None else float(yaw_range)
    pr = default_pitch if pitch_range is None else float(pitch_range)
    if not (math.isfinite(yr) and math.isfinite(pr)):
        raise ValueError(f"yaw_range/pitch_range: expected finite numbers, got {yr}, {pr}")
    loop = 2 * math.pi * np.arange(num_frames) / num_frames
    sweep = np.linspace(-1.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    centre = math.pi / 2
    if name == "orbit":
        yaw, pitch = centre + yr * np.sin(loop), centre + _EG3D_PITCH_OFFSET + pr * np.cos(loop)
    elif name == "yaw-sweep":
        yaw, pitch = centre + yr * sweep, np.full(num_frames, centre + pr)
    elif name == "turntable":
        yaw, pitch = centre + yr * loop / math.pi, np.full(num_frames, centre - pr)
    elif name == "front-circle":
        yaw, pitch = centre + yr * np.sin(loop), centre + pr * np.cos(loop)
    else:
        swing = 2 * math.pi * (sweep + 1) / 2
        yaw, pitch = centre + yr * sweep, centre + pr * np.cos(swing)
    return yaw.astype(np.float64), pitch.astype(np.float64)


def trajectory_labels(
    name: str,
    num_frames: int,
    preset: CameraPreset,
    yaw_range: float | None = None,
    pitch_range: float | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Camera labels [F, 25] of trajectory ``name`` on the preset's orbit (its radius, pivot and focal)."""
    yaw, pitch = trajectory_angles(name, num_frames, yaw_range, pitch_range)
    return orbit_labels(torch.from_numpy(yaw), torch.from_numpy(pitch), preset, device)
