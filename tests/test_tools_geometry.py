"""Density grids, marching cubes, mesh/volume files and depth normals against analytic shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from numerics import assert_close, fan_in_sum

from mimic3d.camera import intrinsics_matrix, make_label, orbit_cam2world
from mimic3d.export import read_mrc, save_mesh, save_volume, write_mrc
from mimic3d.export.mrc import HEADER_BYTES
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.mesh import (
    close_border,
    colour_vertices,
    density_grid,
    extract_mesh,
    grid_axis,
    mesh_report,
    seed_volume,
)
from mimic3d.tools.normals import depth_to_points, normals_from_depth

CENTRE = torch.tensor([0.05, -0.1, 0.08])


def _ball(radius: float):
    """Density of a ball (positive inside, raw-sigma-like scale), centred off the origin."""
    return lambda points: 40.0 * (radius - (points - CENTRE).norm(dim=-1))


def test_grid_is_indexed_x_y_z_and_independent_of_chunking():
    linear = lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2]  # noqa: E731
    full = density_grid(linear, 9, box_size=2.0, centre=(1.0, 0.0, -1.0), chunk_points=10**6)
    chunked = density_grid(linear, 9, box_size=2.0, centre=(1.0, 0.0, -1.0), chunk_points=7)
    np.testing.assert_array_equal(full, chunked)
    x, y, z = grid_axis(9, 2.0, 1.0), grid_axis(9, 2.0, 0.0), grid_axis(9, 2.0, -1.0)
    assert x[0] == 0.0 and x[-1] == 2.0 and z[0] == -2.0  # ends of the box included
    expected = x[:, None, None] + 10 * y[None, :, None] + 100 * z[None, None, :]
    assert_close(full, expected, terms=3)  # a float32 3-term sum against float64


@pytest.mark.parametrize("resolution", [48, 96])
def test_mesh_of_a_ball_is_a_watertight_sphere_of_the_right_radius(resolution):
    radius = 0.3
    volume = density_grid(_ball(radius), resolution, box_size=1.0)
    mesh = extract_mesh(volume, level=0.0, box_size=1.0)
    distances = np.linalg.norm(mesh.vertices - CENTRE.numpy(), axis=1)
    assert abs(distances.mean() - radius) < 0.02 * radius
    assert np.abs(distances - radius).max() < 0.02 * radius
    report = mesh_report(mesh, 0.0)
    assert report.watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # faces wound with outward normals
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.03)
    low, high = np.array(report.bounds)
    np.testing.assert_allclose(low, CENTRE.numpy() - radius, atol=0.01)
    np.testing.assert_allclose(high, CENTRE.numpy() + radius, atol=0.01)


def test_border_closes_surfaces_cut_by_the_box():
    # A half-space fills the whole box on one side: without the border the surface would be open.
    volume = density_grid(lambda p: -10 * p[:, 2], 32, box_size=1.0)
    closed = close_border(volume, 2, level=0.0)
    assert closed[:2].max() < 0 and closed[:, :, -2:].max() < 0 and closed[2:-2, 2:-2, 2:-2].max() > 0
    mesh = extract_mesh(volume, 0.0, border=2)
    assert mesh.is_watertight
    # The closed slab spans the box minus the border, behind the plane z = 0.
    assert mesh.bounds[1][2] == pytest.approx(0.0, abs=1e-6) and mesh.bounds[0][2] > -0.5


def test_level_outside_the_density_range_is_refused():
    volume = density_grid(_ball(0.3), 16)
    with pytest.raises(ValueError, match="level"):
        extract_mesh(volume, level=1e3)
    with pytest.raises(ValueError, match="cubic grid"):
        extract_mesh(volume[:, :, :8], level=0.0)
    with pytest.raises(ValueError, match="NaN"):
        extract_mesh(np.full((8, 8, 8), np.nan, np.float32), level=0.0)


@pytest.mark.parametrize("suffix", ["ply", "obj", "glb"])
def test_coloured_mesh_round_trips_through_files(tmp_path, suffix):
    mesh = extract_mesh(density_grid(_ball(0.25), 24), 0.0)
    colour_vertices(mesh, lambda p: (p + 0.5).clamp(0, 1))  # colour = position
    loaded = trimesh.load(save_mesh(mesh, tmp_path / f"ball.{suffix}"), force="mesh")
    assert len(loaded.faces) == len(mesh.faces) and loaded.is_watertight
    np.testing.assert_allclose(loaded.bounds, mesh.bounds, atol=1e-5)
    if suffix != "obj":  # OBJ stores float colours; PLY and GLB keep the bytes
        np.testing.assert_array_equal(
            np.sort(loaded.visual.vertex_colors, 0), np.sort(mesh.visual.vertex_colors, 0)
        )
    top = loaded.vertices[:, 0].argmax()
    assert loaded.visual.vertex_colors[top, 0] > 180  # red grows with x


def test_mrc_round_trip_and_header(tmp_path):
    volume = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    path = write_mrc(tmp_path / "v.mrc", volume, voxel_size=0.25, origin=(-1, 0, 2))
    raw = path.read_bytes()
    assert len(raw) == HEADER_BYTES + 4 * volume.size
    header = np.frombuffer(raw[:HEADER_BYTES], "<i4")
    assert list(header[:4]) == [5, 6, 7, 2] and raw[208:212] == b"MAP "
    # Columns (x) vary fastest in the data block.
    first_values = np.frombuffer(raw[HEADER_BYTES : HEADER_BYTES + 8], "<f4")
    np.testing.assert_array_equal(first_values, volume[:2, 0, 0])
    loaded, voxel, origin = read_mrc(path)
    np.testing.assert_array_equal(loaded, volume)
    assert voxel == pytest.approx(0.25) and origin == (-1.0, 0.0, 2.0)
    np.testing.assert_array_equal(np.load(save_volume(volume, tmp_path / "v.npy")), volume)
    with pytest.raises(ValueError, match="volume file"):
        save_volume(volume, tmp_path / "v.vtk")


def _sphere_depth(c: torch.Tensor, resolution: int, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ray-sphere depths [1, 1, R, R] of a sphere at the origin, and a hit mask."""
    from mimic3d.camera import split_label
    from mimic3d.render import generate_rays

    cam2world, intrinsics = split_label(c)
    origins, directions = generate_rays(cam2world, intrinsics, resolution)
    b = (origins * directions).sum(-1)
    disc = b**2 - (origins**2).sum(-1) + radius**2
    depth = -b - disc.clamp(min=0).sqrt()
    return depth.reshape(1, 1, resolution, resolution), (disc > 0).reshape(1, 1, resolution, resolution)


