"""Tri-plane projection conventions and the gather-based sampler against F.grid_sample."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from mimic3d.render import TriplaneSampler, gather_bilinear, project_onto_planes, sample_triplane

# A bilinear sample is 4 taps, but its weights come from a texel coordinate x * R / 2 + (R - 1) / 2
# rounded at magnitude R (up to 16 texels here), so the error is R eps times the planes' slope (~2x
# their scale): as many terms as 2 R, plus the taps and the mean over 3 planes.
TEXEL_TERMS = 2 * 16 + 4 * 3


def grid_sample_reference(planes: torch.Tensor, points: torch.Tensor, box_warp: float, convention: str):
    """Slow reference: EG3D's sample_from_planes (grid_sample, align_corners=False, zero padding)."""
    n, _, c, h, w = planes.shape
    coords = project_onto_planes(points * (2 / box_warp), convention)  # [N, 3, P, 2]
    out = F.grid_sample(
        planes.reshape(n * 3, c, h, w),
        coords.reshape(n * 3, 1, -1, 2),
        align_corners=False,
        padding_mode="zeros",
    )
    return out.permute(0, 3, 2, 1).reshape(n, 3, -1, c)


def test_projection_conventions_put_known_point_where_expected() -> None:
    point = torch.tensor([[[0.1, 0.2, 0.3]]])
    eg3d = project_onto_planes(point, "eg3d")[0, :, 0]
    xyz = project_onto_planes(point, "xyz")[0, :, 0]
    torch.testing.assert_close(eg3d, torch.tensor([[0.1, 0.2], [0.1, 0.3], [0.3, 0.1]]))
    torch.testing.assert_close(xyz, torch.tensor([[0.1, 0.2], [0.2, 0.3], [0.3, 0.1]]))


@pytest.mark.parametrize("convention", ["eg3d", "xyz"])
def test_feature_planted_on_a_texel_is_found_by_the_right_points(convention: str) -> None:
    # A one-hot feature at texel (row 5, col 2) of plane 1 of an 8x8 tri-plane. Texel centres sit at
    # (index + 0.5) / 8 * 2 - 1 in grid units; box_warp 2 makes world units equal grid units.
    planes = torch.zeros(1, 3, 1, 8, 8)
    planes[0, 1, 0, 5, 2] = 1.0
    col, row = (2 + 0.5) / 8 * 2 - 1, (5 + 0.5) / 8 * 2 - 1
    # Plane 1 is (x, z) in EG3D's convention and (y, z) in Mimic3D's: width axis <- col, height <- row.
    point = [col, 0.9, row] if convention == "eg3d" else [0.9, col, row]
    features = sample_triplane(planes, torch.tensor([[point]]), box_warp=2.0, convention=convention)
    assert_close(features[0, 1, 0, 0], torch.tensor(1.0), terms=TEXEL_TERMS)  # weight 1 up to rounding
    assert features[0, 0, 0, 0].item() == 0 and features[0, 2, 0, 0].item() == 0


@pytest.mark.parametrize("convention", ["eg3d", "xyz"])
@pytest.mark.parametrize("box_warp", [1.0, 1.6])
def test_sampler_equals_grid_sample(convention: str, box_warp: float) -> None:
    gen = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 5, 12, 12, generator=gen)
    # Points reach past the box on every side so that zero padding and the clamps are exercised.
    points = (torch.rand(2, 300, 3, generator=gen) * 2 - 1) * box_warp * 0.7
    reference = grid_sample_reference(planes, points, box_warp, convention)
    sampler = TriplaneSampler(planes, box_warp, convention)
    # grid_sample's scalar tail loop rounds the unnormalisation differently from its vector loop,
    # so agreement is to float32 rounding of the texel coordinate, not bitwise.
    assert_close(sampler.plane_features(points), reference, terms=TEXEL_TERMS)
    assert_close(sampler.mean_features(points), reference.mean(1), terms=TEXEL_TERMS)
    far = torch.full((2, 4, 3), 5.0 * box_warp)
    assert sampler.mean_features(far).abs().max().item() == 0
    # A NaN coordinate gives NaN features (EG3D's plane mean is NaN too); +-inf is simply outside.
    odd = torch.tensor([[[0.1, float("nan"), 0.2], [0.1, float("inf"), -0.2]]]).expand(2, 2, 3)
    features = sampler.mean_features(odd)
    assert grid_sample_reference(planes, odd[:, :1], box_warp, convention).mean(1).isnan().all()
    assert features[:, 0].isnan().all() and features[:, 1].isfinite().all()


