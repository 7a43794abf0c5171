"""EG3D's midpoint-rule volume rendering (its ``MipRayMarcher2``).

Interval i spans depths d_i..d_{i+1}; colour, density and depth are averaged at its midpoint,
sigma = softplus(raw - 1), alpha = 1 - exp(-sigma * delta), transmittance is the exclusive cumulative
product of (1 - alpha + 1e-10), and the weights w = alpha * T composite colour and depth.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class MarchResult(NamedTuple):
    features: Tensor  # [N, M, C], mapped to x * 2 - 1
    depth: Tensor  # [N, M, 1], expected depth of the visible surface
    weights: Tensor  # [N, M, S - 1, 1], per-interval compositing weights


def _check_samples(densities: Tensor, depths: Tensor) -> None:
    if depths.ndim != 4 or depths.shape[-1] != 1 or depths.shape[2] < 2:
        raise ValueError(f"depths: expected shape [N, M, S, 1] with S >= 2, got {list(depths.shape)}")
    if densities.shape != depths.shape:
        raise ValueError(f"densities: expected shape {list(depths.shape)}, got {list(densities.shape)}")


def compositing_weights(densities: Tensor, depths: Tensor, density_shift: float = -1.0) -> Tensor:
    """Per-interval weights alpha * transmittance: densities, depths [N, M, S, 1] -> [N, M, S-1, 1].

    ``density_shift`` is added to the raw midpoint density before the softplus (EG3D: -1).
    """
    _check_samples(densities, depths)
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    sigma = F.softplus((densities[:, :, :-1] + densities[:, :, 1:]) / 2 + density_shift)
    alpha = 1 - torch.exp(-(sigma * deltas))
    survive = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
    return alpha * torch.cumprod(survive, -2)[:, :, :-1]


def sample_weights(interval_weights: Tensor) -> Tensor:
    """Per-sample weights [N, M, S, 1] from per-interval weights [N, M, S-1, 1].

    The midpoint rule composites an interval's weight against the mean of its two end samples, so
    each interval gives half its weight to each end; compositing ``sum_j v_j x_j`` over samples then
    equals EG3D's ``sum_i w_i (x_i + x_{i+1}) / 2`` and needs no midpoint tensors.
    """
    half = interval_weights / 2
    zero = torch.zeros_like(half[:, :, :1])
    return torch.cat([half, zero], -2) + torch.cat([zero, half], -2)


def composite(values: Tensor, weights: Tensor) -> Tensor:
    """sum_s weights[..., s, 0] * values[..., s, :]: [N, M, S, C], [N, M, S, 1] -> [N, M, C].

    In the inputs' dtype also under autocast (compositing is part of the float32 volume rendering).
    """
    with torch.autocast(values.device.type, enabled=False):
        return torch.matmul(weights.transpose(-1, -2), values).squeeze(-2)


def finish_march(
    features: Tensor,
    depth: Tensor,
    weight_total: Tensor,
    depth_range: tuple[float, float],
    white_background: bool = False,
) -> tuple[Tensor, Tensor]:
    """EG3D's last steps on composited features [N, M, C] and weighted depth sums [N, M, 1].

    The depth is normalised by the total weight (rays with zero weight get +inf) and clamped to
    ``depth_range``; ``white_background`` adds (1 - total weight); features are mapped x * 2 - 1.
    """
    depth = torch.nan_to_num(depth / weight_total, float("inf"))
    depth = torch.clamp(depth, depth_range[0], depth_range[1])
    if white_background:
        features = features + 1 - weight_total
    return features * 2 - 1, depth


def march_rays(
    colors: Tensor,
    densities: Tensor,
    depths: Tensor,
    *,
    white_background: bool = False,
    depth_range: tuple[float, float] | None = None,
    density_shift: float = -1.0,
) -> MarchResult:
    """Composite samples colors [N, M, S, C], raw densities [N, M, S, 1], sorted depths [N, M, S, 1].

    The depth is clamped to ``depth_range`` (default: the min/max of ``depths``, EG3D's behaviour,
    which makes the result depend on the other rays in the batch; the renderer passes its fixed ray
    range instead). Features are mapped x * 2 - 1 (see ``finish_march``).
    """
    _check_samples(densities, depths)
    if colors.ndim != 4 or colors.shape[:3] != depths.shape[:3]:
        raise ValueError(f"colors: expected shape {list(depths.shape[:3])} + [C], got {list(colors.shape)}")
    weights = compositing_weights(densities, depths, density_shift)
    per_sample = sample_weights(weights)
    if depth_range is None:
        depth_range = (float(depths.min()), float(depths.max()))
    features, depth = finish_march(
        composite(colors, per_sample),
        composite(depths, per_sample),
        weights.sum(2),
        depth_range,
        white_background,
    )
    return MarchResult(features, depth, weights)
