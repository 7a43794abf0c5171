"""``mesh``: density volumes and marching-cubes surfaces of any density field, and of generators.

The core works on a plain ``density_fn(points [P, 3]) -> sigma [P]``, so analytic fields and trained
models share it. The grid holds R points per axis spanning the cube [centre - box/2, centre + box/2]
end to end (EG3D's ``create_samples``: voxel size box / (R - 1)); ``volume[i, j, k]`` is the density
at (x_i, y_j, z_k). Points are generated and evaluated chunk by chunk, so memory holds the volume
plus one chunk. ``border`` voxels on every face are set below the level before marching cubes, so
every surface closes inside the box (EG3D trims 30/256 of the cube per side to drop the tri-plane's
unreliable rim); the mesh is then watertight unless the field itself is degenerate.

``choose_level`` picks the iso level before anything is written: EG3D's raw sigma 10 when it cuts the
density inside the border, else (a barely trained model) halfway between the median and the maximum
density there, and says so.
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

from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.triplanes import Triplanes
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
    automatic_level: bool = False  # chosen by ``choose_level`` because EG3D's level missed the density

    def describe(self) -> str:
        low, high = (", ".join(f"{v:+.3f}" for v in corner) for corner in self.bounds)
        tight = "watertight" if self.watertight else "NOT watertight"
        level = f"level {self.level:.4g}" + (" (automatic)" if self.automatic_level else "")
        box = f"bounding box [{low}] .. [{high}]"
        return f"{self.vertices} vertices, {self.faces} faces, {tight}, {level}, {box}"


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
    _check_level(level, *_inner_range(volume, border))
    voxel = box_size / (volume.shape[0] - 1)
    # Density grows into the object: "ascent" winds the faces with outward normals.
    vertices, faces, _, _ = skimage.measure.marching_cubes(
        closed, level=level, spacing=(voxel, voxel, voxel), gradient_direction="ascent"
    )
    vertices += np.asarray(centre, dtype=np.float64) - box_size / 2
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=True)


def _inner_range(volume: np.ndarray, border: int) -> tuple[float, float]:
    """(min, max) density inside the ``border`` voxels that marching cubes keeps."""
    inner = volume[border:-border, border:-border, border:-border]
    return float(inner.min()), float(inner.max())


def _check_level(level: float, low: float, high: float) -> None:
    if not low < level < high:
        raise ValueError(
            f"level: {level:g} does not cut the density, whose range inside the border is "
            f"[{low:.4g}, {high:.4g}]; pick a level inside it"
        )


def choose_level(
    volume: np.ndarray,
    border_fraction: float = EG3D_BORDER_FRACTION,
    level: float | None = None,
    official: float = EG3D_LEVEL,
) -> tuple[float, bool]:
    """(iso level, whether it was chosen automatically) for meshing ``volume`` [R, R, R].

    A given ``level`` must cut the density inside the border (ValueError naming the range). None:
    the ``official`` level (EG3D's 10; EpiGRAF's 25, see ``default_level``) when it cuts, else halfway
    between the median and the maximum density inside the border, so that the densest region of a
    barely trained model still shows; ValueError when the density is flat there (no surface at any
    level).
    """
    border = border_voxels(volume.shape[0], border_fraction)
    low, high = _inner_range(volume, border)
    if level is not None:
        _check_level(level, low, high)
        return level, False
    if low < official < high:
        return official, False
    inner = volume[border:-border, border:-border, border:-border]
    automatic = (float(np.median(inner)) + high) / 2
    if not low < automatic < high:
        raise ValueError(f"level: the density is flat inside the border ({low:.4g}); there is no surface")
    return automatic, True


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
    """Mesh of a ``seed_volume`` at ``level`` (raw sigma; default ``choose_level``'s with the model's
    official level, ``default_level(G)``), vertex colours from the decoder, and its report."""
    level, automatic = choose_level(volume, border_fraction, level, default_level(G))
    border = border_voxels(volume.shape[0], border_fraction)
    mesh = extract_mesh(volume, level, G.config.rendering.box_warp, border=border)
    if colours:
        colour_vertices(mesh, model_colour_fn(G, planes))
    report = mesh_report(mesh, level)
    report.automatic_level = automatic
    return mesh, report
