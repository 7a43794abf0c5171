"""The chunked two-pass renderer on analytic scenes and on tri-planes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from numerics import assert_close, fan_in_sum
from torch.func import functional_call

from mimic3d.camera import intrinsics_matrix, look_at
from mimic3d.render import (
    RenderConfig,
    TriplaneDecoder,
    TriplaneRenderer,
    compositing_weights,
    generate_rays,
    importance_sample,
    stratified_depths,
)

SPHERE_RADIUS = 0.15
HARD = 1e4  # raw density inside the analytic solids: opaque within one fine interval


def sphere_field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Opaque sphere at the origin whose colour is the position mapped to [0, 1]."""
    inside = points.norm(dim=-1, keepdim=True) < SPHERE_RADIUS
    return (points + 0.5).clamp(0, 1), torch.where(inside, HARD, -30.0)


def box_field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Opaque cube of half-side 0.2 in constant colour (0.1, 0.6, 0.9)."""
    inside = (points.abs() < 0.2).all(-1, keepdim=True)
    colour = torch.tensor([0.1, 0.6, 0.9], dtype=points.dtype).expand(*points.shape[:-1], 3)
    return colour, torch.where(inside, HARD, -30.0)


def camera_rays(origin: tuple[float, float, float], resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    cam2world = look_at(torch.tensor([origin]))
    return generate_rays(cam2world, intrinsics_matrix(torch.tensor([4.2647])), resolution)


def sphere_hits(origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray-sphere intersection: (distance to the near hit [N, M], discriminant / r^2 [N, M])."""
    b = (origins * directions).sum(-1)
    disc = b * b - ((origins * origins).sum(-1) - SPHERE_RADIUS**2)
    return -b - disc.clamp_min(0).sqrt(), disc / SPHERE_RADIUS**2


def test_sphere_silhouette_depth_and_colour() -> None:
    config = RenderConfig(num_coarse=64, num_importance=64, perturb=False)
    origins, directions = camera_rays((0.3, 0.4, 2.6), 24)
    result = TriplaneRenderer(config).render_field(sphere_field, origins, directions)
    distance, disc = sphere_hits(origins, directions)
    inner, outer = disc > 0.3, disc < -0.3  # clear of the silhouette edge
    assert inner.sum() > 50 and outer.sum() > 200
    assert result.alpha[..., 0][inner].min() > 0.999 and result.alpha[..., 0][outer].max() < 1e-6
    ray_length = config.ray_end - config.ray_start
    assert (result.depth[..., 0] - distance)[inner].abs().max() < 1e-3 * ray_length
    surface_colour = (origins + distance[..., None] * directions + 0.5).clamp(0, 1) * 2 - 1
    assert (result.features - surface_colour)[inner].abs().max() < 0.01
    assert torch.all(result.features[outer] == -1)  # black background, mapped to -1
    assert torch.all(result.depth[outer] == config.ray_end)


def test_box_front_face_depth_and_white_background() -> None:
    config = RenderConfig(
        ray_start=2.0, ray_end=3.2, num_coarse=64, num_importance=64, perturb=False, white_background=True
    )
    origins, directions = camera_rays((0.0, 0.0, 2.7), 9)
    result = TriplaneRenderer(config).render_field(box_field, origins, directions)
    centre = 4 * 9 + 4
    assert result.depth[0, centre, 0].item() == pytest.approx(2.5, abs=1e-3 * 1.2)
    # The front face z = 0.2 is hit at 2.5 / cos(angle to the axis).
    cos_angle = -directions[0, :, 2]
    face = (directions[0, :, :2] * (2.5 / cos_angle)[:, None]).abs().max(-1).values < 0.18
    assert face.sum() >= 9
    torch.testing.assert_close(result.depth[0, face, 0], 2.5 / cos_angle[face], rtol=0, atol=1.2e-3)
    torch.testing.assert_close(
        result.features[0, face], torch.tensor([0.1, 0.6, 0.9]).expand(int(face.sum()), 3) * 2 - 1
    )
    assert torch.all(result.features[0, 0] == 1)  # corner ray misses the box: white


def test_importance_sampling_concentrates_at_the_surface() -> None:
    origins, directions = camera_rays((0.0, 0.0, 2.7), 1)  # the centre ray hits z = 0.15 at 2.55
    depths = stratified_depths(1, 1, 2.25, 3.3, 48, perturb=False)
    _, sigma = sphere_field(origins.unsqueeze(-2) + depths * directions.unsqueeze(-2))
    fine = importance_sample(depths, compositing_weights(sigma, depths), 48, perturb=False)
    spacing = 1.05 / 47
    assert ((fine - 2.55).abs() < 2 * spacing).float().mean() > 0.6
    assert ((depths - 2.55).abs() < 2 * spacing).float().mean() < 0.1


