"""Tools for looking at results: sample grids, videos, meshes, EPI images, tri-plane pictures, doctor.

Every ``mimic3d`` command of this kind is a thin layer over these functions (see docs/tools.md).
"""

from __future__ import annotations

from mimic3d.tools.epi import (
    epi_picture,
    model_row_renderer,
    render_field_row,
    seed_epis,
    shear_residual,
    spatio_temporal_texture,
)
from mimic3d.tools.generate import generate_sample_grids, render_views_grid, save_sample_grids
from mimic3d.tools.latents import interpolate_keyframes, seed_latents, seed_ws, style_mix
from mimic3d.tools.mesh import (
    MeshReport,
    close_border,
    colour_vertices,
    density_grid,
    extract_mesh,
    mesh_report,
    seed_mesh,
    seed_volume,
)
from mimic3d.tools.normals import depth_to_points, normals_from_depth
from mimic3d.tools.parsing import parse_grid, parse_seeds
from mimic3d.tools.planes import feature_norms, plane_norm_picture
from mimic3d.tools.rendering import load_generator, render_branch, render_settings
from mimic3d.tools.trajectories import TRAJECTORIES, trajectory_angles, trajectory_labels
from mimic3d.tools.video import VideoSummary, render_video
from mimic3d.tools.viewpoints import camera_preset_for, orbit_labels, view_labels

__all__ = [
    "TRAJECTORIES",
    "MeshReport",
    "VideoSummary",
    "camera_preset_for",
    "close_border",
    "colour_vertices",
    "density_grid",
    "depth_to_points",
    "epi_picture",
    "extract_mesh",
    "feature_norms",
    "generate_sample_grids",
    "interpolate_keyframes",
    "load_generator",
    "mesh_report",
    "model_row_renderer",
    "normals_from_depth",
    "orbit_labels",
    "parse_grid",
    "parse_seeds",
    "plane_norm_picture",
    "render_branch",
    "render_field_row",
    "render_settings",
    "render_video",
    "render_views_grid",
    "save_sample_grids",
    "seed_epis",
    "seed_latents",
    "seed_mesh",
    "seed_volume",
    "seed_ws",
    "shear_residual",
    "spatio_temporal_texture",
    "style_mix",
    "trajectory_angles",
    "trajectory_labels",
    "view_labels",
]