def test_list_of_triplanes_sums_their_features() -> None:
    gen = torch.Generator().manual_seed(1)
    coarse, residual = torch.randn(1, 3, 4, 8, 8, generator=gen), torch.randn(1, 3, 4, 16, 16, generator=gen)
    points = torch.rand(1, 50, 3, generator=gen) - 0.5
    both = TriplaneSampler([coarse, residual], 1.0, "xyz")
    expected = grid_sample_reference(coarse, points, 1.0, "xyz") + grid_sample_reference(
        residual, points, 1.0, "xyz"
    )
    assert_close(both.plane_features(points), expected, terms=TEXEL_TERMS)
    assert_close(both.mean_features(points), expected.mean(1), terms=TEXEL_TERMS)


def test_gradients_match_grid_sample() -> None:
    gen = torch.Generator().manual_seed(2)
    planes = torch.randn(1, 3, 3, 10, 10, generator=gen, requires_grad=True)
    points = ((torch.rand(1, 80, 3, generator=gen) - 0.5) * 1.2).requires_grad_(True)
    upstream = torch.randn(1, 80, 3, generator=gen)
    (TriplaneSampler(planes, 1.0).mean_features(points) * upstream).sum().backward()
    ours = planes.grad.clone(), points.grad.clone()
    planes.grad = points.grad = None
    (grid_sample_reference(planes, points, 1.0, "eg3d").mean(1) * upstream).sum().backward()
    # Plane gradients sum the contributions of the 80 points; point gradients are texel differences
    # times the resolution (10), which scales the rounding of the texel coordinate as well.
    assert_close(ours[0], planes.grad, terms=80)
    assert_close(ours[1], points.grad, terms=TEXEL_TERMS * 10)


def test_gather_bilinear_numerical_gradient() -> None:
    gen = torch.Generator().manual_seed(3)
    rows = torch.randn(7, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 7, (5, 4), generator=gen)
    weight = torch.rand(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r, w: gather_bilinear(r, index, w), (rows, weight))


def test_sampler_numerical_gradient_in_planes_and_points() -> None:
    gen = torch.Generator().manual_seed(4)
    planes = torch.randn(1, 3, 2, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    # Keep points off texel centres' kinks: the bilinear lookup is only piecewise smooth.
    points = (
        torch.tensor([[[0.13, -0.27, 0.31], [-0.41, 0.07, -0.19]]], dtype=torch.float64)
    ).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p, x: TriplaneSampler(p, 1.0, "xyz").mean_features(x), (planes, points), fast_mode=True
    )


@pytest.mark.parametrize(
    ("planes", "points", "message"),
    [
        (torch.zeros(1, 2, 4, 8, 8), torch.zeros(1, 5, 3), "planes"),
        (torch.zeros(1, 3, 4, 8, 6), torch.zeros(1, 5, 3), "square"),
        (torch.zeros(1, 3, 4, 8, 8), torch.zeros(1, 5, 2), "points"),
        (torch.zeros(1, 3, 4, 8, 8), torch.zeros(2, 5, 3), "batch size"),
        ([torch.zeros(1, 3, 4, 8, 8), torch.zeros(1, 3, 5, 16, 16)], torch.zeros(1, 5, 3), "planes\\[1\\]"),
    ],
)
def test_bad_inputs_raise_value_error(planes, points, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_triplane(planes, points, box_warp=1.0)


def test_bad_convention_and_box_warp_raise_value_error() -> None:
    with pytest.raises(ValueError, match="convention"):
        project_onto_planes(torch.zeros(1, 2, 3), "yzx")
    with pytest.raises(ValueError, match="box_warp"):
        TriplaneSampler(torch.zeros(1, 3, 2, 4, 4), box_warp=0.0)