def render_terms(decoder: TriplaneDecoder, config: RenderConfig) -> int:
    """Reduction length behind a rendered value: 4 bilinear taps on 3 planes, the decoder's FCs
    and the compositing sum over a ray's samples."""
    return 12 + fan_in_sum(decoder) + config.num_coarse + config.num_importance


def random_scene(seed: int = 0, channels: int = 8) -> tuple[torch.Tensor, TriplaneDecoder]:
    gen = torch.Generator().manual_seed(seed)
    planes = torch.randn(2, 3, channels, 16, 16, generator=gen)
    torch.manual_seed(seed)
    decoder = TriplaneDecoder(n_features=channels, hidden_dim=16, output_dim=4)
    with torch.no_grad():
        decoder.net[2].bias[0] = 2.0  # dense enough that every ray has visible content
    return planes, decoder


@pytest.mark.parametrize("chunk_rays", [1, 7, 64])
def test_chunked_render_equals_unchunked(chunk_rays: int) -> None:
    planes, decoder = random_scene()
    origins, directions = camera_rays((0.4, -0.2, 2.6), 6)
    origins, directions = origins.expand(2, -1, -1), directions.expand(2, -1, -1)
    config = RenderConfig(num_coarse=12, num_importance=12, perturb=False)
    with torch.no_grad():
        whole = TriplaneRenderer(config)(planes, decoder, origins, directions)
        chunked = TriplaneRenderer(replace(config, chunk_rays=chunk_rays))(
            planes, decoder, origins, directions
        )
    # Every ray is computed independently, but other chunk sizes are other matrix shapes for the
    # decoder (other kernel blockings) and other SIMD tails for exp/softplus: rounding of the
    # bilinear taps, the decoder and the compositing sum.
    for a, b in zip(whole, chunked):
        assert_close(a, b, terms=render_terms(decoder, config))


def test_empty_rays_get_the_far_depth_whatever_the_chunking() -> None:
    # EG3D clamps depth to the min/max over all samples in the batch, so with jitter an empty ray's
    # depth would depend on which rays share its chunk; ours is always ray_end.
    origins, directions = camera_rays((0.0, 0.0, 2.7), 8)
    config = RenderConfig(num_coarse=16, num_importance=16)
    for chunk_rays in (1, 5, 64):
        result = TriplaneRenderer(replace(config, chunk_rays=chunk_rays)).render_field(
            sphere_field, origins, directions, torch.Generator().manual_seed(chunk_rays)
        )
        empty = result.alpha[..., 0] < 1e-6
        assert empty.sum() > 20 and torch.all(result.depth[..., 0][empty] == config.ray_end)


def test_perturb_switch_controls_randomness() -> None:
    planes, decoder = random_scene()
    origins, directions = camera_rays((0.0, 0.0, 2.7), 4)
    origins, directions = origins.expand(2, -1, -1), directions.expand(2, -1, -1)
    renderer = TriplaneRenderer(RenderConfig(num_coarse=8, num_importance=8))
    with torch.no_grad():
        fixed = [renderer.with_options(perturb=False)(planes, decoder, origins, directions) for _ in range(2)]
        seeded = [
            renderer(planes, decoder, origins, directions, torch.Generator().manual_seed(3)) for _ in range(2)
        ]
        other = renderer(planes, decoder, origins, directions, torch.Generator().manual_seed(4))
    assert torch.equal(fixed[0].features, fixed[1].features)
    assert torch.equal(seeded[0].features, seeded[1].features)
    assert not torch.equal(seeded[0].features, other.features)
    assert not torch.equal(seeded[0].features, fixed[0].features)


