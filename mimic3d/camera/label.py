"""The EG3D 25-float camera label: packing, unpacking, validation and mirroring.

A label is ``[..., 25]``: the 4x4 cam2world matrix flattened row-major (translation at indices
3, 7, 11; OpenCV camera axes +x right, +y down, +z forward) followed by the normalised 3x3
intrinsics ``[fx, skew, cx, 0, fy, cy, 0, 0, 1]`` (image size 1, so cx, cy ~ 0.5).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mimic3d.camera.tensors import TensorLike, as_float_tensor

LABEL_DIM = 25
_CAM2WORLD_NAMES = [f"cam2world[{r}, {c}]" for r in range(4) for c in range(4)]
_INTRINSICS_NAMES = [f"intrinsics[{r}, {c}]" for r in range(3) for c in range(3)]
_ENTRY_NAMES = _CAM2WORLD_NAMES + _INTRINSICS_NAMES


def make_label(cam2world: TensorLike, intrinsics: TensorLike) -> torch.Tensor:
    """Pack cam2world ``[..., 4, 4]`` and intrinsics ``[..., 3, 3]`` into labels ``[..., 25]``.

    Batch shapes broadcast, so one intrinsics matrix can serve a batch of poses. The result takes
    cam2world's dtype and device.
    """
    cam2world = as_float_tensor(cam2world, "cam2world", trailing=(4, 4))
    intrinsics = as_float_tensor(intrinsics, "intrinsics", like=cam2world, trailing=(3, 3)).to(
        cam2world.dtype
    )
    try:
        batch = torch.broadcast_shapes(cam2world.shape[:-2], intrinsics.shape[:-2])
    except RuntimeError as err:
        raise ValueError(
            f"make_label: batch shapes of cam2world {list(cam2world.shape[:-2])} and intrinsics "
            f"{list(intrinsics.shape[:-2])} do not broadcast"
        ) from err
    flat_pose = cam2world.expand(*batch, 4, 4).reshape(*batch, 16)
    flat_intrinsics = intrinsics.expand(*batch, 3, 3).reshape(*batch, 9)
    return torch.cat([flat_pose, flat_intrinsics], dim=-1)


def split_label(c: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack labels ``[..., 25]`` into cam2world ``[..., 4, 4]`` and intrinsics ``[..., 3, 3]``."""
    c = _as_label(c, "camera")
    batch = c.shape[:-1]
    return c[..., :16].reshape(*batch, 4, 4), c[..., 16:].reshape(*batch, 3, 3)


def mirror_label(c: TensorLike) -> torch.Tensor:
    """Label of the x-flipped image, ``[..., 25] -> [..., 25]``.

    The pose is conjugated by diag(-1, 1, 1): cam2world entries [0, 1], [0, 2], [1, 0], [2, 0] and
    the x translation [0, 3] change sign. A flipped image also moves the principal point to
    1 - cx and negates the skew; for EG3D's labels (cx = 0.5, no skew) the intrinsics are unchanged.
    """
    c = _as_label(c, "camera")
    sign = torch.ones(LABEL_DIM, dtype=c.dtype, device=c.device)
    sign[[1, 2, 3, 4, 8, 17, 18]] = -1
    offset = torch.zeros(LABEL_DIM, dtype=c.dtype, device=c.device)
    offset[18] = 1
    return c * sign + offset


def validate_label(c: TensorLike, name: str = "camera", atol: float = 1e-3) -> None:
    """Raise ValueError naming the first bad label in ``c`` ``[..., 25]``; return None if all are valid.

    Checks, in order: 25 floats per label; all finite; cam2world last row [0, 0, 0, 1]; rotation
    orthonormal (Frobenius |R^T R - I| <= atol) and proper (det +1, not a reflection); intrinsics
    last row [0, 0, 1]; positive focal lengths fx, fy. Messages look like
    ``camera[3]: rotation is not orthonormal (|R^T R - I| = 0.31)``.
    """
    c = _as_label(c, name)
    batch_shape = tuple(c.shape[:-1])
    flat = c.detach().reshape(-1, LABEL_DIM).to(device="cpu", dtype=torch.float64)
    if flat.shape[0] == 0:
        return

    def fail(mask: torch.Tensor, problem: Callable[[int], str]) -> None:
        bad = torch.nonzero(mask).flatten()
        if bad.numel() == 0:
            return
        index = int(bad[0])
        more = f" (and {bad.numel() - 1} more bad labels)" if bad.numel() > 1 else ""
        raise ValueError(f"{_entry_name(name, batch_shape, index)}: {problem(index)}{more}")

    finite = torch.isfinite(flat)
    fail(~finite.all(dim=1), lambda i: _non_finite_problem(flat[i]))

    pose = flat[:, :16].reshape(-1, 4, 4)
    intrinsics = flat[:, 16:].reshape(-1, 3, 3)
    last_row = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=flat.dtype)
    last_row_error = (pose[:, 3] - last_row).abs().amax(dim=1)
    fail(
        last_row_error > atol,
        lambda i: f"cam2world last row must be [0, 0, 0, 1], got {_fmt(pose[i, 3])}",
    )

    rotation = pose[:, :3, :3]
    gram_error = torch.linalg.matrix_norm(
        rotation.transpose(1, 2) @ rotation - torch.eye(3, dtype=flat.dtype)
    )
    fail(
        gram_error > atol,
        lambda i: f"rotation is not orthonormal (|R^T R - I| = {float(gram_error[i]):.3g})",
    )
    det = torch.linalg.det(rotation)
    fail(
        det < 0,
        lambda i: (
            f"rotation has determinant {float(det[i]):.3g}, a reflection (expected +1, right-handed axes)"
        ),
    )

    intrinsics_row = torch.tensor([0.0, 0.0, 1.0], dtype=flat.dtype)
    fail(
        (intrinsics[:, 2] - intrinsics_row).abs().amax(dim=1) > atol,
        lambda i: f"intrinsics last row must be [0, 0, 1], got {_fmt(intrinsics[i, 2])}",
    )
    focal = torch.stack([intrinsics[:, 0, 0], intrinsics[:, 1, 1]], dim=1)
    fail(
        (focal <= 0).any(dim=1),
        lambda i: (
            f"focal length must be positive, got fx = {float(focal[i, 0]):.6g}, fy = {float(focal[i, 1]):.6g}"
        ),
    )


def _as_label(c: TensorLike, name: str) -> torch.Tensor:
    c = as_float_tensor(c, name)
    if c.ndim == 0:
        raise ValueError(f"{name}: expected a label of {LABEL_DIM} floats [..., {LABEL_DIM}], got a scalar")
    if c.shape[-1] != LABEL_DIM:
        raise ValueError(
            f"{name}: expected {LABEL_DIM} floats per label (16 cam2world + 9 intrinsics), "
            f"got {c.shape[-1]} (shape {list(c.shape)})"
        )
    return c


def _entry_name(name: str, batch_shape: tuple[int, ...], flat_index: int) -> str:
    if not batch_shape:
        return name
    index = np.unravel_index(flat_index, batch_shape)
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


def _non_finite_problem(label: torch.Tensor) -> str:
    position = int(torch.nonzero(~torch.isfinite(label)).flatten()[0])
    return f"non-finite value {float(label[position])} at position {position} ({_ENTRY_NAMES[position]})"


def _fmt(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"
