"""``mesh``: density volumes and marching-cubes surfaces of any density field, and of generators.

The core works on a plain ``density_fn(points [P, 3]) -> sigma [P]``, so analytic fields and trained
models share it. The grid holds R points per axis spanning the cube [centre - box/2, centre + box/2]
end to end (EG3D's ``create_samples``: voxel size box / (R - 1)); ``volume[i, j, k]`` is the density
at (x_i, y_j, z_k). Points are generated and evaluated chunk by chunk, so memory holds the volume
plus one chunk. ``border`` voxels on every face are set below the level before marching cubes, so
every surface closes inside the box (EG3D trims 30/256 of the cube per side to drop the tri-plane's
unreliable rim); the mesh is then watertight unless the field itself is degenerate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import skimage.measure
import torch
import trimesh
from torch import Tensor
from tqdm import tqdm

from mimic3d.models.generator import TriplaneGenerator, Triplanes
from mimic3d.tools.parsing import check_positive_int

DensityFn = Callable[[Tensor], Tensor]  # points [P, 3] -> sigma [P] (or [P, 1])
ColourFn = Callable[[Tensor], Tensor]  # points [P, 3] -> RGB [P, 3] in [0, 1]

# EG3D's geometry scripts: raw-sigma level 10 and a border of 30 voxels per 256; EpiGRAF's
# extract_geometry.py: raw-sigma level 25.
EG3D_LEVEL = 10.0
EPIGRAF_LEVEL = 25.0
EG3D_BORDER_FRACTION = 30 / 256
MESH_RESOLUTIONS = (64, 128, 256, 512)


@dataclass
class MeshReport:
    vertices: int
    faces: int
    watertight: bool
    bounds: tuple[tuple[float, float, float], tuple[float, float, float]]  # (min xyz, max xyz)
    level: float

    def describe(self) -> str:
        low, high = (", ".join(f"{v:+.3f}" for v in corner) for corner in self.bounds)
        tight = "watertight" if self.watertight else "NOT watertight"
        return (
            f"{self.vertices} vertices, {self.faces} faces, {tight}, level {self.level:g}, "
            f"bounding box [{low}] .. [{high}]"
        )


def grid_axis(resolution: int, box_size: float, centre: float = 0.0) -> np.ndarray:
    """Coordinates [R] of the grid along one axis (both ends of the box included)."""
    check_positive_int(resolution, "resolution", minimum=2)
    if not box_size > 0:
        raise ValueError(f"box_size: expected a positive number, got {box_size}")
    return np.linspace(centre - box_size / 2, centre + box_size / 2, resolution)


def density_grid(
    density_fn: DensityFn,
    resolution: int,
    box_size: float = 1.0,
    centre: Sequence[float] = (0.0, 0.0, 0.0),
    chunk_points: int = 1 << 18,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """float32 volume [R, R, R] of ``density_fn`` on the grid (indexed x, y, z), in chunks of points."""
    check_positive_int(chunk_points, "chunk_points")
    axes = [torch.from_numpy(grid_axis(resolution, box_size, c)).float().to(device) for c in centre]
    total = resolution**3
    volume = np.empty(total, np.float32)
    starts = range(0, total, chunk_points)
    with torch.no_grad():
        for start in tqdm(starts, desc="density", disable=not progress):
            index = torch.arange(start, min(start + chunk_points, total), device=device)
            points = torch.stack(
                [
                    axes[0][index // resolution**2],
                    axes[1][(index // resolution) % resolution],
                    axes[2][index % resolution],
                ],
                dim=-1,
            )
            sigma = density_fn(points).reshape(-1)
            if sigma.shape[0] != points.shape[0]:
                raise ValueError(f"density_fn: returned {sigma.shape[0]} values for {points.shape[0]} points")
            volume[start : start + len(index)] = sigma.float().cpu().numpy()
    return volume.reshape(resolution, resolution, resolution)


def close_border(volume: np.ndarray, border: int, level: float) -> np.ndarray:
    """Copy of ``volume`` whose outer ``border`` voxels on every face lie below ``level``."""
    check_positive_int(border, "border")
    if 2 * border >= min(volume.shape):
        raise ValueError(f"border: {border} voxels per side leave nothing of a {volume.shape[0]}^3 grid")
    closed = volume.copy()
    fill = min(float(np.min(volume)), level) - 1.0
    for axis in range(3):
        index: list[slice] = [slice(None)] * 3
        index[axis] = slice(0, border)
        closed[tuple(index)] = fill
        index[axis] = slice(-border, None)
        closed[tuple(index)] = fill
    return closed


def extract_mesh(
    volume: np.ndarray,
    level: float,
    box_size: float = 1.0,
    centre: Sequence[float] = (0.0, 0.0, 0.0),
    border: int = 1,
) -> trimesh.Trimesh:
    """Marching-cubes surface {density = level} of ``volume`` [R, R, R] (from ``density_grid`` with the
    same box), in world coordinates, faces wound so that normals point out of the dense region."""
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"volume: expected a cubic grid [R, R, R], got {list(volume.shape)}")
    if not np.isfinite(volume).all():
        raise ValueError("volume: contains NaN or infinite densities")
    closed = close_border(volume, border, level)
    inner = closed[border:-border, border:-border, border:-border]
    if not inner.min() < level < inner.max():
        raise ValueError(
            f"level: {level:g} does not cut the density, whose range inside the border is "
            f"[{inner.min():.4g}, {inner.max():.4g}]; pick a level inside it"
        )
    voxel = box_size / (volume.shape[0] - 1)
    # Density grows into the object: "ascent" winds the faces with outward normals.
    vertices, faces, _, _ = skimage.measure.marching_cubes(
        closed, level=level, spacing=(voxel, voxel, voxel), gradient_direction="ascent"
    )
    vertices += np.asarray(centre, dtype=np.float64) - box_size / 2
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=True)


def colour_vertices(mesh: trimesh.Trimesh, colour_fn: ColourFn, chunk_points: int = 1 << 16) -> None:
    """Set the mesh's vertex colours from ``colour_fn`` (RGB in [0, 1]) evaluated at its vertices."""
    points = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float32))
    with torch.no_grad():
        rgb = torch.cat(
            [colour_fn(chunk).reshape(-1, 3).float().cpu() for chunk in points.split(chunk_points)]
        )
    rgba = np.concatenate([(rgb.clamp(0, 1).numpy() * 255).round(), np.full((len(rgb), 1), 255)], axis=1)
    mesh.visual.vertex_colors = rgba.astype(np.uint8)


