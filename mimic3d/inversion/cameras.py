"""Cameras of an inversion: the model's camera statistics, a coarse pose search, and cameras optimised
jointly with the latent when the targets come without any.

Estimated cameras live where the model was trained to be seen from: on its orbit (EG3D's
``LookAtPoseSampler``: the origin at ``radius`` from the world origin at yaw/pitch, looking at the
pivot) with the training set's focal. Focal, pivot and the pose spread come from the training set's
camera statistics that ``mimic3d train`` stores in the checkpoint (metadata ``"camera"``, see
``mimic3d.camera.statistics``), never from a face preset unless the checkpoint has none.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mimic3d.camera import CameraPreset, intrinsics_matrix, make_label, orbit_cam2world
from mimic3d.checkpoints.portable import config_from_dict
from mimic3d.inversion.objectives import ReconstructionLoss
from mimic3d.inversion.views import render_views
from mimic3d.tools.viewpoints import camera_preset_for

CAMERA_METADATA_KEY = "camera"
# Coarse search grid: yaw offsets span +-2 standard deviations, pitch offsets +-1.5 (Gaussian poses).
SEARCH_YAW_SPAN = 2.0
SEARCH_PITCH_SPAN = 1.5


def model_camera(
    G: nn.Module, metadata: dict, override: str | CameraPreset | None = None
) -> tuple[CameraPreset, str]:
    """The camera statistics to place cameras for ``G`` with, and a sentence saying where they come from.

    Order: ``override`` (a preset name or a ``CameraPreset``), the checkpoint's ``metadata["camera"]``
    (written by ``mimic3d train``), else the preset ``camera_preset_for`` picks from the rendering
    settings (ShapeNet's ray range means cars, anything else FFHQ), named in the sentence.
    """
    if override is not None:
        preset = camera_preset_for(G, override)
        return preset, f"camera preset {preset.name!r} (given)"
    record = metadata.get(CAMERA_METADATA_KEY)
    if record is not None:
        preset = config_from_dict(CameraPreset, record, f"checkpoint metadata {CAMERA_METADATA_KEY!r}")
        return preset, f"the checkpoint's training-set camera statistics ({preset.name})"
    preset = camera_preset_for(G)
    return preset, (
        f"the checkpoint stores no camera statistics; assuming the {preset.name!r} preset (focal "
        f"{preset.focal:g}, radius {preset.radius:g}, pivot {tuple(preset.pivot)}), chosen from its "
        "rendering settings (pass camera=PRESET / --camera PRESET to choose another)"
    )


def conditioning_camera(preset: CameraPreset, c_dim: int, device: torch.device | str = "cpu") -> Tensor:
    """The mapping network's conditioning [1, c_dim]: the preset's frontal camera, as EG3D's scripts use."""
    if c_dim == 0:
        return torch.zeros([1, 0], device=device)
    return preset.frontal_label().to(device=device, dtype=torch.float32)[None]


class OrbitCameras(nn.Module):
    """V cameras on the preset's orbit with trainable yaw, pitch [V] (radians, pi/2 frontal) and log
    radius [V]; the pivot and focal stay the preset's. Calling it returns labels [V, 25]."""

    def __init__(self, yaw: Tensor, pitch: Tensor, radius: Tensor, preset: CameraPreset) -> None:
        super().__init__()
        self.yaw = nn.Parameter(torch.as_tensor(yaw, dtype=torch.float32).clone())
        self.pitch = nn.Parameter(torch.as_tensor(pitch, dtype=torch.float32).clone())
        radius = torch.as_tensor(radius, dtype=torch.float32)
        self.log_radius = nn.Parameter(radius.log().expand_as(self.yaw).clone())
        self.register_buffer("pivot", torch.tensor(preset.pivot, dtype=torch.float32))
        self.register_buffer("intrinsics", intrinsics_matrix(preset.focal).float())

    def forward(self) -> Tensor:
        pose = orbit_cam2world(self.yaw, self.pitch, self.log_radius.exp(), self.pivot)
        return make_label(pose, self.intrinsics)

    def angles(self) -> dict[str, list[float]]:
        """Current yaw, pitch (radians) and radius of every camera."""
        return {
            "yaw": self.yaw.detach().cpu().tolist(),
            "pitch": self.pitch.detach().cpu().tolist(),
            "radius": self.log_radius.detach().exp().cpu().tolist(),
        }


def candidate_poses(preset: CameraPreset, yaws: int = 7, pitches: int = 3) -> tuple[Tensor, Tensor]:
    """(yaw [K], pitch [K]) of the coarse search grid, K <= yaws * pitches.

    Gaussian poses: yaw_mean + [-2, 2] yaw_std and pitch_mean + [-1.5, 1.5] pitch_std; uniform poses:
    their whole range (a full circle of yaws when it covers one). Repeated poses (zero spread) are
    dropped, so a dataset with one fixed camera gives one candidate.
    """
    for value, name in ((yaws, "search_yaws"), (pitches, "search_pitches")):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if preset.distribution == "uniform":
        if preset.yaw_std >= math.pi:
            yaw = preset.yaw_mean + 2 * math.pi * torch.arange(yaws, dtype=torch.float64) / yaws
        else:
            yaw = preset.yaw_mean + preset.yaw_std * torch.linspace(-1, 1, yaws, dtype=torch.float64)
        pitch = preset.pitch_mean + preset.pitch_std * torch.linspace(-1, 1, pitches, dtype=torch.float64)
    else:
        spread = torch.linspace(-SEARCH_YAW_SPAN, SEARCH_YAW_SPAN, yaws, dtype=torch.float64)
        yaw = preset.yaw_mean + preset.yaw_std * spread
        spread = torch.linspace(-SEARCH_PITCH_SPAN, SEARCH_PITCH_SPAN, pitches, dtype=torch.float64)
        pitch = preset.pitch_mean + preset.pitch_std * spread
    if yaws == 1:
        yaw = torch.tensor([preset.yaw_mean], dtype=torch.float64)
    if pitches == 1:
        pitch = torch.tensor([preset.pitch_mean], dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(yaw.unique(), pitch.unique(), indexing="ij"), dim=-1).reshape(-1, 2)
    return grid[:, 0].float(), grid[:, 1].float()


@torch.no_grad()
def search_cameras(
    G: nn.Module,
    ws: Tensor,
    loss: ReconstructionLoss,
    preset: CameraPreset,
    views: int,
    branch: str | None = None,
    yaws: int = 7,
    pitches: int = 3,
    batch: int = 8,
) -> tuple[Tensor, Tensor]:
    """The best candidate pose (yaw [V], pitch [V]) for each of ``views`` targets: the candidate whose
    render of ws [1, num_ws, w_dim] (w_avg at the start of an inversion) has the lowest loss."""
    yaw, pitch = candidate_poses(preset, yaws, pitches)
    device = ws.device
    pose = orbit_cam2world(yaw, pitch, preset.radius, preset.pivot)
    labels = make_label(pose, intrinsics_matrix(preset.focal)).to(device)
    scores = []
    for start in range(0, labels.shape[0], batch):
        images = render_views(G, ws, labels[start : start + batch], branch)
        count = images.shape[0]
        pairs = images.repeat(views, 1, 1, 1)  # view-major: view v compared with every candidate
        index = torch.arange(views, device=device).repeat_interleave(count)
        scores.append(loss.terms(pairs, index).total.view(views, count))
    best = torch.cat(scores, dim=1).argmin(dim=1).cpu()
    return yaw[best], pitch[best]
