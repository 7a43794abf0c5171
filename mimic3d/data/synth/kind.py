"""The interface of a procedural object category (heads, cars) used by the synthetic renderer."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from mimic3d.camera import CameraPreset
from mimic3d.data.synth.params import ParamLayout

Tensor = torch.Tensor
Named = dict[str, Tensor | list[Tensor]]
# Per-axis components (each [M]) of points or vectors, the form every SDF function here works on.
Vec3 = tuple[Tensor, Tensor, Tensor]


@dataclass
class SampledObject:
    """One random object: packed parameters and its camera pose (EG3D yaw/pitch, radians)."""

    geometry: np.ndarray
    appearance: np.ndarray
    yaw: float
    pitch: float


class ObjectKind:
    """A family of random SDF objects with materials, a camera distribution and a background.

    Subclasses define the parameter layouts, ``sample`` (all randomness, from one numpy
    generator so that an object depends only on its own seed), ``distance`` (the SDF used by
    sphere tracing), ``part_distances`` (per-material distances for classification) and
    ``surface_colour``; the renderer does the rest.
    """

    name: str
    preset: CameraPreset
    geometry: ParamLayout
    appearance: ParamLayout
    bound_center: tuple[float, float, float]
    bound_radius: float
    # Length scale of ambient-occlusion probes (world units).
    occlusion_scale: float
    # Camera spread around the preset's mean pose (radians): Gaussian standard deviations, or the
    # half-ranges of a uniform distribution, as ``preset.distribution`` says. ``with_pose_spread``
    # changes them for one dataset.
    yaw_std: float
    pitch_std: float

    def sample(self, rng: np.random.Generator) -> SampledObject:
        raise NotImplementedError

    def sample_pose(self, rng: np.random.Generator) -> tuple[float, float]:
        """EG3D yaw/pitch around the preset's mean: Gaussian or uniform as the preset says."""
        preset, yaw_std, pitch_std = self.preset, self.yaw_std, self.pitch_std
        if preset.distribution == "gaussian":
            yaw, pitch = rng.normal(0.0, yaw_std), rng.normal(0.0, pitch_std)
        else:
            yaw, pitch = rng.uniform(-yaw_std, yaw_std), rng.uniform(-pitch_std, pitch_std)
        return preset.yaw_mean + yaw, min(max(preset.pitch_mean + pitch, 1e-5), math.pi - 1e-5)

    def with_pose_spread(self, yaw_std: float | None = None, pitch_std: float | None = None) -> ObjectKind:
        """The same kind with other camera spreads (None keeps the kind's own); the objects drawn
        from a seed stay the same, only their poses spread differently."""
        for name, value in (("yaw_std", yaw_std), ("pitch_std", pitch_std)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite angle >= 0 in radians, got {value}")
        posed = copy.copy(self)
        posed.yaw_std = self.yaw_std if yaw_std is None else float(yaw_std)
        posed.pitch_std = self.pitch_std if pitch_std is None else float(pitch_std)
        return posed

    def bound_distance(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """Distance [M] to a cheap shape containing every object of the kind (a lower bound of
        ``distance`` outside it); the bounding sphere unless a kind has a tighter one."""
        cx, cy, cz = self.bound_center
        return torch.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) - self.bound_radius

    def distance(self, x: Tensor, y: Tensor, z: Tensor, g: Named) -> Tensor:
        """Signed distance [M] of points [M] to each point's object (geometry parameters ``g``)."""
        raise NotImplementedError

    def part_distances(self, x: Tensor, y: Tensor, z: Tensor, g: Named) -> tuple[Tensor, ...]:
        """One [M] distance per material part; the smallest names the part a surface point is on."""
        raise NotImplementedError

    @staticmethod
    def texture_points(x: Tensor, y: Tensor, z: Tensor, a: Named) -> Vec3:
        """Points [M] shifted by each object's random ``offset`` so that noise textures differ
        between objects of the same kind."""
        ox, oy, oz = a["offset"]
        return x + ox, y + oy, z + oz

    def surface_colour(
        self, points: Vec3, normal: Vec3, part: Tensor, g: Named, a: Named
    ) -> tuple[Tensor, Tensor]:
        """Albedo [3, M] in [0, 1] and specular strength [M] at surface ``points`` with unit
        ``normal`` on material ``part`` [M] (an index into ``part_distances``)."""
        raise NotImplementedError

    def background(self, u: Tensor, v: Tensor, a: Named) -> Tensor:
        """Background colours [3, B, R*R] of B objects (appearance rows ``a`` of shape [B]) at the
        normalised pixel coordinates u, v [R*R] in [0, 1] (row 0 = top)."""
        raise NotImplementedError
