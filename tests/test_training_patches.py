"""Patch placement for patch-wise training: EpiGRAF's scale distributions and aligned real/fake patches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from mimic3d.camera import PRESETS, sample_labels
from mimic3d.losses import linear_schedule
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.render import scaled_patch_uv
from mimic3d.training.patches import (
    PixelWindows,
    ScaledPatches,
    crop_windows,
    sample_scaled_patches,
    scale_schedule,
)

R, r = 512, 64
S_MIN = r / R
N = 20000
# Kolmogorov-Smirnov: sup |F_n - F| exceeds 1.95 / sqrt(n) with probability 1e-3 under the null.
KS_CRITICAL = 1.95 / math.sqrt(N)


def _draw(distribution: str, kimg: float, count: int = N, group: int = 1, **kwargs) -> ScaledPatches:
    schedule = scale_schedule(distribution, kimg, S_MIN, 1.0, 10000.0, **kwargs)
    return sample_scaled_patches(schedule, count, r, group, "cpu")


def _ks_statistic(samples: np.ndarray, cdf, upper: float) -> float:
    """sup |F_n(x) - F(x)| over the sample points below ``upper``.

    A sup over a subset of thresholds is at most the full statistic, so the usual critical value
    stays valid. Beta(1, b) with b ~ 0.001 puts most of its mass within 1e-16 of 1, where float
    sampling rounds every draw to the largest float below 1: comparing there would test rounding.
    """
    x = np.sort(samples)
    n = len(x)
    keep = x < upper
    ecdf_hi = np.arange(1, n + 1) / n
    ecdf_lo = np.arange(0, n) / n
    f = cdf(x[keep])
    return float(max(np.abs(ecdf_hi[keep] - f).max(), np.abs(ecdf_lo[keep] - f).max()))


@pytest.mark.parametrize("kimg", [0.0, 1000.0, 5000.0, 10000.0, 20000.0])
def test_beta_scales_follow_beta_of_the_annealed_parameter(kimg):
    torch.manual_seed(int(kimg) + 1)
    b = linear_schedule(kimg, 0.001, 0.8, 10000.0)
    assert b == pytest.approx(0.001 + 0.799 * min(kimg / 10000.0, 1.0), rel=1e-12)
    patches = _draw("beta", kimg)
    s = patches.scale.double().numpy()
    assert S_MIN <= s.min() and s.max() <= 1.0
    x = (s - S_MIN) / (1.0 - S_MIN)
    statistic = _ks_statistic(x, stats.beta(1.0, b).cdf, upper=1 - 1e-5)
    assert statistic < KS_CRITICAL, (kimg, b, statistic)
    # The mass near 1 (where the KS comparison stops) has the right size too.
    tail = float((x >= 1 - 1e-5).mean())
    assert abs(tail - stats.beta(1.0, b).sf(1 - 1e-5)) < KS_CRITICAL
    # A wrong parameter is caught: Beta(1, 0.8) is far from Beta(1, b) early in the schedule.
    if kimg <= 5000:
        assert _ks_statistic(x, stats.beta(1.0, 0.8 if kimg < 5000 else 0.2).cdf, 1 - 1e-5) > 3 * KS_CRITICAL


def test_beta_with_other_alpha_and_offsets_uniform_in_the_free_range():
    torch.manual_seed(3)
    patches = _draw("beta", 4000.0, alpha=2.0)
    s = patches.scale.double().numpy()
    b = linear_schedule(4000.0, 0.001, 0.8, 10000.0)
    x = (s - S_MIN) / (1 - S_MIN)
    assert _ks_statistic(x, stats.beta(2.0, b).cdf, 1 - 1e-5) < KS_CRITICAL
    offset = patches.offset.double().numpy()
    assert (offset >= 0).all() and (offset <= 1 - s[:, None] + 1e-7).all()
    free = s < 1 - 1e-3  # offset / (1 - s) is U(0, 1); whole-image patches have no room to move
    assert free.sum() > N / 2
    u = offset[free] / (1 - s[free, None])
    critical = 1.95 / math.sqrt(free.sum())
    for axis in range(2):
        assert _ks_statistic(u[:, axis], stats.uniform().cdf, 1.0) < critical
    # x and y offsets are independent draws (correlation within 5 standard errors of 0).
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 5 / math.sqrt(free.sum())


@pytest.mark.parametrize("kimg", [0.0, 2500.0, 7500.0, 12000.0])
def test_uniform_scales_have_an_annealed_lower_bound(kimg):
    torch.manual_seed(5)
    floor = 1.0 + (S_MIN - 1.0) * min(kimg / 10000.0, 1.0)
    s = _draw("uniform", kimg).scale.double().numpy()
    if floor == 1.0:
        assert np.all(s == 1.0)
        return
    assert floor - 1e-7 <= s.min() and s.max() <= 1.0
    assert _ks_statistic(s, stats.uniform(floor, 1.0 - floor).cdf, 1.0) < KS_CRITICAL


def test_discrete_scales_choose_uniformly_among_the_values_above_the_bound():
    torch.manual_seed(7)
    support = (0.125, 0.25, 0.5, 1.0)
    early = _draw("discrete", 4000.0, support=support).scale.numpy()  # bound 1 - 0.875 * 0.4 = 0.65
    assert set(np.unique(early)) == {1.0}
    late = _draw("discrete", 10000.0, support=support).scale.numpy()
    values, counts = np.unique(late, return_counts=True)
    assert values.tolist() == list(support)
    assert stats.chisquare(counts).pvalue > 1e-3
    with pytest.raises(ValueError, match="patches.discrete_support"):
        _draw("discrete", 0.0, support=(0.25, 0.5))


def test_groups_share_one_draw_and_passes_draw_independently():
    torch.manual_seed(0)
    first = _draw("beta", 10000.0, count=12, group=4)
    second = _draw("beta", 10000.0, count=12, group=4)
    for patches in (first, second):
        for g in range(3):
            block = slice(4 * g, 4 * g + 4)
            assert torch.equal(patches.scale[block], patches.scale[4 * g].expand(4))
            assert torch.equal(patches.offset[block], patches.offset[4 * g].expand(4, 2))
        assert len(set(patches.scale.tolist())) == 3
    assert not torch.equal(first.offset, second.offset)
    small = _draw("beta", 10000.0, count=2, group=4)  # a chunk smaller than the group is one group
    assert torch.equal(small.scale[0], small.scale[1])
    with pytest.raises(ValueError, match="run.batch_gpu"):
        _draw("beta", 0.0, count=6, group=4)


@pytest.mark.parametrize("grid", ["centres", "corners"])
def test_crop_samples_exactly_the_patch_points_of_any_scale_and_offset(grid):
    """A linear image a u + b v + c (u, v: pixel centres on the grid) is reproduced exactly by
    bilinear sampling, so the crop must equal the same function at ``scaled_patch_uv``'s points."""
    torch.manual_seed(0)
    size, patch_size = 48, 8
    index = torch.arange(size, dtype=torch.float64)
    centres = (index + 0.5) / size if grid == "centres" else index / (size - 1)
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    coefficients = torch.tensor([[0.7, -1.3, 0.2], [-0.4, 0.9, -0.1], [1.1, 0.3, 0.5]], dtype=torch.float64)
    image = torch.stack([a * u + b * v + c for a, b, c in coefficients]).float()[None].expand(5, -1, -1, -1)
    scale = patch_size / size + torch.rand(5) * (1 - patch_size / size)
    offset = torch.rand(5, 2) * (1 - scale[:, None])
    crop = ScaledPatches(scale, offset, patch_size, grid).crop(image)
    uv = scaled_patch_uv(patch_size, scale.double(), offset.double(), grid)  # [5, 64, 2]
    expected = torch.einsum("kj,nmj->nkm", coefficients[:, :2], uv) + coefficients[:, 2, None]
    # Bilinear weights and grid coordinates are float32: a few eps of O(1) values.
    torch.testing.assert_close(crop.reshape(5, 3, -1).double(), expected, rtol=0, atol=2e-6)


