"""EPI images: straight strips for a consistent analytic scene, broken ones for a view-dependent one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numerics import assert_close, fan_in_sum

from mimic3d.camera import intrinsics_matrix, look_at, make_label
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.render import RenderConfig, TriplaneRenderer
from mimic3d.tools.epi import (
    epi_picture,
    model_row_renderer,
    render_field_row,
    row_index,
    seed_epis,
    shear_residual,
    spatio_temporal_texture,
)
from mimic3d.tools.rendering import render_branch

RESOLUTION, FRAMES, FOCAL, DISTANCE, HALF_SLAB = 64, 24, 1.0, 2.0, 0.02
SWEEP = 0.4  # the camera slides from x = -0.2 to x = +0.2


def _sliding_cameras() -> torch.Tensor:
    """Cameras translating along +x at z = DISTANCE, all looking straight down -z."""
    x = torch.linspace(-SWEEP / 2, SWEEP / 2, FRAMES)
    origins = torch.stack([x, torch.zeros(FRAMES), torch.full((FRAMES,), DISTANCE)], -1)
    targets = origins * torch.tensor([1.0, 1.0, 0.0])
    return make_label(look_at(origins, targets), intrinsics_matrix(FOCAL))


def _texture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack(
        [
            0.5 + 0.4 * torch.sin(2 * math.pi * 3 * x + 1.3 * y),
            0.5 + 0.4 * torch.cos(2 * math.pi * 2 * x),
            0.5 + 0.3 * torch.sin(2 * math.pi * 5 * x),
        ],
        -1,
    )


def _slab(shift: float = 0.0):
    """A thin opaque slab at z = 0 painted with a texture of (x + shift, y)."""

    def field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, z = points.unbind(-1)
        sigma = torch.where(z.abs() < HALF_SLAB, 200.0, -50.0)[..., None]
        return _texture(x + shift, y), sigma

    return field


@pytest.fixture(scope="module")
def renderer() -> TriplaneRenderer:
    return TriplaneRenderer(
        RenderConfig(ray_start=1.5, ray_end=2.5, num_coarse=32, num_importance=32, perturb=False)
    )


def _expected_disparity() -> float:
    """Pixels per frame by which the slab's front face moves left as the camera slides right."""
    step = SWEEP / (FRAMES - 1)
    return -FOCAL * step * RESOLUTION / (DISTANCE - HALF_SLAB)


def test_consistent_scene_has_straight_strips(renderer):
    row = RESOLUTION // 2
    epi = spatio_temporal_texture(
        lambda c: render_field_row(_slab(), renderer, c, RESOLUTION, row), _sliding_cameras()
    )
    assert epi.shape == (FRAMES, RESOLUTION, 3)
    disparity = _expected_disparity()
    straight = shear_residual(epi, disparity)
    assert straight < 0.05
    # The residual singles out the true slope: 10% off already leaves clearly tilted strips.
    assert shear_residual(epi, 0.9 * disparity) > 4 * straight
    assert shear_residual(epi, 1.1 * disparity) > 4 * straight
    assert shear_residual(epi, 0.0) > 0.5


def test_view_dependent_scene_has_a_large_residual(renderer):
    def repainted_per_view(c: torch.Tensor) -> torch.Tensor:
        # The texture follows the camera a little, as a 2D upsampler's hallucinated detail does.
        return render_field_row(_slab(shift=1.5 * float(c[0, 3])), renderer, c, RESOLUTION, RESOLUTION // 2)

    epi = spatio_temporal_texture(repainted_per_view, _sliding_cameras())
    assert shear_residual(epi, _expected_disparity()) > 0.5


def test_shear_residual_is_zero_for_exactly_shifted_rows():
    texture = np.random.default_rng(0).normal(size=(80, 3))
    epi = np.stack([texture[2 * k : 2 * k + 40] for k in range(10)])  # content moves 2 px left per frame
    assert shear_residual(epi, -2.0) == pytest.approx(0.0, abs=1e-12)
    assert shear_residual(epi, 2.0) > 0.5
    with pytest.raises(ValueError, match="disparity"):
        shear_residual(epi, 10.0)


def test_row_renderers_equal_rows_of_full_renders():
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("tiny-mimic3d")).eval()
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim), torch.zeros(1, 25))
        planes = G.planes(ws)
    c = make_label(look_at(torch.tensor([0.3, 0.2, 2.7])), intrinsics_matrix(4.2647))[None]
    for branch in ("2d", "3d"):
        full, _ = render_branch(G, ws, c, branch, planes)
        row = model_row_renderer(G, ws, planes, branch, row=0.25)(c)
        # One row of rays is another batch shape for every kernel: rounding of the whole generator.
        assert_close(row, full[0, :, 8].T, terms=fan_in_sum(G) + G.config.rendering.num_coarse * 2)
    labels = torch.cat([c, c])
    epis = seed_epis(G, ws, labels, ("2d", "3d"), row=0.25)
    assert set(epis) == {"2d", "3d"} and epis["3d"].shape == (2, 32, 3)
    assert epi_picture(list(epis.values())).shape == (2, 32 + 4 + 32, 3)


def test_row_index_accepts_fractions_and_pixels():
    assert row_index(0.5, 64) == 32 and row_index(1.0, 64) == 63 and row_index(10, 64) == 10
    for bad in (1.5, -0.1, 64, True):
        with pytest.raises(ValueError, match="row"):
            row_index(bad, 64)
