"""``video``: MP4s of camera trajectories, latent interpolation and style mixing, one or both branches.

A frame is a grid of cells. Each cell shows one latent: for every branch its image, then (with
``depth``) every branch's depth map, side by side. Cells come from the seeds in one of three ways:

- plain: one cell per seed, laid out on ``grid`` (default: one row);
- ``interpolate``: each cell loops through its share of the seeds (EG3D's gen_videos: seed order
  row-major over cells, keyframes fastest) with periodic cubic interpolation of ws;
- ``style_seeds``: rows are the seeds, columns the seed itself then its mix with each style seed
  (ws at ``mix_layers`` from the style seed; default the second half, the finer layers).

Fixed latents get their tri-planes computed once for the whole video; only the rendering runs per
frame, in ray chunks (``chunk_rays``), so 512^2 3D-branch frames fit in CPU memory. Depth maps use a
per-cell range fixed from the first frame, so they do not flicker.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor
from tqdm import tqdm

from mimic3d.camera import CameraPreset
from mimic3d.export.video import VideoWriter
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.triplanes import Triplanes
from mimic3d.tools.imaging import depth_range, depth_to_images, resize_images, tile_grid, to_uint8
from mimic3d.tools.latents import interpolate_keyframes, seed_ws, style_mix
from mimic3d.tools.parsing import check_positive_int, parse_grid, parse_layers, parse_seeds
from mimic3d.tools.rendering import (
    check_branches,
    check_render_resolution,
    render_branch,
    render_settings,
    shared_planes,
)
from mimic3d.tools.trajectories import trajectory_labels
from mimic3d.tools.viewpoints import camera_preset_for


@dataclass
class VideoSummary:
    path: Path
    frames: int
    height: int
    width: int
    fps: float


@dataclass
class _Cell:
    """One grid cell: a fixed ws [1, num_ws, w_dim] (with its planes) or keyframes [K, num_ws, w_dim]."""

    ws: Tensor
    planes: Triplanes | None = None
    depth_ranges: dict[str, tuple[float, float]] | None = None

    def ws_at(self, frame_times: np.ndarray, frame: int) -> Tensor:
        if self.ws.shape[0] == 1:
            return self.ws
        return interpolate_keyframes(self.ws, frame_times[frame : frame + 1])


def _cell_grid(
    G: TriplaneGenerator,
    seeds: list[int],
    grid: tuple[int, int] | None,
    interpolate: bool,
    style_seeds: list[int] | None,
    mix_layers: str | None,
    mapping: dict,
) -> list[list[_Cell]]:
    """Rows of cells (see the module docstring)."""
    if style_seeds is not None:
        if interpolate or grid is not None:
            raise ValueError("style_seeds: style mixing cannot be combined with interpolation or a grid")
        layers = parse_layers(mix_layers, G.num_ws)
        content, style = seed_ws(G, seeds, **mapping), seed_ws(G, style_seeds, **mapping)
        return [
            [_Cell(content[i : i + 1])]
            + [
                _Cell(style_mix(content[i : i + 1], style[j : j + 1], layers))
                for j in range(len(style_seeds))
            ]
            for i in range(len(seeds))
        ]
    ws = seed_ws(G, seeds, **mapping)
    if interpolate:
        width, height = grid or (1, 1)
        if len(seeds) % (width * height):
            raise ValueError(
                f"seeds: {len(seeds)} seeds do not divide evenly over the {width}x{height} grid's cells"
            )
        keyframes = len(seeds) // (width * height)
        cells = [_Cell(ws[i * keyframes : (i + 1) * keyframes]) for i in range(width * height)]
    else:
        width, height = grid or (len(seeds), 1)
        if len(seeds) != width * height:
            raise ValueError(
                f"seeds: a {width}x{height} grid needs {width * height} seeds, got {len(seeds)} "
                "(interpolation loops each cell through several seeds)"
            )
        cells = [_Cell(ws[i : i + 1]) for i in range(len(seeds))]
    return [cells[row * width : (row + 1) * width] for row in range(height)]


def video_name(trajectory: str, seeds: str, interpolate: bool = False, style_seeds: str | None = None) -> str:
    """Default file name of a video, distinct per mode: ``orbit_seeds0-3.mp4``,
    ``orbit_interp_seeds0-15.mp4``, ``orbit_seeds0-2_style10_11.mp4``."""
    mode = "_interp" if interpolate else ""
    style = "" if style_seeds is None else f"_style{_file_part(style_seeds)}"
    return f"{trajectory}{mode}_seeds{_file_part(seeds)}{style}.mp4"


def _file_part(seeds: str | Sequence[int]) -> str:
    text = seeds if isinstance(seeds, str) else ",".join(str(s) for s in seeds)
    return text.replace(" ", "").replace(",", "_")


def render_video(
    G: TriplaneGenerator,
    path: str | os.PathLike,
    seeds: str | Sequence[int],
    trajectory: str = "orbit",
    num_frames: int = 120,
    fps: float = 30.0,
    grid: str | tuple[int, int] | None = None,
    interpolate: bool = False,
    branch: str = "2d",
    depth: bool = False,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    camera: str | CameraPreset | None = None,
    yaw_range: float | None = None,
    pitch_range: float | None = None,
    resolution: int | None = None,
    style_seeds: str | Sequence[int] | None = None,
    mix_layers: str | None = None,
    depth_multiplier: float = 2.0,
    chunk_rays: int | None = None,
    progress: bool = True,
    ws: Tensor | None = None,
) -> VideoSummary:
    """Render an MP4 to ``path``; see the module docstring. ``resolution`` is the 3D branch's render
    size (default: the image resolution); ``depth_multiplier`` scales the depth samples per ray
    (EG3D's video script uses 2). ``ws`` [N, num_ws, w_dim] (e.g. an inverted latent) replaces the
    seeds' latents: one cell each, in a row."""
    seeds = parse_seeds(seeds)
    branches = check_branches(branch, G)
    check_positive_int(num_frames, "frames")
    check_render_resolution(resolution)
    grid = None if grid is None else parse_grid(grid)
    style = None if style_seeds is None else parse_seeds(style_seeds, "style_seeds")
    preset = camera_preset_for(G, camera)
    device = next(G.parameters()).device
    labels = trajectory_labels(trajectory, num_frames, preset, yaw_range, pitch_range, device)
    mapping = dict(preset=preset, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    if ws is None:
        rows = _cell_grid(G, seeds, grid, interpolate, style, mix_layers, mapping)
    else:
        rows = [[_Cell(ws[i : i + 1].to(device)) for i in range(ws.shape[0])]]
    for cell in (cell for row in rows for cell in row):
        if cell.ws.shape[0] == 1:
            cell.planes = shared_planes(G, cell.ws, "3d" in branches)
    keyframe_count = rows[0][0].ws.shape[0]
    frame_times = np.arange(num_frames) * keyframe_count / num_frames
    with render_settings(G, depth_multiplier, chunk_rays), VideoWriter(path, fps) as writer:
        for frame in tqdm(range(num_frames), desc="frames", disable=not progress):
            c = labels[frame : frame + 1]
            tiles = []
            for row in rows:
                tiles.append([])
                for cell in row:
                    ws = cell.ws_at(frame_times, frame)
                    planes = cell.planes
                    if planes is None:
                        planes = shared_planes(G, ws, "3d" in branches)
                    tiles[-1].append(_cell_tile(G, cell, ws, planes, c, branches, depth, resolution))
            writer.append(tile_grid(tiles))
        height, width = writer.frame_size
    return VideoSummary(Path(path), num_frames, height, width, float(fps))


def _cell_tile(
    G: TriplaneGenerator,
    cell: _Cell,
    ws: Tensor,
    planes: Triplanes,
    c: Tensor,
    branches: Sequence[str],
    depth: bool,
    resolution: int | None,
) -> np.ndarray:
    """uint8 [S, k * S, 3]: the cell's branch images, then (with ``depth``) their depth maps."""
    renders = {branch: render_branch(G, ws, c, branch, planes, resolution) for branch in branches}
    size = max(image.shape[-1] for image, _ in renders.values())
    pictures = [resize_images(image, size) for image, _ in renders.values()]
    if depth:
        if cell.depth_ranges is None:
            cell.depth_ranges = {branch: depth_range(d) for branch, (_, d) in renders.items()}
        pictures += [
            resize_images(depth_to_images(d, cell.depth_ranges[branch]), size)
            for branch, (_, d) in renders.items()
        ]
    return np.concatenate([to_uint8(picture)[0] for picture in pictures], axis=1)