def test_pixel_windows_are_scaled_patches_at_pixel_aligned_parameters():
    torch.manual_seed(0)
    images = torch.randn(3, 3, 32, 32)
    top, left = torch.tensor([0, 5, 24]), torch.tensor([24, 0, 9])
    windows = PixelWindows(top, left, 8, 32)
    torch.testing.assert_close(windows.scale, torch.full([3], 0.25))
    torch.testing.assert_close(windows.offset, torch.stack([left, top], 1) / 32.0)
    exact = crop_windows(images, top, left, 8)
    assert torch.equal(windows.crop(images), exact)
    # Scaled patches at the windows' parameters sample the same pixel centres: same values up to
    # float32 rounding of the grid (weights of 1 and 0 within a few eps).
    resampled = ScaledPatches(windows.scale, windows.offset, 8).crop(images)
    torch.testing.assert_close(resampled, exact, rtol=0, atol=1e-5)


@pytest.fixture(scope="module", params=["centres", "corners"])
def scene(request):
    """A fixed smooth scene on each pixel grid: a tiny generator's field, deterministic rendering
    (EG3D's decoder and pixel centres; EpiGRAF's decoder, integration and corner grid)."""
    torch.manual_seed(0)
    if request.param == "centres":
        config = generator_preset("tiny-eg3d", superresolution="none", decoder_output_dim=3)
    else:
        config = generator_preset("tiny-epigraf")
    assert config.rendering.pixel_grid == request.param
    G = TriplaneGenerator(config).eval().requires_grad_(False)
    G.renderer = G._renderer(perturb=False)
    c = sample_labels(PRESETS["ffhq"], 2, generator=torch.Generator().manual_seed(1))
    ws = G.mapping(torch.randn(2, G.z_dim), c)
    return G, ws, G.planes(ws), c


