"""Which cameras the tools render a model from: its dataset's camera preset and orbit labels around it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mimic3d.camera import PRESETS, CameraPreset, make_label, orbit_cam2world
from mimic3d.render import RENDER_PRESETS


def camera_preset_for(G: nn.Module, name: str | CameraPreset | None = None) -> CameraPreset:
    """The camera preset (focal, radius, pivot) to render ``G`` with.

    ``name`` picks one of ``PRESETS`` explicitly (or is a ``CameraPreset``, e.g. a checkpoint's stored
    camera statistics, returned as it is); otherwise the model's rendering settings decide:
    ShapeNet's ray range and box (0.1..2.6, box 1.6) mean the car preset, EpiGRAF's ray ranges
    (0.88..1.12 faces and cats, 0.75..1.25 Megascans) its cameras, anything else the FFHQ one
    (AFHQ differs only in its pivot; pass ``name="afhq"`` for it).
    """
    if isinstance(name, CameraPreset):
        return name
    if name is not None:
        if name not in PRESETS:
            raise ValueError(f"camera: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return PRESETS[name]
    rendering = getattr(getattr(G, "config", None), "rendering", None)
    shapenet = RENDER_PRESETS["shapenet"]
    if rendering is not None and (rendering.ray_start, rendering.box_warp) == (
        shapenet.ray_start,
        shapenet.box_warp,
    ):
        return PRESETS["shapenet"]
    if rendering is not None and (rendering.ray_start, rendering.ray_end) in _EPIGRAF_RAY_RANGES:
        return PRESETS[_EPIGRAF_RAY_RANGES[(rendering.ray_start, rendering.ray_end)]]
    return PRESETS["ffhq"]


# EpiGRAF's ray ranges (configs/dataset) and the camera presets they belong to.
_EPIGRAF_RAY_RANGES = {(0.88, 1.12): "epigraf-ffhq", (0.75, 1.25): "epigraf-megascans"}


def orbit_labels(
    yaws: Sequence[float] | torch.Tensor,
    pitches: Sequence[float] | torch.Tensor | float,
    preset: CameraPreset,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Labels [V, 25] of cameras on the preset's orbit at absolute EG3D angles (pi/2, pi/2 = frontal)."""
    yaw = torch.as_tensor(yaws, dtype=torch.float32)
    pitch = torch.as_tensor(pitches, dtype=torch.float32).expand_as(yaw)
    pose = orbit_cam2world(yaw, pitch, preset.radius, preset.pivot)
    return make_label(pose, preset.intrinsics().to(pose.dtype)).to(device)


def view_labels(
    yaw_offsets: Sequence[float],
    pitch_offset: float,
    preset: CameraPreset,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Labels [V, 25] at yaw/pitch offsets (radians) from the frontal view (EG3D's gen_samples views)."""
    yaws = [math.pi / 2 + offset for offset in yaw_offsets]
    return orbit_labels(yaws, math.pi / 2 + pitch_offset, preset, device)


def conditioning_label(
    preset: CameraPreset, batch_size: int = 1, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The frontal camera [N, 25] that EG3D conditions the mapping network on for visualisation."""
    return preset.frontal_label().to(device=device, dtype=torch.float32).expand(batch_size, -1).contiguous()
