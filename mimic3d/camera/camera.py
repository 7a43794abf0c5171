"""``Camera``: a typed (cam2world, intrinsics) pair over the label functions."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mimic3d.camera.label import make_label, mirror_label, split_label, validate_label
from mimic3d.camera.tensors import TensorLike


@dataclass(frozen=True)
class Camera:
    """Cam2world ``[..., 4, 4]`` (EG3D/OpenCV axes) and normalised intrinsics ``[..., 3, 3]``.

    A thin view of the 25-float label: every method goes through ``make_label`` /
    ``split_label`` and the label functions.
    """

    cam2world: torch.Tensor
    intrinsics: torch.Tensor

    @classmethod
    def from_label(cls, c: TensorLike) -> Camera:
        """Camera of labels ``[..., 25]``."""
        return cls(*split_label(c))

    def to_label(self) -> torch.Tensor:
        """Labels ``[..., 25]`` (batch shapes of the two matrices broadcast)."""
        return make_label(self.cam2world, self.intrinsics)

    def mirror(self) -> Camera:
        """Camera of the x-flipped image (see ``mirror_label``)."""
        return Camera.from_label(mirror_label(self.to_label()))

    def validate(self, name: str = "camera") -> Camera:
        """Raise ValueError naming the first bad camera (see ``validate_label``); return self."""
        validate_label(self.to_label(), name)
        return self

    @property
    def origin(self) -> torch.Tensor:
        """Camera positions ``[..., 3]`` in world space."""
        return self.cam2world[..., :3, 3]
