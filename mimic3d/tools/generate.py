"""``generate``: one PNG per seed with multi-view images and, beside them, depth and normal maps.

Layout of a seed's grid: one column per view; per branch three rows (image, depth, normals), the 2D
branch's rows above the 3D branch's. Depth is shown near = white over the seed's own depth range
(shared by its views); normals are camera-space normals of the depth map (``normals_from_depth``).
The 2D branch's depth and normals come from its neural render (64^2 or 128^2) and are upsampled to
the tile size. The tri-planes are computed once per seed and reused for every view.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from mimic3d.models.generator import TriplaneGenerator
from mimic3d.tools.imaging import (
    depth_range,
    depth_to_images,
    normals_to_images,
    resize_images,
    save_png,
    tile_grid,
    to_uint8,
)
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.normals import normals_from_depth
from mimic3d.tools.parsing import parse_floats, parse_seeds
from mimic3d.tools.rendering import check_branches, check_render_resolution, render_branch, shared_planes
from mimic3d.tools.viewpoints import camera_preset_for, view_labels

# EG3D's gen_samples.py views: yaw offsets 0.4, 0, -0.4 at a pitch offset of -0.2 (camera above).
DEFAULT_YAW_OFFSETS = (0.4, 0.0, -0.4)
DEFAULT_PITCH_OFFSET = -0.2


def render_views_grid(
    G: TriplaneGenerator,
    ws: Tensor,
    labels: Tensor,
    branches: Sequence[str] = ("2d",),
    resolution: int | None = None,
    depth: bool = True,
    normals: bool = True,
) -> np.ndarray:
    """uint8 grid [rows * S, V * S, 3] of ws [1, num_ws, w_dim] seen from cameras labels [V, 25]."""
    planes = shared_planes(G, ws, "3d" in branches)
    renders = {}
    for branch in branches:
        views = [
            render_branch(G, ws, labels[i : i + 1], branch, planes, resolution) for i in range(len(labels))
        ]
        renders[branch] = (torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views]))
    size = max(images.shape[-1] for images, _ in renders.values())
    rows: list[list[np.ndarray]] = []
    for images, depths in renders.values():
        pictures = [images]
        if depth:
            pictures.append(depth_to_images(depths, depth_range(depths)))
        if normals:
            pictures.append(normals_to_images(normals_from_depth(depths, labels)))
        for picture in pictures:
            rows.append(list(to_uint8(resize_images(picture, size))))
    return tile_grid(rows)


def generate_sample_grids(
    G: TriplaneGenerator,
    seeds: str | Sequence[int],
    branch: str = "2d",
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    yaw_offsets: str | Sequence[float] = DEFAULT_YAW_OFFSETS,
    pitch_offset: float = DEFAULT_PITCH_OFFSET,
    camera: str | None = None,
    resolution: int | None = None,
    depth: bool = True,
    normals: bool = True,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """{seed: uint8 grid} for every seed (see the module docstring for the layout).

    ``yaw_offsets`` (radians from frontal, e.g. "0.4,0,-0.4") are the views; ``camera`` names the
    camera preset (default: from the model's rendering settings); ``resolution`` is the 3D branch's
    render size (default: the image resolution).
    """
    seeds = parse_seeds(seeds)
    branches = check_branches(branch, G)
    check_render_resolution(resolution)
    offsets = parse_floats(yaw_offsets, "views")
    preset = camera_preset_for(G, camera)
    device = next(G.parameters()).device
    labels = view_labels(offsets, pitch_offset, preset, device)
    grids = {}
    for seed in tqdm(seeds, desc="seeds", disable=not progress):
        ws = seed_ws(G, [seed], preset, truncation_psi, truncation_cutoff)
        grids[seed] = render_views_grid(G, ws, labels, branches, resolution, depth, normals)
    return grids


def save_sample_grids(grids: dict[int, np.ndarray], outdir: str | os.PathLike) -> list[Path]:
    """Write ``seed{seed:04d}.png`` for each grid into ``outdir``; returns the paths."""
    return [save_png(Path(outdir) / f"seed{seed:04d}.png", grid) for seed, grid in grids.items()]
