"""Per-dataset camera settings (EG3D's FFHQ, AFHQ and ShapeNet cars)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mimic3d.camera.intrinsics import epigraf_focal, intrinsics_matrix
from mimic3d.camera.label import make_label
from mimic3d.camera.pose import orbit_cam2world


@dataclass(frozen=True)
class CameraPreset:
    """Camera distribution of a dataset, in EG3D's convention.

    ``focal`` is normalised (image size 1); the camera orbits the world origin at ``radius`` and
    looks at ``pivot``. Poses for synthetic data are drawn around (``yaw_mean``, ``pitch_mean``)
    (radians, pi/2 each is frontal) with ``yaw_std`` / ``pitch_std``: Gaussian standard deviations
    when ``distribution == "gaussian"``, half-widths of a uniform range when ``"uniform"``.
    """

    name: str
    focal: float
    radius: float
    pivot: tuple[float, float, float]
    yaw_std: float
    pitch_std: float
    yaw_mean: float = math.pi / 2
    pitch_mean: float = math.pi / 2
    distribution: str = "gaussian"

    def __post_init__(self) -> None:
        if self.distribution not in ("gaussian", "uniform"):
            raise ValueError(f"distribution: expected 'gaussian' or 'uniform', got {self.distribution!r}")
        if self.focal <= 0 or self.radius <= 0:
            raise ValueError(f"preset {self.name}: focal and radius must be positive")

    def intrinsics(self) -> torch.Tensor:
        """Normalised intrinsics ``[3, 3]`` with the principal point at the image centre."""
        return intrinsics_matrix(self.focal)

    def frontal_label(self) -> torch.Tensor:
        """Label ``[25]`` of the frontal camera, EG3D's conditioning camera for visualisation."""
        pose = orbit_cam2world(math.pi / 2, math.pi / 2, self.radius, self.pivot)
        return make_label(pose, self.intrinsics())


# Focal, radius and pivot: EG3D's dataset labels and rendering_kwargs (focal 4.2647 ~ fov 18.83 deg,
# 1.7074 = fov 45 deg in its convention). Pose spreads: FFHQ/AFHQ
# use the pi-GAN face/cat statistics (yaw 0.3, pitch 0.155); ShapeNet cars cover the full 360
# degrees of yaw over the upper hemisphere (pitch in [0, pi/2]), uniformly in area. EpiGRAF's
# cameras (configs/dataset): FFHQ and cats fov 12 deg at radius 1 around the origin (its faces use
# the same pose spread), Megascans fov 30 deg at radius 1 over the whole sphere, uniformly in area.
PRESETS: dict[str, CameraPreset] = {
    "ffhq": CameraPreset(
        "ffhq", focal=4.2647, radius=2.7, pivot=(0.0, 0.0, 0.2), yaw_std=0.3, pitch_std=0.155
    ),
    "afhq": CameraPreset(
        "afhq", focal=4.2647, radius=2.7, pivot=(0.0, 0.0, -0.06), yaw_std=0.3, pitch_std=0.155
    ),
    "shapenet": CameraPreset(
        "shapenet",
        focal=1.7074,
        radius=1.7,
        pivot=(0.0, 0.0, 0.0),
        yaw_std=math.pi,
        pitch_std=math.pi / 4,
        pitch_mean=math.pi / 4,
        distribution="uniform",
    ),
    "epigraf-ffhq": CameraPreset(
        "epigraf-ffhq",
        focal=epigraf_focal(12.0),
        radius=1.0,
        pivot=(0.0, 0.0, 0.0),
        yaw_std=0.3,
        pitch_std=0.155,
    ),
    "epigraf-megascans": CameraPreset(
        "epigraf-megascans",
        focal=epigraf_focal(30.0),
        radius=1.0,
        pivot=(0.0, 0.0, 0.0),
        yaw_std=math.pi,
        pitch_std=math.pi / 2,
        distribution="uniform",
    ),
}
