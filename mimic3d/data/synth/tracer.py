"""Batched sphere tracing and shading of procedural SDF objects seen by EG3D cameras.

Rays come from ``mimic3d.render.generate_rays`` (EG3D: pixel centres ((j + 0.5) / R, (i + 0.5) / R),
row 0 at the top, OpenCV camera axes, unit directions), so depth is the Euclidean distance along
exactly the rays that the volume renderer casts. Rays of all objects of a batch are marched as one
flat list: first against the kind's cheap bounding shape, then against the full SDF, compacting
the list as rays finish, so the cost follows the rays still marching rather than the image count.
Every computation is per ray, so a sample's pixels do not depend on the rest of its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mimic3d.camera import split_label
from mimic3d.data.synth.kind import ObjectKind, Vec3
from mimic3d.render import generate_rays, image_uv

Tensor = torch.Tensor

# Sphere-tracing settings: a step of 0.9 x distance keeps approximate (ellipsoid, smooth-blend)
# distances safe; rays stop within HIT_EPSILON world units of the surface.
STEP_SCALE = 0.9
HIT_EPSILON = 2e-4
MAX_STEPS = 96
BOUND_STEPS, BOUND_MARGIN = 24, 0.01
NORMAL_STEP = 1e-3
AMBIENT, DIFFUSE, SHININESS = 0.38, 0.72, 24.0


@dataclass
class RenderedBatch:
    """Images ``[B, R, R, 3]`` in [0, 1], depth ``[B, R, R]`` (inf where no surface) and
    coverage ``[B, R, R]`` in [0, 1] (1 where the pixel-centre ray hits the object)."""

    image: Tensor
    depth: Tensor
    coverage: Tensor


def render_objects(
    kind: ObjectKind,
    geometry: Tensor,
    appearance: Tensor,
    labels: Tensor,
    resolution: int,
    background: tuple[float, float, float] | None = None,
) -> RenderedBatch:
    """Render B objects, each with its own camera.

    Args:
        kind: the object category.
        geometry: [Pg, B] packed geometry parameters (one column per object).
        appearance: [Pa, B] packed appearance parameters.
        labels: [B, 25] EG3D cameras.
        resolution: output size R.
        background: a plain RGB colour in [0, 1] under the object, or None for the kind's own
            background (the scene's).
    """
    batch = labels.shape[0]
    cam2world, intrinsics = split_label(labels.float())
    origins, directions = generate_rays(cam2world, intrinsics, resolution)
    obj = torch.arange(batch).repeat_interleave(resolution * resolution)
    ox, oy, oz = origins.reshape(-1, 3).unbind(1)
    dx, dy, dz = directions.reshape(-1, 3).unbind(1)
    # Angular width of one pixel, for the silhouette anti-aliasing of near-miss rays.
    pixel_angle = (1.0 / (labels[:, 16].float() * resolution))[obj]

    t_enter, t_exit = _bounding_sphere(kind, ox, oy, oz, dx, dy, dz)
    t_enter = _march_bound(kind, ox, oy, oz, dx, dy, dz, t_enter, t_exit)
    t_hit, closest_t, closest_ratio = _sphere_trace(
        kind, geometry, obj, ox, oy, oz, dx, dy, dz, t_enter, t_exit
    )

    hit = torch.isfinite(t_hit)
    coverage = torch.where(hit, torch.ones_like(t_hit), (0.5 - closest_ratio / pixel_angle).clamp(0.0, 1.0))
    shade = torch.nonzero(coverage > 0).flatten()
    t_shade = torch.where(hit[shade], t_hit[shade], closest_t[shade])
    colour = _shade_points(
        kind,
        geometry,
        appearance,
        obj[shade],
        ox[shade] + t_shade * dx[shade],
        oy[shade] + t_shade * dy[shade],
        oz[shade] + t_shade * dz[shade],
        dx[shade],
        dy[shade],
        dz[shade],
    )

    u, v = image_uv(resolution).unbind(1)
    if background is None:
        image = kind.background(u, v, kind.appearance.view(appearance)).reshape(3, -1)
    else:
        image = torch.tensor(background, dtype=torch.float32)[:, None].repeat(1, batch * u.shape[0])
    alpha = coverage[shade]
    image[:, shade] = image[:, shade] * (1.0 - alpha) + colour * alpha
    shape = (batch, resolution, resolution)
    return RenderedBatch(
        image=image.clamp(0.0, 1.0).reshape(3, *shape).permute(1, 2, 3, 0),
        depth=t_hit.reshape(shape),
        coverage=coverage.reshape(shape),
    )


def _bounding_sphere(kind: ObjectKind, ox, oy, oz, dx, dy, dz) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of unit rays through the kind's bounding sphere (inf, -inf on a miss)."""
    cx, cy, cz = kind.bound_center
    px, py, pz = ox - cx, oy - cy, oz - cz
    b = px * dx + py * dy + pz * dz
    disc = b * b - (px * px + py * py + pz * pz - kind.bound_radius**2)
    root = disc.clamp(min=0).sqrt()
    miss = disc <= 0
    t_enter = torch.where(miss, torch.full_like(b, float("inf")), (-b - root).clamp(min=0))
    t_exit = torch.where(miss, torch.full_like(b, -float("inf")), -b + root)
    return t_enter, t_exit


def _march_bound(kind: ObjectKind, ox, oy, oz, dx, dy, dz, t_enter: Tensor, t_exit: Tensor) -> Tensor:
    """Advance rays to the kind's cheap bounding shape; rays that never reach it get inf.

    The bound contains every object of the kind, so its distance never exceeds the object's:
    skipping empty space with it is safe and spares the full SDF most background steps.
    """
    t = torch.where(t_enter < t_exit, t_enter, torch.full_like(t_enter, float("inf")))
    active = torch.nonzero(torch.isfinite(t)).flatten()
    for _ in range(BOUND_STEPS):
        if active.numel() == 0:
            break
        ta = t[active]
        distance = kind.bound_distance(
            ox[active] + ta * dx[active], oy[active] + ta * dy[active], oz[active] + ta * dz[active]
        )
        ta = ta + distance.clamp(min=0.0)
        left = ta > t_exit[active]
        t[active] = torch.where(left, torch.full_like(ta, float("inf")), ta)
        active = active[(distance > BOUND_MARGIN) & ~left]
    return t


def _sphere_trace(
    kind: ObjectKind, geometry: Tensor, obj: Tensor, ox, oy, oz, dx, dy, dz, t_enter: Tensor, t_exit: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """March every ray from ``t_enter`` until it hits (distance < HIT_EPSILON) or leaves the bound.

    Finished rays stay in the working set (frozen) until a quarter of it is finished; only then
    is the set compacted, which amortises gathering the per-ray object parameters.

    Returns [M] tensors: hit depth (inf for misses), and for misses the depth and distance/depth
    ratio of the closest approach to the surface (used for anti-aliased silhouettes).
    """
    count = ox.shape[0]
    t_hit = torch.full((count,), float("inf"))
    closest_t = torch.zeros(count)
    closest_ratio = torch.full((count,), float("inf"))
    index = torch.nonzero(t_enter < t_exit).flatten()
    # Rows: t, t_end, origin xyz, direction xyz, closest ratio, its depth. One matrix, so that a
    # compaction is a single index_select.
    state = torch.stack([t_enter, t_exit, ox, oy, oz, dx, dy, dz, closest_ratio, closest_t]).index_select(
        1, index
    )
    params = kind.geometry.view(geometry.index_select(1, obj.index_select(0, index)))
    done = torch.zeros(index.numel(), dtype=torch.bool)
    hit = torch.zeros_like(done)
    for step in range(MAX_STEPS):
        t, t_end, x0, y0, z0, ux, uy, uz, best_ratio, best_t = state.unbind(0)
        distance = kind.distance(x0 + t * ux, y0 + t * uy, z0 + t * uz, params)
        ratio = distance / t.clamp(min=1e-6)
        closer = (ratio < best_ratio) & ~done
        state[8] = torch.where(closer, ratio, best_ratio)
        state[9] = torch.where(closer, t, best_t)
        new_hit = (distance < HIT_EPSILON) & ~done
        state[0] = torch.where(done, t, t + STEP_SCALE * distance)
        hit = hit | new_hit
        # Rays still marching after the last step graze the surface: they end as near misses.
        done = done | new_hit | (state[0] > t_end) | (step == MAX_STEPS - 1)
        finished = int(done.sum())
        if finished == 0 or (finished < done.numel() // 4 and step < MAX_STEPS - 1):
            continue
        miss = done & ~hit
        t_hit[index[hit]] = state[0][hit]
        closest_t[index[miss]] = state[9][miss]
        closest_ratio[index[miss]] = state[8][miss]
        keep = torch.nonzero(~done).flatten()
        if keep.numel() == 0:
            break
        index = index.index_select(0, keep)
        state = state.index_select(1, keep)
        params = kind.geometry.view(geometry.index_select(1, obj.index_select(0, index)))
        done = torch.zeros(keep.numel(), dtype=torch.bool)
        hit = torch.zeros_like(done)
    return t_hit, closest_t, closest_ratio


def _shade_points(
    kind: ObjectKind,
    geometry: Tensor,
    appearance: Tensor,
    obj: Tensor,
    x: Tensor,
    y: Tensor,
    z: Tensor,
    dx: Tensor,
    dy: Tensor,
    dz: Tensor,
) -> Tensor:
    """Colour [3, S] of surface points: albedo x (ambient x occlusion + Lambert) + Blinn-Phong highlight."""
    g = kind.geometry.view(geometry.index_select(1, obj))
    a = kind.appearance.view(appearance.index_select(1, obj))
    part = torch.stack(kind.part_distances(x, y, z, g)).argmin(0)
    normal = _normal(kind, g, x, y, z)
    nx, ny, nz = normal
    occlusion = torch.ones_like(x)
    for probe, weight in ((1.0, 0.5), (2.5, 0.25)):
        h = probe * kind.occlusion_scale
        sample = kind.distance(x + h * nx, y + h * ny, z + h * nz, g)
        occlusion = occlusion - weight * ((h - sample) / h).clamp(0.0, 1.0)
    albedo, specular = kind.surface_colour((x, y, z), normal, part, g, a)
    lx, ly, lz = a["light"]
    diffuse = (nx * lx + ny * ly + nz * lz).clamp(min=0.0)
    hx, hy, hz = lx - dx, ly - dy, lz - dz
    half_norm = torch.sqrt(hx * hx + hy * hy + hz * hz).clamp(min=1e-6)
    highlight = ((nx * hx + ny * hy + nz * hz) / half_norm).clamp(min=0.0) ** SHININESS
    lighting = AMBIENT * occlusion.clamp(0.0, 1.0) + DIFFUSE * diffuse
    return albedo * lighting + specular * highlight * (diffuse > 0)


def _normal(kind: ObjectKind, g, x: Tensor, y: Tensor, z: Tensor) -> Vec3:
    """Unit SDF gradient from four tetrahedral finite differences."""
    h = NORMAL_STEP
    nx = torch.zeros_like(x)
    ny = torch.zeros_like(x)
    nz = torch.zeros_like(x)
    for sx, sy, sz in ((1, -1, -1), (-1, -1, 1), (-1, 1, -1), (1, 1, 1)):
        value = kind.distance(x + sx * h, y + sy * h, z + sz * h, g)
        nx, ny, nz = nx + sx * value, ny + sy * value, nz + sz * value
    norm = torch.sqrt(nx * nx + ny * ny + nz * nz).clamp(min=1e-12)
    return nx / norm, ny / norm, nz / norm