def mesh_report(mesh: trimesh.Trimesh, level: float) -> MeshReport:
    low, high = mesh.bounds if len(mesh.vertices) else (np.zeros(3), np.zeros(3))
    return MeshReport(
        vertices=len(mesh.vertices),
        faces=len(mesh.faces),
        watertight=bool(mesh.is_watertight),
        bounds=(tuple(float(v) for v in low), tuple(float(v) for v in high)),
        level=level,
    )


# ----------------------------------------------------------------------------- generators


def model_density_fn(G: TriplaneGenerator, ws: Tensor, planes: Triplanes) -> DensityFn:
    """Raw sigma of the generator's full field (P^c + P^r for stage-2 models) for ws [1, num_ws, w_dim]."""
    return lambda points: G.sample_density(points[None].to(ws.device), ws, planes=planes)[0, :, 0]


def default_level(G: TriplaneGenerator) -> float:
    """The raw-sigma iso level of the model's official geometry script (EG3D 10, EpiGRAF 25)."""
    return EPIGRAF_LEVEL if G.config.decoder == "epigraf" else EG3D_LEVEL


def model_colour_fn(G: TriplaneGenerator, planes: Triplanes) -> ColourFn:
    """The decoder's RGB (its first three feature channels) in [0, 1] at world points (EpiGRAF's raw
    colours in [-1, 1] are mapped to [0, 1])."""
    device = planes.coarse.device
    raw = G.config.decoder == "epigraf"

    def colour(points: Tensor) -> Tensor:
        features, _ = G.renderer.sample(planes.field_planes(), G.decoder, points[None].to(device))
        rgb = features[0, :, :3]
        return (rgb + 1) / 2 if raw else rgb

    return colour


def border_voxels(resolution: int, fraction: float) -> int:
    """Voxels per side for a border of ``fraction`` of the grid (at least one, so surfaces close)."""
    if not 0 <= fraction < 0.5:
        raise ValueError(f"border: expected a fraction of the box in [0, 0.5), got {fraction}")
    return max(1, round(fraction * resolution))


def seed_volume(
    G: TriplaneGenerator,
    ws: Tensor,
    resolution: int = 256,
    chunk_points: int = 1 << 18,
    progress: bool = False,
) -> tuple[np.ndarray, Triplanes]:
    """Raw-sigma volume [R, R, R] over the model's box (``box_warp``) for ws [1, num_ws, w_dim], and the
    tri-planes it was sampled from (for ``seed_mesh``)."""
    if resolution not in MESH_RESOLUTIONS:
        raise ValueError(f"resolution: expected one of {MESH_RESOLUTIONS}, got {resolution!r}")
    with torch.no_grad():
        planes = G.planes(ws, noise_mode="const")
    volume = density_grid(
        model_density_fn(G, ws, planes),
        resolution,
        G.config.rendering.box_warp,
        chunk_points=chunk_points,
        device=ws.device,
        progress=progress,
    )
    return volume, planes


def seed_mesh(
    G: TriplaneGenerator,
    planes: Triplanes,
    volume: np.ndarray,
    level: float | None = None,
    border_fraction: float = EG3D_BORDER_FRACTION,
    colours: bool = True,
) -> tuple[trimesh.Trimesh, MeshReport]:
    """Mesh of a ``seed_volume`` at ``level`` (raw sigma; default ``default_level(G)``), vertex colours
    from the decoder, and its report."""
    level = default_level(G) if level is None else level
    border = border_voxels(volume.shape[0], border_fraction)
    mesh = extract_mesh(volume, level, G.config.rendering.box_warp, border=border)
    if colours:
        colour_vertices(mesh, model_colour_fn(G, planes))
    return mesh, mesh_report(mesh, level)
