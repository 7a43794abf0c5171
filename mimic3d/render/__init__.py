"""Rays, depth samplers, tri-plane lookup, decoder MLP and the chunked volume renderer (EG3D and EpiGRAF
conventions)."""

from __future__ import annotations

from mimic3d.render.decoder import TriplaneDecoder
from mimic3d.render.epigraf_march import integration_weights, sphere_background_points
from mimic3d.render.field import Field, TriplaneField, query_field
from mimic3d.render.marcher import MarchResult, compositing_weights, march_rays
from mimic3d.render.rays import (
    generate_patch_rays,
    generate_rays,
    generate_scaled_patch_rays,
    image_uv,
    patch_uv,
    rays_from_uv,
    scaled_patch_uv,
)
from mimic3d.render.renderer import RENDER_PRESETS, RenderConfig, RenderResult, TriplaneRenderer
from mimic3d.render.samplers import (
    importance_sample,
    importance_sample_cells,
    jitter_within_cells,
    sample_pdf,
    stratified_depths,
)
from mimic3d.render.triplane import (
    PLANE_AXES,
    TriplaneSampler,
    gather_bilinear,
    project_onto_planes,
    sample_triplane,
    to_plane_frame,
)

__all__ = [
    "PLANE_AXES",
    "RENDER_PRESETS",
    "Field",
    "MarchResult",
    "RenderConfig",
    "RenderResult",
    "TriplaneDecoder",
    "TriplaneField",
    "TriplaneRenderer",
    "TriplaneSampler",
    "compositing_weights",
    "gather_bilinear",
    "generate_patch_rays",
    "generate_rays",
    "generate_scaled_patch_rays",
    "image_uv",
    "importance_sample",
    "importance_sample_cells",
    "integration_weights",
    "jitter_within_cells",
    "march_rays",
    "patch_uv",
    "project_onto_planes",
    "query_field",
    "rays_from_uv",
    "sample_pdf",
    "sample_triplane",
    "scaled_patch_uv",
    "sphere_background_points",
    "stratified_depths",
    "to_plane_frame",
]