def test_normals_from_depth_match_an_analytic_sphere():
    radius, resolution = 0.5, 64
    c = make_label(orbit_cam2world(math.pi / 2 + 0.4, math.pi / 2 - 0.2, 2.7), intrinsics_matrix(2.0))[None]
    depth, hit = _sphere_depth(c, resolution, radius)
    points = depth_to_points(depth, c)
    # Unprojection (pose, inverse intrinsics, depth * direction, a norm) of a float32 depth whose
    # discriminant b^2 - |o|^2 + r^2 cancels |o|^2 = 7.3 down to r^2 = 0.25: 29x the rounding.
    norms = points.norm(dim=1)[hit[:, 0]]
    assert_close(norms, torch.full_like(norms, radius), terms=29, depth=6, scale=2.7)
    world = normals_from_depth(depth, c, space="world")
    # Interior pixels: both neighbours on the sphere, so central differences see one smooth surface.
    interior = hit.clone()
    for shift in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        interior &= torch.roll(hit, shifts=shift, dims=(2, 3))
    expected = points / points.norm(dim=1, keepdim=True)
    cosine = (world * expected).sum(1)[interior[:, 0]]
    assert cosine.min() > 0.995
    camera = normals_from_depth(depth, c, space="camera")
    assert (camera[:, 2][interior[:, 0]] < 0).all()  # facing the camera: against +z (forward)


def test_seed_volume_equals_sample_density_of_the_generator():
    torch.manual_seed(1)
    G = TriplaneGenerator(generator_preset("tiny-mimic3d")).eval()
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim), torch.zeros(1, 25))
        volume, planes = seed_volume(G, ws, resolution=64)
        axis = torch.from_numpy(grid_axis(64, G.config.rendering.box_warp)).float()
        index = torch.tensor([[0, 0, 0], [63, 5, 17], [31, 40, 2], [10, 63, 63]])
        points = torch.stack([axis[index[:, 0]], axis[index[:, 1]], axis[index[:, 2]]], -1)
        direct = G.sample_density(points[None], ws)[0, :, 0]
    # Other chunks of points are other matrix shapes for the decoder (4 taps x 3 planes x 2 tri-planes).
    assert_close(volume[tuple(index.T)], direct, terms=fan_in_sum(G.decoder) + 24)
    assert planes.residual is not None  # the stage-2 field (P^c + P^r) is the one meshed