def test_gradients_reach_planes_and_every_decoder_parameter() -> None:
    planes, decoder = random_scene()
    planes.requires_grad_(True)
    origins, directions = camera_rays((0.2, 0.1, 2.7), 4)
    result = TriplaneRenderer(RenderConfig(num_coarse=8, num_importance=8))(
        [planes, planes * 0.5], decoder, origins.expand(2, -1, -1), directions.expand(2, -1, -1)
    )
    (result.features.square().sum() + result.depth.sum()).backward()
    assert planes.grad is not None and planes.grad.abs().sum() > 0
    for name, param in decoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_render_numerical_gradient() -> None:
    gen = torch.Generator().manual_seed(5)
    planes = torch.randn(1, 3, 3, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    decoder = TriplaneDecoder(n_features=3, hidden_dim=4, output_dim=2).double()
    names = [name for name, _ in decoder.named_parameters()]
    origins, directions = camera_rays((0.3, 0.2, 2.6), 2)
    origins, directions = origins.double(), directions.double()
    # Coarse pass only: importance-sampled depths are detached by design, which finite differences see.
    renderer = TriplaneRenderer(RenderConfig(num_coarse=6, num_importance=0, perturb=False))

    def render(planes: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def decode(features: torch.Tensor):
            return functional_call(decoder, dict(zip(names, params)), (features,))

        result = renderer(planes, decode, origins, directions)
        return result.features, result.depth

    params = [p.detach().clone().requires_grad_(True) for p in decoder.parameters()]
    assert torch.autograd.gradcheck(render, (planes, *params), fast_mode=True)


def test_sample_and_sample_density_agree_with_the_decoder() -> None:
    planes, decoder = random_scene()
    points = torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(6)) - 0.5
    renderer = TriplaneRenderer()
    with torch.no_grad():
        colour, sigma = renderer.sample(planes, decoder, points, chunk_points=16)
        density = renderer.sample_density(planes, decoder, points, chunk_points=30)
        field_colour, field_sigma = renderer.field(planes, decoder)(points)
    assert colour.shape == (2, 50, 4) and sigma.shape == density.shape == (2, 50, 1)
    terms = render_terms(decoder, renderer.config)  # other chunks: other matrix shapes
    assert_close(colour, field_colour, terms=terms)
    assert_close(sigma, field_sigma, terms=terms)
    assert_close(density, field_sigma, terms=terms)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ray_start": 3.0, "ray_end": 2.0}, "ray_start"),
        ({"ray_start": 2.0, "ray_end": 2.0}, "ray_start"),
        ({"num_coarse": 3}, "num_coarse"),
        ({"num_importance": -1}, "num_importance"),
        ({"box_warp": 0.0}, "box_warp"),
        ({"convention": "zyx"}, "convention"),
        ({"chunk_rays": 0}, "chunk_rays"),
    ],
)
def test_bad_config_raises_value_error(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenderConfig(**changes)


def test_eg3d_kwargs_conversion() -> None:
    config = RenderConfig.from_eg3d_kwargs(
        {
            "ray_start": 0.1,
            "ray_end": 2.6,
            "depth_resolution": 64,
            "depth_resolution_importance": 64,
            "box_warp": 1.6,
            "white_back": True,
            "clamp_mode": "softplus",
            "avg_camera_radius": 1.7,
        },
        perturb=False,
    )
    assert (config.num_coarse, config.white_background, config.box_warp, config.perturb) == (
        64,
        True,
        1.6,
        False,
    )
    with pytest.raises(ValueError, match="auto"):
        RenderConfig.from_eg3d_kwargs({"ray_start": "auto", "ray_end": "auto"})
    with pytest.raises(ValueError, match="unknown"):
        RenderConfig.from_eg3d_kwargs({}, chunk=3)


def test_bad_render_inputs_raise_value_error() -> None:
    planes, decoder = random_scene()
    origins, directions = camera_rays((0.0, 0.0, 2.7), 2)
    origins, directions = origins.expand(2, -1, -1), directions.expand(2, -1, -1)
    renderer = TriplaneRenderer()
    with pytest.raises(ValueError, match="origins"):
        renderer(planes, decoder, origins[..., :2], directions)
    with pytest.raises(ValueError, match="directions"):
        renderer(planes, decoder, origins, directions[:, :3])
    with pytest.raises(ValueError, match="channels"):
        renderer(planes[:, :, :4], decoder, origins, directions)
    with pytest.raises(ValueError, match="batch size"):
        renderer(planes[:1], decoder, origins, directions)


def test_automatic_chunk_size_depends_on_the_device() -> None:
    config = RenderConfig()
    assert config.chunk_rays is None
    assert config.rays_per_chunk(torch.device("cpu")) == 1024
    assert config.rays_per_chunk(torch.device("cuda")) == 65536
    assert replace(config, chunk_rays=7).rays_per_chunk(torch.device("cuda")) == 7
    with pytest.raises(ValueError, match="chunk_rays"):
        RenderConfig(chunk_rays=True)
