"""Pictures written at every snapshot: sample grids of both branches and a short multi-view clip.

The grid uses fixed latents and cameras drawn once from the dataset (EG3D's snapshot grids), so
successive snapshots show the same samples. Rows: 2D branch image, raw neural render and depth;
with the 3D branch trained, its full-resolution image and depth below. Rendering is deterministic
(no jitter, constant noise) and uses the tools' renderers and video writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mimic3d.models.generator import TriplaneGenerator
from mimic3d.tools.imaging import depth_to_images, resize_images, save_png, tile_grid, to_uint8
from mimic3d.tools.rendering import render_settings, shared_planes
from mimic3d.tools.video import render_video
from mimic3d.training.randomness import stream_seed

_GRID_STREAM = 2  # key separating the grid's latents from the training streams
VIDEO_SEEDS = 4
VIDEO_FPS = 12.0


@dataclass
class SnapshotPictures:
    """Paths written and the grids themselves (uint8 [H, W, 3], for TensorBoard)."""

    grids: dict[str, np.ndarray]
    paths: list[Path]


def fixed_grid_inputs(labels: Tensor, count: int, z_dim: int, seed: int) -> tuple[Tensor, Tensor]:
    """Latents [count, z_dim] and dataset cameras [count, 25] that stay fixed for the whole run."""
    generator = torch.Generator().manual_seed(stream_seed(seed, _GRID_STREAM))
    z = torch.randn([count, z_dim], generator=generator)
    index = torch.randint(labels.shape[0], (count,), generator=generator)
    return z, labels[index].float()


def branch_rows(
    G: TriplaneGenerator, z: Tensor, c: Tensor, branches: tuple[str, ...], neural_rendering_resolution: int
) -> dict[str, list[np.ndarray]]:
    """Rows of uint8 tiles: ``2d`` / ``2d_raw`` / ``2d_depth`` and ``3d`` / ``3d_depth``."""
    rows: dict[str, list[Tensor]] = {}
    with torch.no_grad(), render_settings(G):
        for i in range(z.shape[0]):
            zi, ci = z[i : i + 1], c[i : i + 1]
            ws = G.mapping(zi, ci)
            planes = shared_planes(G, ws, "3d" in branches)
            if "2d" in branches:
                out = G.synthesis(
                    ws,
                    ci,
                    "2d",
                    noise_mode="const",
                    planes=planes,
                    neural_rendering_resolution=neural_rendering_resolution,
                )
                rows.setdefault("2d", []).append(out["image"])
                rows.setdefault("2d_raw", []).append(out["image_raw"])
                rows.setdefault("2d_depth", []).append(depth_to_images(out["image_depth"]))
            if "3d" in branches:
                out = G.synthesis(ws, ci, "3d", noise_mode="const", planes=planes)
                rows.setdefault("3d", []).append(out["image"])
                rows.setdefault("3d_depth", []).append(depth_to_images(out["image_depth"]))
    size = G.img_resolution
    return {name: list(to_uint8(resize_images(torch.cat(tiles), size))) for name, tiles in rows.items()}


def write_snapshot_pictures(
    G_ema: TriplaneGenerator,
    run_dir: str | Path,
    tag: str,
    z: Tensor,
    c: Tensor,
    branches: tuple[str, ...],
    neural_rendering_resolution: int,
    video_frames: int,
) -> SnapshotPictures:
    """``images/<tag>-grid.png`` (all rows) and, when ``video_frames > 0``, ``videos/<tag>-orbit.mp4``
    (an orbit of the first seeds, the 3D branch when trained, with depth)."""
    device = next(G_ema.parameters()).device
    rows = branch_rows(G_ema, z.to(device), c.to(device), branches, neural_rendering_resolution)
    run_dir = Path(run_dir)
    grid = tile_grid(list(rows.values()), gap=2)
    paths = [save_png(run_dir / "images" / f"{tag}-grid.png", grid)]
    grids = {"fakes/grid": grid}
    if video_frames > 0:
        video = render_video(
            G_ema,
            run_dir / "videos" / f"{tag}-orbit.mp4",
            seeds=list(range(VIDEO_SEEDS)),
            num_frames=video_frames,
            fps=VIDEO_FPS,
            branch=branches[-1],
            depth=True,
            progress=False,
        )
        paths.append(video.path)
    return SnapshotPictures(grids, paths)