def _aligned_cases(grid: str, size: int, patch: int) -> list[tuple[float, int]]:
    """(scale, k): patches whose points fall on every k-th pixel centre. On pixel centres the
    patch's j-th point is k (j + 1/2) / R + offset, a centre for odd k; on corners it is
    s j / (r - 1) + offset, a corner point j k / (R - 1) for s = k (r - 1) / (R - 1)."""
    if grid == "centres":
        return [(k * patch / size, k) for k in (1, 3)]
    return [(k * (patch - 1) / (size - 1), k) for k in (1, 3)]


def test_patch_rays_hit_exactly_the_pixels_of_the_real_crop(scene):
    """Render the full image and patches of it. Where a patch's points fall on pixel centres, the
    rendered patch must equal both the real-image crop of the full render and those pixels (a
    misplaced grid moves every point)."""
    G, ws, planes, c = scene
    grid = G.config.rendering.pixel_grid
    size, patch = 32, 8
    full, _ = G.render(planes, c, size, channels=3)  # [2, 3, 32, 32]
    pitch = 1 / size if grid == "centres" else 1 / (size - 1)  # offset of one pixel
    for scale, k in _aligned_cases(grid, size, patch):
        for ox, oy in [(0, 0), (size - 1 - k * (patch - 1) - 1, 3), (5, 2)]:
            offset = torch.tensor([[ox, oy], [oy, ox]]) * pitch
            where = ScaledPatches(torch.full([2], scale), offset, patch, grid)
            rendered = G.render_scaled_patch(ws, c, where.scale, where.offset, patch, planes=planes)["image"]
            # Rays from the same camera through points equal up to float32 rounding (~1e-7 in uv);
            # the smooth field moves by far less than 1e-5 for that, by ~1e-3 for a half-pixel shift.
            torch.testing.assert_close(rendered, where.crop(full), rtol=0, atol=1e-5)
            steps = k * torch.arange(patch) + ((k - 1) // 2 if grid == "centres" else 0)
            for i, (x0, y0) in enumerate([(ox, oy), (oy, ox)]):
                pixels = full[i][:, y0 + steps][:, :, x0 + steps]
                torch.testing.assert_close(rendered[i], pixels, rtol=0, atol=1e-5)
    # Misaligned by half a pixel, the same comparison fails by orders of magnitude.
    scale = _aligned_cases(grid, size, patch)[0][0]
    where = ScaledPatches(torch.full([2], scale), torch.full([2, 2], 0.5 * pitch), patch, grid)
    rendered = G.render_scaled_patch(ws, c, where.scale, where.offset, patch, planes=planes)["image"]
    assert (rendered - full[:, :, :patch, :patch]).abs().max() > 1e-3
