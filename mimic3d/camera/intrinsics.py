"""Normalised pinhole intrinsics (image size 1) and EG3D's field-of-view convention."""

from __future__ import annotations

import torch

from mimic3d.camera.tensors import TensorLike, broadcast_float_tensors

# EG3D's FOV_to_intrinsics uses these literals (and an extra 1.414 that makes the "fov" the
# diagonal-ish angle); keeping them reproduces its focal lengths to the last digit.
_EG3D_PI = 3.14159
_EG3D_SQRT2 = 1.414


def fov_to_focal(fov_degrees: float | torch.Tensor) -> float | torch.Tensor:
    """Normalised focal length for a field of view in degrees, EG3D's convention.

    focal = 1 / (tan(fov / 2) * 1.414); 18.837 degrees (FFHQ) gives 4.2634 ~ 4.2647 of the labels.
    A float in gives a float out; a tensor gives a tensor of the same shape.
    """
    fov = _fov_tensor(fov_degrees)
    focal = 1 / (torch.tan(fov * _EG3D_PI / 360) * _EG3D_SQRT2)
    return focal if isinstance(fov_degrees, torch.Tensor) else float(focal)


def _fov_tensor(fov_degrees: float | torch.Tensor) -> torch.Tensor:
    """``fov_degrees`` as a tensor (float64 for Python numbers), checked to lie in (0, 180)."""
    fov = (
        torch.as_tensor(fov_degrees, dtype=torch.float64)
        if not isinstance(fov_degrees, torch.Tensor)
        else fov_degrees
    )
    if not torch.isfinite(fov).all() or ((fov <= 0) | (fov >= 180)).any():
        raise ValueError(f"fov_degrees: expected values in (0, 180) degrees, got {fov_degrees}")
    return fov


def focal_to_fov(focal: float | torch.Tensor) -> float | torch.Tensor:
    """Inverse of ``fov_to_focal``: field of view in degrees for a normalised focal length."""
    value = torch.as_tensor(focal, dtype=torch.float64) if not isinstance(focal, torch.Tensor) else focal
    if not torch.isfinite(value).all() or (value <= 0).any():
        raise ValueError(f"focal: expected positive finite values, got {focal}")
    fov = torch.atan(1 / (value * _EG3D_SQRT2)) * 360 / _EG3D_PI
    return fov if isinstance(focal, torch.Tensor) else float(fov)


def epigraf_focal(fov_degrees: float | torch.Tensor) -> float | torch.Tensor:
    """Normalised focal length of EpiGRAF's field of view: 1 / (2 tan(fov / 2)).

    EpiGRAF shoots its rays through linspace(-1, 1, R) * tan(fov / 2), so with this focal and the
    renderer's "corners" pixel grid (u = j / (R - 1)) the outer pixel centres lie on the field of
    view's edges, exactly as in EpiGRAF. 12 degrees (FFHQ, cats) gives 4.7572, 30 (Megascans) 1.8660.
    """
    fov = _fov_tensor(fov_degrees)
    focal = 1 / (2 * torch.tan(torch.deg2rad(fov) / 2))
    return focal if isinstance(fov_degrees, torch.Tensor) else float(focal)


def intrinsics_matrix(
    focal: TensorLike,
    cx: TensorLike = 0.5,
    cy: TensorLike = 0.5,
    focal_y: TensorLike | None = None,
) -> torch.Tensor:
    """Normalised intrinsics ``[..., 3, 3]`` = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]].

    ``focal`` (fx, and fy unless ``focal_y`` is given), ``cx`` and ``cy`` are in units of the
    image size and broadcast against each other (shape ``[...]``).
    """
    fx, fy, cx, cy = broadcast_float_tensors(
        (focal, "focal"), (focal if focal_y is None else focal_y, "focal_y"), (cx, "cx"), (cy, "cy")
    )
    for values, name in ((fx, "focal"), (fy, "focal_y")):
        if not torch.isfinite(values).all() or (values <= 0).any():
            raise ValueError(
                f"{name}: expected positive finite focal lengths, got {values.flatten()[:4].tolist()}"
            )
    zero = torch.zeros_like(fx)
    one = torch.ones_like(fx)
    rows = (
        torch.stack((fx, zero, cx), -1),
        torch.stack((zero, fy, cy), -1),
        torch.stack((zero, zero, one), -1),
    )
    return torch.stack(rows, dim=-2)
