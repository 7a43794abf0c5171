"""EpiGRAF's volume integration (its ``fancy_integration``) and NeRF++ background points.

Unlike EG3D's midpoint marcher (``marcher``), every sample carries its own colour and density:
delta_i = d_{i+1} - d_i with a last delta of 1e10 (the last sample absorbs what is left: an opaque
far wall) or 1e-3 when a background model fills the rest; sigma = softplus(raw + noise + shift);
alpha = 1 - exp(-delta * sigma); T = exclusive cumprod(1 - alpha + 1e-10); w = alpha * T. Colours
and depth are sum(w x) with no normalisation, so depth is pulled towards 0 where the foreground is
transparent, exactly as EpiGRAF reports it. The background of the Megascans models is a second
field on the unit sphere's outside, sampled at inverse distances 1 -> 0 (NeRF++, Zhang et al. 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# EpiGRAF's last-interval lengths: opaque far wall without a background model, a sliver with one.
LAST_DELTA_OPAQUE = 1e10
LAST_DELTA_WITH_BACKGROUND = 1e-3


def integration_weights(
    densities: Tensor,
    depths: Tensor,
    last_delta: float = LAST_DELTA_OPAQUE,
    noise_std: float = 0.0,
    density_shift: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-sample weights [N, M, S, 1] and the transmittance in front of the last sample [N, M, 1].

    densities: raw sigma [N, M, S, 1]; depths [N, M, S, 1] sorted along S. ``noise_std`` adds
    N(0, noise_std^2) to the raw densities (EpiGRAF's density noise, annealed 1 -> 0 in training).
    """
    if depths.ndim != 4 or depths.shape[-1] != 1 or depths.shape[2] < 1:
        raise ValueError(f"depths: expected shape [N, M, S, 1], got {list(depths.shape)}")
    if densities.shape != depths.shape:
        raise ValueError(f"densities: expected shape {list(depths.shape)}, got {list(densities.shape)}")
    deltas = torch.cat(
        [depths[:, :, 1:] - depths[:, :, :-1], torch.full_like(depths[:, :, :1], last_delta)], 2
    )
    if noise_std > 0:
        noise = torch.randn(
            densities.shape, generator=generator, device=densities.device, dtype=densities.dtype
        )
        densities = densities + noise_std * noise
    if density_shift != 0:
        densities = densities + density_shift
    alpha = 1 - torch.exp(-deltas * F.softplus(densities))
    survive = torch.cumprod(1 - alpha + 1e-10, 2)
    transmittance = torch.cat([torch.ones_like(survive[:, :, :1]), survive[:, :, :-1]], 2)
    return alpha * transmittance, transmittance[:, :, -1]


def sphere_background_points(origins: Tensor, directions: Tensor, inverse_depths: Tensor) -> Tensor:
    """NeRF++ points of the outside of the unit sphere: [N, M, K, 4] as (unit direction, 1/r).

    origins [N, M, 3] (inside the unit sphere), directions [N, M, 3], inverse distances from the
    world origin [N, M, K] in [0, 1]. A ray leaves the sphere at p; the point at distance r = 1/q
    along it is found by rotating p about (o x p) by asin(|m|) - asin(|m| q), m the ray point
    closest to the origin; it is returned as its direction from the origin and q.
    """
    k = inverse_depths.shape[-1]
    d = F.normalize(directions, dim=-1)[:, :, None].expand(-1, -1, k, -1)
    o = origins[:, :, None].expand(-1, -1, k, -1)
    d1 = -(d * o).sum(-1) / (d * d).sum(-1)
    closest = o + d1[..., None] * d
    closest_norm = closest.norm(dim=-1)
    d2 = torch.sqrt(1 - closest_norm * closest_norm) / d.norm(dim=-1)
    on_sphere = o + (d1 + d2)[..., None] * d
    axis = F.normalize(torch.cross(o, on_sphere, dim=-1), dim=-1, eps=0.0)
    angle = (torch.asin(closest_norm) - torch.asin(closest_norm * inverse_depths))[..., None]
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotated = (
        on_sphere * cos
        + torch.cross(axis, on_sphere, dim=-1) * sin
        + axis * (axis * on_sphere).sum(-1, keepdim=True) * (1 - cos)
    )
    return torch.cat([F.normalize(rotated, dim=-1, eps=0.0), inverse_depths[..., None]], -1)
