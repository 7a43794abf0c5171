"""Depth samples along rays: stratified (coarse) and importance (fine), as in EG3D.

With ``perturb=False`` both are deterministic: no stratified jitter, and the importance samples use
u = linspace(0, 1, K) (NeRF's ``det=True``) instead of U(0, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def check_ray_range(ray_start: float, ray_end: float) -> None:
    """ValueError unless 0 <= ray_start < ray_end < inf."""
    if not (0 <= ray_start < ray_end < float("inf")):
        raise ValueError(
            f"ray_start, ray_end: expected 0 <= ray_start < ray_end < inf, got {ray_start}, {ray_end}"
        )


def stratified_depths(
    batch_size: int,
    num_rays: int,
    ray_start: float,
    ray_end: float,
    num_samples: int,
    *,
    perturb: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Depths linspace(start, end, S), each jittered by U[0, 1) * (end - start) / (S - 1) when perturbing.

    Returns [N, M, S, 1]. As in EG3D the jitter is added to every sample, so the last one may pass
    ``ray_end`` by up to one spacing.
    """
    check_ray_range(ray_start, ray_end)
    if num_samples < 2:
        raise ValueError(f"num_samples: expected at least 2 stratified samples, got {num_samples}")
    depths = torch.linspace(ray_start, ray_end, num_samples, device=device).view(1, 1, num_samples, 1)
    depths = depths.expand(batch_size, num_rays, num_samples, 1)
    if not perturb:
        return depths
    spacing = (ray_end - ray_start) / (num_samples - 1)
    jitter = torch.rand(depths.shape, generator=generator, device=depths.device)
    return depths + jitter * spacing


def sample_pdf(
    bins: Tensor,
    weights: Tensor,
    num_samples: int,
    *,
    deterministic: bool,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Inverse-CDF samples of the piecewise-constant density ``weights`` over ``bins``.

    bins [R, B + 1] (sorted edges), weights [R, B] (non-negative) -> samples [R, K].
    """
    if bins.ndim != 2 or weights.ndim != 2 or bins.shape != (weights.shape[0], weights.shape[1] + 1):
        raise ValueError(
            f"bins, weights: expected shapes [R, B + 1] and [R, B], "
            f"got {list(bins.shape)}, {list(weights.shape)}"
        )
    num_rays, num_bins = weights.shape
    weights = weights + eps
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)  # [R, B + 1]
    if deterministic:
        u = torch.linspace(0, 1, num_samples, device=bins.device, dtype=cdf.dtype).expand(num_rays, -1)
    else:
        u = torch.rand(num_rays, num_samples, generator=generator, device=bins.device, dtype=cdf.dtype)
    u = u.contiguous()
    upper = torch.searchsorted(cdf, u, right=True)
    below = (upper - 1).clamp_min(0)
    above = upper.clamp_max(num_bins)
    corners = torch.stack([below, above], -1).view(num_rays, 2 * num_samples)
    cdf_corners = torch.gather(cdf, 1, corners).view(num_rays, num_samples, 2)
    bin_corners = torch.gather(bins, 1, corners).view(num_rays, num_samples, 2)
    denom = cdf_corners[..., 1] - cdf_corners[..., 0]
    # A bin with ~zero mass is never chosen, so any denominator works there.
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    t = (u - cdf_corners[..., 0]) / denom
    return bin_corners[..., 0] + t * (bin_corners[..., 1] - bin_corners[..., 0])


def importance_sample(
    depths: Tensor,
    weights: Tensor,
    num_samples: int,
    *,
    perturb: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EG3D's fine depths from coarse depths [N, M, S, 1] and their marcher weights [N, M, S-1, 1].

    The weights are smoothed (max-pool k2 s1 p1, then avg-pool k2 s1, + 0.01) and sampled over the
    coarse-depth midpoints. Like EG3D, the interior weights ``[1:-1]`` are paired with the first
    S - 2 midpoints (the last midpoint interval is never drawn). Returns detached [N, M, K, 1].
    """
    if depths.ndim != 4 or depths.shape[-1] != 1:
        raise ValueError(f"depths: expected shape [N, M, S, 1], got {list(depths.shape)}")
    n, m, s, _ = depths.shape
    if s < 4:
        raise ValueError(f"depths: importance sampling needs at least 4 coarse samples per ray, got {s}")
    if weights.shape != (n, m, s - 1, 1):
        raise ValueError(f"weights: expected shape {[n, m, s - 1, 1]}, got {list(weights.shape)}")
    with torch.no_grad():
        flat_depths = depths.reshape(n * m, s)
        rows = weights.reshape(n * m, 1, s - 1).to(torch.get_default_dtype())
        smoothed = F.max_pool1d(rows, 2, 1, padding=1)
        smoothed = F.avg_pool1d(smoothed, 2, 1).squeeze(1) + 0.01  # [R, S - 1]
        midpoints = 0.5 * (flat_depths[:, :-1] + flat_depths[:, 1:])
        fine = sample_pdf(
            midpoints[:, :-1], smoothed[:, 1:-1], num_samples, deterministic=not perturb, generator=generator
        )
    return fine.view(n, m, num_samples, 1)


def jitter_within_cells(depths: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """EpiGRAF's stratified jitter: each sample drawn uniformly in its cell, between the midpoints to
    its neighbours (the first and last cells end at the first and last sample). depths [..., S, 1]
    (sorted along S, any sign) -> [..., S, 1]."""
    if depths.ndim < 2 or depths.shape[-1] != 1 or depths.shape[-2] < 2:
        raise ValueError(f"depths: expected shape [..., S, 1] with S >= 2, got {list(depths.shape)}")
    mids = 0.5 * (depths[..., 1:, :] + depths[..., :-1, :])
    upper = torch.cat([mids, depths[..., -1:, :]], -2)
    lower = torch.cat([depths[..., :1, :], mids], -2)
    noise = torch.rand(depths.shape, generator=generator, device=depths.device, dtype=depths.dtype)
    return lower + (upper - lower) * noise


def importance_sample_cells(
    depths: Tensor,
    weights: Tensor,
    num_samples: int,
    *,
    perturb: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EpiGRAF's fine depths from coarse depths [N, M, S, 1] and their per-sample weights [N, M, S, 1].

    Unlike EG3D's ``importance_sample`` the weights are not smoothed: the interior weights + 1e-5
    are sampled over the S - 1 coarse-depth midpoints (every midpoint interval can be drawn).
    Returns detached [N, M, K, 1].
    """
    if depths.ndim != 4 or depths.shape[-1] != 1 or depths.shape[2] < 3:
        raise ValueError(f"depths: expected shape [N, M, S, 1] with S >= 3, got {list(depths.shape)}")
    n, m, s, _ = depths.shape
    if weights.shape != depths.shape:
        raise ValueError(f"weights: expected shape {list(depths.shape)}, got {list(weights.shape)}")
    with torch.no_grad():
        flat_depths = depths.reshape(n * m, s)
        midpoints = 0.5 * (flat_depths[:, :-1] + flat_depths[:, 1:])
        interior = weights.reshape(n * m, s)[:, 1:-1] + 1e-5
        fine = sample_pdf(midpoints, interior, num_samples, deterministic=not perturb, generator=generator)
    return fine.view(n, m, num_samples, 1)
