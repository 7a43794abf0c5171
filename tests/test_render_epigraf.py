"""EpiGRAF's renderer options: plane frame, alignment, corner pixel grid, integration, background."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mimic3d.camera import intrinsics_matrix, look_at
from mimic3d.render import RenderConfig, TriplaneRenderer, generate_rays, sample_triplane, scaled_patch_uv
from mimic3d.render.decoder import TriplaneDecoder
from mimic3d.render.epigraf_march import integration_weights, sphere_background_points
from mimic3d.render.samplers import importance_sample_cells, jitter_within_cells
from mimic3d.render.triplane import plane_axis_names, to_plane_frame

EPS = torch.finfo(torch.float32).eps


def test_epigraf_frame_is_a_rotation_about_y_onto_its_subject_facing_x() -> None:
    # Our frontal camera axis +z is EpiGRAF's +x (its frontal camera sits at +x); +y stays up.
    points = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    framed = to_plane_frame(points, "epigraf")
    assert torch.equal(framed, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]))
    assert to_plane_frame(points, "eg3d") is points
    assert plane_axis_names("epigraf") == [("z", "y"), ("z", "-x"), ("y", "-x")]
    assert plane_axis_names("eg3d") == [("x", "y"), ("x", "z"), ("z", "x")]


def _grid_sample_epigraf(planes: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Slow reference: EpiGRAF's tri_plane_renderer lookup written with grid_sample (align_corners=True)
    on (x, y), (x, z), (y, z) of its frame."""
    n, _, c, h, w = planes.shape
    e = to_plane_frame(points, "epigraf") / (box_warp / 2)
    coords = torch.stack([e[..., [0, 1]], e[..., [0, 2]], e[..., [1, 2]]], 1)
    out = F.grid_sample(planes.reshape(n * 3, c, h, w), coords.reshape(n * 3, 1, -1, 2), align_corners=True)
    return out.view(n, 3, c, -1).permute(0, 1, 3, 2)


def test_aligned_corner_lookup_in_the_epigraf_frame_equals_grid_sample() -> None:
    gen = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 4, 9, 9, generator=gen)
    box_warp = 0.4
    points = (torch.rand(2, 300, 3, generator=gen) * 2 - 1) * box_warp * 0.6  # some beyond the box
    ours = sample_triplane(planes, points, box_warp, "epigraf", align_corners=True)
    reference = _grid_sample_epigraf(planes, points, box_warp)
    # Texel coordinates up to 8 with float32 rounding of the unnormalisation: ~8 * 4 eps per texel.
    torch.testing.assert_close(ours, reference, rtol=0, atol=64 * EPS * planes.abs().max())
    # A texel centre is hit exactly: with aligned corners texel (i, j) sits at j / 8 * 2 - 1.
    one_hot = torch.zeros(1, 3, 1, 9, 9)
    one_hot[0, 2, 0, 6, 3] = 1.0  # plane (y, -x): width y, height -x
    y, minus_x = 3 / 8 * 2 - 1, 6 / 8 * 2 - 1
    point = torch.tensor([[[-minus_x, y, 0.55]]])  # z lies outside plane 2's axes
    value = sample_triplane(one_hot, point, 2.0, "epigraf", align_corners=True)[0, 2, 0, 0]
    assert value.item() == pytest.approx(1.0, abs=1e-6)


def test_corner_pixel_grid_puts_outer_pixels_on_the_field_of_view_edges() -> None:
    fov = math.radians(30.0)
    focal = 1 / (2 * math.tan(fov / 2))
    cam2world = look_at(torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(1, 3))
    _, dirs = generate_rays(cam2world, intrinsics_matrix(focal)[None], 5, grid="corners")
    dirs = dirs.view(5, 5, 3)
    forward = torch.tensor([0.0, 0.0, -1.0])
    # Top-left pixel: half the fov off-axis along both image axes.
    corner = dirs[0, 0]
    assert math.atan2(-corner[0].item(), (corner @ forward).item()) == pytest.approx(fov / 2, abs=1e-6)
    assert math.atan2(corner[1].item(), (corner @ forward).item()) == pytest.approx(fov / 2, abs=1e-6)
    torch.testing.assert_close(dirs[2, 2], forward)
    # Patches on the same grid: scale 1, offset 0 is the full grid, bit for bit.
    full = scaled_patch_uv(5, torch.ones(1), torch.zeros(1, 2), grid="corners")
    assert full[0, 0].tolist() == [0.0, 0.0] and full[0, -1].tolist() == [1.0, 1.0]


