"""``planes``: pictures of the tri-planes' feature norms, coarse P^c and (stage-2 models) residual P^r.

Each plane is shown as the L2 norm of its feature vector per texel through the viridis colour map,
one row per tri-plane (coarse, then residual), one column per plane in the model's projection order
(EG3D: xy, xz, zx; Mimic3D: xy, yz, zx; EpiGRAF, in world axes: zy, z-x, y-x). A plane's height
axis points up in the picture and its width axis right, e.g. the xy plane is seen from the front
with +y up. The three planes of a row share one colour range, so their norms compare.
"""

from __future__ import annotations

import numpy as np
import torch

from mimic3d.models.triplanes import Triplanes
from mimic3d.render.triplane import plane_axis_names
from mimic3d.tools.imaging import colorize, resize_images, tile_grid
from mimic3d.tools.parsing import check_positive_int

MAX_TILE_SIZE = 4096  # a picture of 2 x 3 such tiles is 300 MB of uint8: beyond that, a typo


def plane_names(convention: str) -> list[str]:
    """Names of the three planes in world axes, width axis first: ["xy", "xz", "zx"] for "eg3d",
    ["zy", "z-x", "y-x"] for "epigraf" (a "-" marks a negated axis)."""
    return [width + height for width, height in plane_axis_names(convention)]


def feature_norms(planes: torch.Tensor) -> torch.Tensor:
    """Planes [N, 3, C, S, S] -> per-texel feature norms [N, 3, S, S], flipped so height points up."""
    if planes.ndim != 5 or planes.shape[1] != 3:
        raise ValueError(f"planes: expected shape [N, 3, C, S, S], got {list(planes.shape)}")
    return planes.float().norm(dim=2).flip(-2)


def plane_norm_picture(planes: Triplanes, size: int | None = None, gap: int = 4) -> np.ndarray:
    """uint8 picture of the first sample's tri-plane feature norms (see the module docstring); every
    tile is resized to ``size`` (default: the largest plane resolution)."""
    stacks = [planes.coarse] + ([planes.residual] if planes.residual is not None else [])
    if size is None:
        size = max(stack.shape[-1] for stack in stacks)
    check_positive_int(size, "size", 1, MAX_TILE_SIZE)
    rows = []
    for stack in stacks:
        norms = resize_images(feature_norms(stack[:1])[0][:, None], size)[:, 0].cpu().numpy()
        value_range = (float(norms.min()), float(norms.max()))
        rows.append([colorize(norm, value_range) for norm in norms])
    return tile_grid(rows, gap=gap)
