"""``epi``: spatio-temporal texture (EPI) images, the picture that shows multi-view consistency.

One image row is rendered for every camera of a sweep and the rows are stacked over time, giving
an image [F, W, 3]. A scene point that stays put traces a smooth strip; with a camera translating
sideways in front of a plane every strip is a straight line of the same slope (the disparity per
frame). A renderer that repaints the scene per view (a 2D super-resolution hallucinating detail)
twists and breaks the strips. ``shear_residual`` measures straightness: shear row k by k times the
expected disparity and compare the rows; a perfectly consistent scene gives ~0.

The 3D branch renders just the chosen row's rays (W rays per frame, from the full-resolution pixel
grid); the 2D branch has to render and super-resolve the whole image, then keeps the row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from mimic3d.camera import split_label
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.triplanes import Triplanes
from mimic3d.render import Field, TriplaneRenderer, image_uv, rays_from_uv
from mimic3d.tools.imaging import tile_grid, to_uint8
from mimic3d.tools.rendering import check_render_resolution, render_branch, shared_planes

RowRenderer = Callable[[Tensor], Tensor]  # camera label [1, 25] -> RGB row [W, 3] in [-1, 1]


def row_index(row: float | int, resolution: int) -> int:
    """Pixel row for ``row``: an int is a pixel index, a float in [0, 1] a fraction of the height."""
    if isinstance(row, bool):
        raise ValueError(f"row: expected a pixel index or a fraction in [0, 1], got {row!r}")
    if isinstance(row, int):
        index = row
    elif isinstance(row, float) and 0.0 <= row <= 1.0:
        index = min(int(row * resolution), resolution - 1)
    else:
        raise ValueError(f"row: expected a pixel index or a fraction in [0, 1], got {row!r}")
    if not 0 <= index < resolution:
        raise ValueError(f"row: pixel {index} is outside an image of {resolution} rows")
    return index


def render_field_row(
    field: Field, renderer: TriplaneRenderer, c: Tensor, resolution: int, row: int
) -> Tensor:
    """RGB [W, 3] in [-1, 1] of pixel row ``row`` of an R x R render of ``field`` from camera c [1, 25]."""
    centres = (torch.arange(resolution, dtype=torch.float32, device=c.device) + 0.5) / resolution
    uv = torch.stack([centres, torch.full_like(centres, (row + 0.5) / resolution)], dim=-1)
    cam2world, intrinsics = split_label(c)
    origins, directions = rays_from_uv(cam2world, intrinsics, uv)
    with torch.no_grad():
        return renderer.render_field(field, origins, directions).features[0, :, :3]


def model_row_renderer(
    G: TriplaneGenerator,
    ws: Tensor,
    planes: Triplanes,
    branch: str,
    row: float | int = 0.5,
    resolution: int | None = None,
) -> RowRenderer:
    """Row renderer of one branch of ``G`` for ws [1, num_ws, w_dim] (3D branch at ``resolution``,
    default the image resolution)."""
    if branch == "3d":
        size = G.img_resolution if resolution is None else resolution
        index = row_index(row, size)
        uv = image_uv(size, planes.coarse.device, G.config.rendering.pixel_grid).view(size, size, 2)[index]

        def render_row(c: Tensor) -> Tensor:
            cam2world, intrinsics = split_label(c)
            origins, directions = rays_from_uv(cam2world, intrinsics, uv)
            with torch.no_grad():
                return G.render_rays(planes, origins, directions, perturb=False, channels=3).features[0]

        return render_row
    index = row_index(row, G.img_resolution)
    return lambda c: render_branch(G, ws, c, "2d", planes)[0][0, :, index].transpose(0, 1)


def spatio_temporal_texture(render_row: RowRenderer, labels: Tensor, progress: bool = False) -> Tensor:
    """EPI [F, W, 3] in [-1, 1]: ``render_row`` for each camera of labels [F, 25], stacked over time."""
    rows = [
        render_row(labels[i : i + 1]) for i in tqdm(range(len(labels)), desc="frames", disable=not progress)
    ]
    return torch.stack(rows)


def epi_picture(epis: Sequence[Tensor], gap: int = 4) -> np.ndarray:
    """uint8 image of EPIs [F, W, 3] side by side (e.g. 2D branch | 3D branch)."""
    return tile_grid([[to_uint8(epi.permute(2, 0, 1)[None])[0] for epi in epis]], gap=gap)


def shear_residual(epi: Tensor | np.ndarray, disparity: float) -> float:
    """Relative residual of an EPI [F, W, C] after shearing row k by ``k * disparity`` pixels.

    ``disparity`` is how far scene content moves per frame, in pixels (negative: to the left). Row k
    is resampled (linear interpolation) at x + k * disparity, over the columns every row covers; the
    result is the RMS deviation of the sheared rows from their mean over time, divided
    by the RMS contrast of the sheared EPI. Straight strips of that slope give ~0 (interpolation
    error only); view-dependent content gives values of order 1.
    """
    values = np.asarray(epi.detach().cpu() if isinstance(epi, Tensor) else epi, dtype=np.float64)
    if values.ndim != 3:
        raise ValueError(f"epi: expected shape [F, W, C], got {list(values.shape)}")
    frames, width, channels = values.shape
    shifts = np.arange(frames) * float(disparity)
    first = math.ceil(max(0.0, -shifts.min()))
    last = math.floor(min(width - 1.0, width - 1.0 - shifts.max()))
    if last - first < 1:
        raise ValueError(
            f"disparity: {disparity} px per frame shears every column out of the {width}-pixel EPI"
        )
    columns = np.arange(first, last + 1, dtype=np.float64)
    pixels = np.arange(width, dtype=np.float64)
    sheared = np.stack(
        [
            np.stack([np.interp(columns + shifts[k], pixels, values[k, :, ch]) for ch in range(channels)], -1)
            for k in range(frames)
        ]
    )
    deviation = sheared - sheared.mean(axis=0, keepdims=True)
    contrast = sheared - sheared.mean(axis=(0, 1), keepdims=True)
    return float(np.sqrt((deviation**2).mean()) / max(np.sqrt((contrast**2).mean()), 1e-12))


def seed_epis(
    G: TriplaneGenerator,
    ws: Tensor,
    labels: Tensor,
    branches: Sequence[str] = ("2d", "3d"),
    row: float | int = 0.5,
    resolution: int | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """{branch: EPI [F, W, 3]} of ws [1, num_ws, w_dim] over cameras labels [F, 25] (e.g. a yaw sweep);
    the tri-planes are computed once."""
    check_render_resolution(resolution)
    planes = shared_planes(G, ws, "3d" in branches)
    return {
        branch: spatio_temporal_texture(
            model_row_renderer(G, ws, planes, branch, row, resolution), labels, progress
        )
        for branch in branches
    }