def test_integration_weights_of_a_uniform_medium_and_the_opaque_last_sample() -> None:
    # Constant raw density r: sigma = softplus(r); with spacing h, alpha = 1 - exp(-h sigma) per sample.
    depths = torch.linspace(1.0, 2.0, 11, dtype=torch.float64).view(1, 1, 11, 1)
    raw = torch.full_like(depths, 0.3)
    weights, last_t = integration_weights(raw, depths)
    sigma = math.log1p(math.exp(0.3))
    alpha = 1 - math.exp(-0.1 * sigma)
    expected = [alpha * (1 - alpha + 1e-10) ** i for i in range(10)]
    torch.testing.assert_close(weights[0, 0, :10, 0], torch.tensor(expected, dtype=torch.float64))
    # The last interval is 1e10 long: the last sample takes everything that is left.
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-9)
    assert last_t.item() == pytest.approx((1 - alpha + 1e-10) ** 10)
    # With a background the last interval is a sliver and light passes through.
    weights_bg, _ = integration_weights(raw, depths, last_delta=1e-3)
    assert weights_bg.sum().item() == pytest.approx(1 - (1 - alpha) ** 10 * math.exp(-1e-3 * sigma), rel=1e-6)
    # A density shift moves the softplus input; noise changes it per sample.
    shifted, _ = integration_weights(raw - 1.0, depths)
    same, _ = integration_weights(raw, depths, density_shift=-1.0)
    assert torch.equal(shifted, same)
    noisy, _ = integration_weights(raw, depths, noise_std=1.0, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(noisy, weights)


def test_background_points_lie_on_the_ray_at_the_inverse_distance() -> None:
    gen = torch.Generator().manual_seed(1)
    # Origins within radius 0.5 keep every ray far from tangent to the sphere, where asin is ill-conditioned.
    radius = 0.5 * torch.rand(1, 20, 1, generator=gen)
    origins = (F.normalize(torch.randn(1, 20, 3, generator=gen), dim=-1) * radius).double()
    directions = F.normalize(torch.randn(1, 20, 3, generator=gen, dtype=torch.float64), dim=-1)
    inverse = torch.tensor([1.0, 0.7, 0.4, 0.1], dtype=torch.float64).expand(1, 20, 4)
    points = sphere_background_points(origins, directions, inverse)
    unit, q = points[..., :3], points[..., 3]
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(1, 20, 4, dtype=torch.float64))
    torch.testing.assert_close(q, inverse)
    world = unit / q[..., None]  # the point at distance 1/q from the origin
    # ... lies ahead on the ray: (world - o) is parallel to d with a positive length.
    offset = world - origins[:, :, None]
    along = (offset * directions[:, :, None]).sum(-1)
    torch.testing.assert_close(offset, along[..., None] * directions[:, :, None])
    assert bool((along > 0).all())


def test_cell_jitter_stays_in_cells_and_fine_samples_follow_the_weights() -> None:
    depths = torch.linspace(0.0, 1.0, 9).view(1, 1, 9, 1).expand(2, 3, 9, 1)
    jittered = jitter_within_cells(depths, torch.Generator().manual_seed(0))
    mids = torch.cat([depths[:, :, :1], (depths[:, :, 1:] + depths[:, :, :-1]) / 2, depths[:, :, -1:]], 2)
    assert bool((jittered >= mids[:, :, :-1]).all()) and bool((jittered <= mids[:, :, 1:]).all())
    weights = torch.zeros_like(depths)
    weights[:, :, 4] = 1.0  # all mass at the sample at 0.5: fine samples fill the cell around it
    fine = importance_sample_cells(depths, weights, 16, perturb=False)[..., 0]
    # u = linspace(0, 1): the ends land on the outer midpoints (every bin keeps 2e-5 of mass), the
    # other 14 samples inside the cell [0.4375, 0.5625] around the weighted sample.
    torch.testing.assert_close(fine[..., 0], torch.full((2, 3), 0.0625))
    torch.testing.assert_close(fine[..., -1], torch.full((2, 3), 0.9375))
    inner = fine[..., 1:-1]
    assert bool((inner > 0.4375).all()) and bool((inner < 0.5625).all())


def test_epigraf_decoder_rows_and_density() -> None:
    torch.manual_seed(0)
    decoder = TriplaneDecoder(8, 64, 3, kind="epigraf")
    features = torch.randn(5, 8)
    colour, sigma = decoder(features)
    net = decoder.net
    hidden = F.leaky_relu(features @ (net[0].weight * net[0].weight_gain).t() + net[0].bias, 0.2) * math.sqrt(
        2
    )
    raw = hidden @ (net[2].weight * net[2].weight_gain).t() + net[2].bias
    # Rows are [colour, sigma], both raw (no sigmoid).
    torch.testing.assert_close(torch.cat([colour, sigma], -1), raw)
    torch.testing.assert_close(decoder.density(features), sigma)
    with pytest.raises(ValueError, match="decoder"):
        TriplaneDecoder(8, 64, 3, kind="nerf")


def _sphere_field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    inside = points.norm(dim=-1, keepdim=True) < 0.3
    return points.abs(), torch.where(inside, 500.0, -20.0)


def test_epigraf_render_of_an_analytic_sphere_chunks_and_white_background() -> None:
    config = RenderConfig(
        ray_start=0.5,
        ray_end=1.5,
        num_coarse=24,
        num_importance=24,
        integration="epigraf",
        white_background=True,
        perturb=False,
        chunk_rays=7,
        pixel_grid="corners",
    )
    cam2world = look_at(torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(1, 3))
    origins, dirs = generate_rays(cam2world, intrinsics_matrix(0.8)[None], 9, grid="corners")
    chunked = TriplaneRenderer(config).render_field(_sphere_field, origins, dirs)
    whole = TriplaneRenderer(config.__class__(**{**config.__dict__, "chunk_rays": 1000})).render_field(
        _sphere_field, origins, dirs
    )
    torch.testing.assert_close(chunked.features, whole.features)
    depth = chunked.depth.view(9, 9)
    # The centre ray meets the sphere at distance 0.7 (sampled every 1/23 before the importance pass).
    assert depth[4, 4].item() == pytest.approx(0.7, abs=0.02)
    # Corner rays miss the sphere; EpiGRAF's last interval is 1e10 long, so even the empty field's
    # last sample (softplus(-20) = 2e-9) is an opaque far wall and hides the white background.
    far_wall = (origins[0, 0] + 1.5 * dirs[0, 0]).abs()
    torch.testing.assert_close(chunked.features[0, 0], far_wall, rtol=0, atol=1e-4)
    assert chunked.alpha[0, 0].item() == pytest.approx(1.0, abs=1e-6)
