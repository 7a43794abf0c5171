"""Stratified and importance depth sampling, and the midpoint-rule ray marcher."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from mimic3d.render import compositing_weights, importance_sample, march_rays, sample_pdf, stratified_depths


def test_stratified_without_perturb_is_linspace() -> None:
    depths = stratified_depths(2, 3, 2.25, 3.3, 48, perturb=False)
    assert depths.shape == (2, 3, 48, 1)
    assert torch.equal(depths[1, 2, :, 0], torch.linspace(2.25, 3.3, 48))


def test_stratified_jitter_stays_within_one_spacing_and_follows_the_generator() -> None:
    base = torch.linspace(1.0, 2.0, 11).view(1, 1, 11, 1)
    first = stratified_depths(4, 50, 1.0, 2.0, 11, generator=torch.Generator().manual_seed(7))
    again = stratified_depths(4, 50, 1.0, 2.0, 11, generator=torch.Generator().manual_seed(7))
    other = stratified_depths(4, 50, 1.0, 2.0, 11, generator=torch.Generator().manual_seed(8))
    offset = first - base
    assert offset.min() >= 0 and offset.max() < 0.1 and offset.std() > 0.02
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_sample_pdf_inverts_the_cdf() -> None:
    # Uniform mass over uneven bins: deterministic samples are equally spaced in probability.
    bins = torch.tensor([[0.0, 1.0, 3.0]])
    samples = sample_pdf(bins, torch.tensor([[1.0, 1.0]]), 5, deterministic=True)
    torch.testing.assert_close(samples, torch.tensor([[0.0, 0.5, 1.0, 2.0, 3.0]]))
    # Mass 3:1 over two bins: 3/4 of uniform draws land in the first.
    draws = sample_pdf(
        bins.expand(1000, 3),
        torch.tensor([[3.0, 1.0]]).expand(1000, 2),
        4,
        deterministic=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert abs((draws < 1).float().mean().item() - 0.75) < 0.03


def test_importance_samples_concentrate_at_a_peak_and_are_deterministic_without_perturb() -> None:
    depths = torch.linspace(2.0, 3.0, 32).view(1, 1, 32, 1).expand(1, 2, 32, 1)
    weights = torch.zeros(1, 2, 31, 1)
    weights[0, 0, 10] = 1.0  # interval [d10, d11] = [2.32, 2.35]
    weights[0, 1, 20] = 1.0
    fine = importance_sample(depths, weights, 64, perturb=False)
    assert fine.shape == (1, 2, 64, 1) and not fine.requires_grad
    assert torch.equal(fine, importance_sample(depths, weights, 64, perturb=False))
    spacing = 1 / 31
    near_first = ((fine[0, 0] - (2.0 + 10.5 * spacing)).abs() < 1.5 * spacing).float().mean()
    near_second = ((fine[0, 1] - (2.0 + 20.5 * spacing)).abs() < 1.5 * spacing).float().mean()
    assert near_first > 0.6 and near_second > 0.6
    assert torch.all(fine[..., 1:, 0] >= fine[..., :-1, 0])  # linspace u gives sorted samples


def eg3d_style_march(colors, densities, depths):
    """Slow reference with EG3D's midpoint tensors."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    sigma = F.softplus((densities[:, :, :-1] + densities[:, :, 1:]) / 2 - 1)
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-sigma * deltas)
    shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
    weights = alpha * torch.cumprod(shifted, -2)[:, :, :-1]
    total = weights.sum(2)
    depth = torch.clamp(
        torch.nan_to_num((weights * depths_mid).sum(2) / total, float("inf")), depths.min(), depths.max()
    )
    return (weights * colors_mid).sum(2) * 2 - 1, depth, weights


def test_march_rays_equals_midpoint_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    depths = torch.sort(torch.rand(2, 5, 20, 1, generator=gen) * 2 + 1, dim=2).values
    colors, densities = torch.rand(2, 5, 20, 6, generator=gen), torch.randn(2, 5, 20, 1, generator=gen) * 3
    result = march_rays(colors, densities, depths)
    expected = eg3d_style_march(colors, densities, depths)
    # Both sum and multiply along the ray's 20 samples (transmittance product, then composite).
    for ours, theirs in zip(result, expected):
        assert_close(ours, theirs, terms=20, depth=2)


def test_constant_medium_has_beer_lambert_opacity() -> None:
    raw, length = 1.7, 0.8
    depths = torch.linspace(1.0, 1.0 + length, 33).view(1, 1, 33, 1)
    colors = torch.tensor([0.2, 0.4, 0.6]).expand(1, 1, 33, 3)
    result = march_rays(colors, torch.full((1, 1, 33, 1), raw), depths, white_background=True)
    opacity = 1 - math.exp(-math.log1p(math.exp(raw - 1)) * length)
    # 32 intervals, a product of transmittances then a sum, against the closed form in float64.
    assert_close(result.weights.sum(), torch.tensor(opacity), terms=32, depth=2)
    expected = (torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64) * opacity + (1 - opacity)) * 2 - 1
    assert_close(result.features[0, 0], expected, terms=32, depth=2)


def test_empty_ray_depth_clamps_to_far_end() -> None:
    depths = torch.linspace(2.0, 3.0, 8).view(1, 1, 8, 1)
    result = march_rays(
        torch.zeros(1, 1, 8, 3), torch.full((1, 1, 8, 1), -1e4), depths, depth_range=(2.0, 3.0)
    )
    assert result.depth.item() == 3.0 and result.features.eq(-1).all()


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="ray_start"):
        stratified_depths(1, 1, 3.0, 2.0, 8)
    with pytest.raises(ValueError, match="num_samples"):
        stratified_depths(1, 1, 1.0, 2.0, 1)
    with pytest.raises(ValueError, match="at least 4"):
        importance_sample(torch.zeros(1, 1, 3, 1), torch.zeros(1, 1, 2, 1), 4)
    with pytest.raises(ValueError, match="weights"):
        importance_sample(torch.zeros(1, 1, 8, 1), torch.zeros(1, 1, 8, 1), 4)
    with pytest.raises(ValueError, match="bins"):
        sample_pdf(torch.zeros(2, 4), torch.ones(2, 4), 3, deterministic=True)
    with pytest.raises(ValueError, match="densities"):
        compositing_weights(torch.zeros(1, 1, 7, 1), torch.zeros(1, 1, 8, 1))
    with pytest.raises(ValueError, match="colors"):
        march_rays(torch.zeros(1, 2, 8, 3), torch.zeros(1, 1, 8, 1), torch.zeros(1, 1, 8, 1))
