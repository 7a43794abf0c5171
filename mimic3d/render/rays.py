"""Camera rays for full images and patches, in EG3D's convention (NVlabs/eg3d,
``eg3d/training/volumetric_rendering/ray_sampler.py``) and EpiGRAF's pixel grid.

Pixel (i, j) of an R x R image has its centre at u = (j + 0.5) / R, v = (i + 0.5) / R in normalised
image coordinates (row 0 at the top, u right, v down): the "centres" pixel grid of EG3D. EpiGRAF's
"corners" grid puts it at u = j / (R - 1), v = i / (R - 1) (its NDC linspace(-1, 1, R)), so the outer
pixel centres lie on the edges of the field of view. A point (u, v) is lifted through the
normalised intrinsics to an OpenCV camera direction (z = 1), rotated to world space and normalised;
every ray starts at the camera centre. Rays are flattened row-major: ray index = i * R + j.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.runtime import on_host


def _check_cameras(cam2world: Tensor, intrinsics: Tensor) -> None:
    if cam2world.ndim != 3 or cam2world.shape[1:] != (4, 4):
        raise ValueError(f"cam2world: expected shape [N, 4, 4], got {list(cam2world.shape)}")
    if intrinsics.ndim != 3 or intrinsics.shape[1:] != (3, 3):
        raise ValueError(f"intrinsics: expected shape [N, 3, 3], got {list(intrinsics.shape)}")
    if cam2world.shape[0] != intrinsics.shape[0]:
        raise ValueError(
            f"cam2world and intrinsics: batch sizes differ ({cam2world.shape[0]} vs {intrinsics.shape[0]})"
        )


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


PIXEL_GRIDS = ("centres", "corners")


def _pixel_centres(index: Tensor, resolution: int, grid: str = "centres") -> Tensor:
    """Normalised centre of pixel ``index`` on an axis of ``resolution`` pixels: (j + 0.5) / R with
    EG3D's exact arithmetic ("centres") or j / (R - 1) as EpiGRAF's linspace(-1, 1, R) ("corners")."""
    if grid == "centres":
        return index.to(torch.get_default_dtype()) * (1.0 / resolution) + (0.5 / resolution)
    if grid == "corners":
        return index.to(torch.get_default_dtype()) / max(resolution - 1, 1)
    raise ValueError(f"pixel_grid: expected one of {PIXEL_GRIDS}, got {grid!r}")


def rays_from_uv(cam2world: Tensor, intrinsics: Tensor, uv: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through normalised image points.

    cam2world [N, 4, 4], intrinsics [N, 3, 3] (normalised, with skew), uv [N, M, 2] or [M, 2]
    -> origins [N, M, 3], unit directions [N, M, 3], in cam2world's dtype also under autocast.
    """
    with torch.autocast(cam2world.device.type, enabled=False):
        return _rays_from_uv(cam2world, intrinsics, uv)


def _rays_from_uv(cam2world: Tensor, intrinsics: Tensor, uv: Tensor) -> tuple[Tensor, Tensor]:
    _check_cameras(cam2world, intrinsics)
    n = cam2world.shape[0]
    if uv.ndim == 2:
        uv = uv.unsqueeze(0).expand(n, -1, -1)
    if uv.ndim != 3 or uv.shape[0] != n or uv.shape[-1] != 2:
        raise ValueError(f"uv: expected shape [N, M, 2] or [M, 2] with N = {n}, got {list(uv.shape)}")
    uv = uv.to(cam2world.dtype)
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy, skew = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None], intrinsics[:, 0, 1, None]
    x, y = uv[..., 0], uv[..., 1]
    x_cam = (x - cx + cy * skew / fy - skew * y / fy) / fx
    y_cam = (y - cy) / fy
    # EG3D's exact arithmetic: the homogeneous point (x, y, 1, 1) through the full cam2world by bmm,
    # minus the camera centre. Rounding then matches the official rays bit for bit, which matters on
    # sharp surfaces of trained (or random) models: 1e-7 in a direction moved pixels by 1e-3.
    points = torch.stack([x_cam, y_cam, torch.ones_like(x_cam), torch.ones_like(x_cam)], -1)
    world = torch.bmm(cam2world, points.transpose(1, 2)).transpose(1, 2)[:, :, :3]
    origins = cam2world[:, None, :3, 3].expand_as(world)
    directions = F.normalize(world - origins, dim=-1)
    return origins.contiguous(), directions


def image_uv(resolution: int, device: torch.device | str | None = None, grid: str = "centres") -> Tensor:
    """Pixel centres of an R x R image on ``grid`` ("centres"/"corners"), row-major: [R * R, 2] as (u, v)."""
    _check_positive_int("resolution", resolution)
    centres = _pixel_centres(torch.arange(resolution, device=device), resolution, grid)
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([u, v], -1).reshape(-1, 2)


def generate_rays(
    cam2world: Tensor, intrinsics: Tensor, resolution: int, grid: str = "centres"
) -> tuple[Tensor, Tensor]:
    """Rays of a full R x R image on the pixel ``grid``: origins, directions [N, R * R, 3]."""
    return rays_from_uv(cam2world, intrinsics, image_uv(resolution, cam2world.device, grid))


def _as_batch_index(
    name: str, value: int | Tensor, n: int, device: torch.device, size: int, resolution: int
) -> Tensor:
    """Per-sample window corners [n] on ``device``, range-checked where that costs no sync (``on_host``)."""
    index = value if isinstance(value, Tensor) else torch.as_tensor(value)
    if index.is_floating_point() or index.is_complex():
        raise ValueError(f"{name}: expected integer pixel indices, got dtype {index.dtype}")
    if index.ndim == 0:
        index = index.expand(n)
    if index.shape != (n,):
        raise ValueError(f"{name}: expected an int or a tensor of shape [{n}], got shape {list(index.shape)}")
    if on_host(index) and (bool((index < 0).any()) or bool((index + size > resolution).any())):
        raise ValueError(
            f"{name}: a {size}-pixel patch must lie inside the {resolution}-pixel image, got {index.tolist()}"
        )
    if not isinstance(value, Tensor):
        return torch.full((n,), int(value), device=device)  # no host-to-device copy
    return index.to(device, non_blocking=True)


def patch_uv(
    resolution: int,
    top: int | Tensor,
    left: int | Tensor,
    size: int,
    batch_size: int,
    device: torch.device | str | None = None,
    grid: str = "centres",
) -> Tensor:
    """Pixel centres of the size x size window at (top, left) of an R x R image: [N, size * size, 2].

    ``top``/``left`` are ints or per-sample integer tensors [N]; the window must lie inside the image
    (checked for ints and CPU tensors; tensors already on an accelerator are trusted, see ``on_host``).
    ``grid``: the image's pixel grid ("centres" or "corners", see the module docstring).
    """
    _check_positive_int("resolution", resolution)
    _check_positive_int("size", size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    top_index = _as_batch_index("top", top, batch_size, device, size, resolution)
    left_index = _as_batch_index("left", left, batch_size, device, size, resolution)
    offsets = torch.arange(size, device=device)
    rows = _pixel_centres(top_index[:, None] + offsets, resolution, grid)  # [N, size]
    cols = _pixel_centres(left_index[:, None] + offsets, resolution, grid)
    v = rows[:, :, None].expand(-1, -1, size)
    u = cols[:, None, :].expand(-1, size, -1)
    return torch.stack([u, v], -1).reshape(batch_size, size * size, 2)


def generate_patch_rays(
    cam2world: Tensor,
    intrinsics: Tensor,
    resolution: int,
    top: int | Tensor,
    left: int | Tensor,
    size: int,
    grid: str = "centres",
) -> tuple[Tensor, Tensor]:
    """Rays of a size x size pixel window of the full R x R image (Mimic3D's patch at full-res spacing).

    Equal to ``generate_rays(..., resolution, grid)`` reshaped to [N, R, R, 3] and cropped to
    [:, top:top+size, left:left+size]. Returns origins, directions [N, size * size, 3].
    """
    _check_cameras(cam2world, intrinsics)
    uv = patch_uv(resolution, top, left, size, cam2world.shape[0], cam2world.device, grid)
    return rays_from_uv(cam2world, intrinsics, uv)


def scaled_patch_uv(patch_resolution: int, scale: Tensor, offset: Tensor, grid: str = "centres") -> Tensor:
    """EpiGRAF patch grid in normalised image coordinates: [N, r * r, 2].

    The patch covers [offset, offset + scale] of the image along each axis (scale [N] or [N, 2],
    offset [N, 2] as (x, y), y measured from the top) and is sampled at its r x r pixel centres on
    ``grid``, so scale = 1, offset = 0 gives exactly the full r x r image grid. On the "corners" grid
    this is EpiGRAF's x' = (x + 1) s - 1 + 2 o on x = linspace(-1, 1, r), except that EpiGRAF
    measures the y offset from the bottom: convert its parameters with y = 1 - scale - y. Crop real
    images at the same points (``grid_sample`` with grid = 2 * uv - 1 and align_corners=False for
    "centres", True for "corners") to get matching patches.
    """
    _check_positive_int("patch_resolution", patch_resolution)
    if offset.ndim != 2 or offset.shape[1] != 2:
        raise ValueError(f"offset: expected shape [N, 2], got {list(offset.shape)}")
    n = offset.shape[0]
    if scale.ndim == 1:
        scale = scale[:, None].expand(-1, 2)
    if scale.shape != (n, 2):
        raise ValueError(f"scale: expected shape [{n}] or [{n}, 2], got {list(scale.shape)}")
    # Checked on the CPU only (``on_host``).
    if on_host(scale) and (bool((scale <= 0).any()) or bool((scale > 1).any())):
        raise ValueError(f"scale: expected values in (0, 1], got {scale.tolist()}")
    base = image_uv(patch_resolution, offset.device, grid).to(offset.dtype)  # [r * r, 2]
    return base[None] * scale[:, None, :] + offset[:, None, :]


def generate_scaled_patch_rays(
    cam2world: Tensor,
    intrinsics: Tensor,
    patch_resolution: int,
    scale: Tensor,
    offset: Tensor,
    grid: str = "centres",
) -> tuple[Tensor, Tensor]:
    """Rays of an EpiGRAF scale/offset patch (see ``scaled_patch_uv``): [N, r * r, 3] each."""
    _check_cameras(cam2world, intrinsics)
    uv = scaled_patch_uv(patch_resolution, scale.to(cam2world.device), offset.to(cam2world.device), grid)
    return rays_from_uv(cam2world, intrinsics, uv)
