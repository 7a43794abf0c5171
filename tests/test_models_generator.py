"""TriplaneGenerator: shapes, parameter counts, branches, patches, density, truncation, gradients."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from numerics import assert_close, fan_in_sum

from mimic3d.camera import intrinsics_matrix, make_label, orbit_cam2world
from mimic3d.models import (
    GeneratorConfig,
    TriplaneGenerator,
    Triplanes,
    generator_preset,
    generator_preset_names,
)
from mimic3d.training.presets import load_config, preset_names

VARIANTS = ["tiny-eg3d", "tiny-mimic3d-stage1", "tiny-mimic3d"]


def _cameras(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    yaw = math.pi / 2 + 0.4 * (torch.rand(n, generator=gen) - 0.5)
    pitch = math.pi / 2 + 0.2 * (torch.rand(n, generator=gen) - 0.5)
    return make_label(orbit_cam2world(yaw, pitch, 2.7), intrinsics_matrix(4.2647).expand(n, 3, 3))


def _generator(name: str, seed: int = 0, **overrides) -> TriplaneGenerator:
    torch.manual_seed(seed)
    G = TriplaneGenerator(generator_preset(name, **overrides)).eval()
    with torch.no_grad():
        # Move the zero-initialised noise strengths and biases off zero so every path matters.
        for name_, p in G.named_parameters():
            if name_.endswith(("noise_strength", "bias")) and "affine" not in name_:
                p.copy_(torch.randn_like(p) * 0.1)
    return G


def _render_terms(G: TriplaneGenerator) -> int:
    """Reduction length behind a rendered pixel: the decoder's FCs, 4 bilinear taps on each of the
    3 planes of both tri-planes, and the compositing sum over a ray's samples."""
    rendering = G.config.rendering
    return fan_in_sum(G.decoder) + 24 + rendering.num_coarse + rendering.num_importance


@pytest.fixture(scope="module")
def generators() -> dict[str, TriplaneGenerator]:
    return {name: _generator(name) for name in VARIANTS}


@pytest.mark.parametrize("name", VARIANTS)
def test_output_shapes_of_both_branches(generators, name):
    G = generators[name]
    cfg = G.config
    z, c = torch.randn(2, cfg.z_dim), _cameras(2)
    with torch.no_grad():
        out2d = G(z, c, branch="2d", perturb=False)
        out3d = G(z, c, branch="3d", perturb=False)
        out3d_low = G(z, c, branch="3d", perturb=False, neural_rendering_resolution=8)
    r, nrr = cfg.img_resolution, cfg.neural_rendering_resolution
    assert out2d["image"].shape == (2, 3, r, r)
    assert out2d["image_raw"].shape == (2, 3, nrr, nrr)
    assert out2d["image_depth"].shape == (2, 1, nrr, nrr)
    assert out2d["feature_image"].shape == (2, cfg.decoder_output_dim, nrr, nrr)
    assert out3d["image"].shape == (2, 3, r, r) and out3d["image_depth"].shape == (2, 1, r, r)
    assert out3d_low["image"].shape == (2, 3, 8, 8)
    for out in (out2d, out3d):
        assert torch.isfinite(out["image"]).all()
    # The volume render's RGB lies in the decoder's sigmoid range mapped to [-1, 1].
    assert out3d["image"].abs().max() <= 1.002 + 1e-6
    depth = out3d["image_depth"]
    assert (depth >= cfg.rendering.ray_start).all() and (depth <= cfg.rendering.ray_end).all()


def test_parameter_counts_match_official_ffhq512():
    eg3d = TriplaneGenerator(generator_preset("eg3d-ffhq512"))
    assert sum(p.numel() for p in eg3d.parameters()) == 30_662_136
    mimic3d = TriplaneGenerator(generator_preset("mimic3d-ffhq512-stage2"))
    assert sum(p.numel() for p in mimic3d.parameters()) == 34_508_618
    # Official module tree: 3D-aware blocks at every backbone resolution, S^3D inside the last one.
    names = {name for name, _ in mimic3d.named_modules()}
    assert {f"backbone.synthesis.b3d{r}.block" for r in (4, 8, 16, 32, 64, 128, 256)} <= names
    assert {"backbone.synthesis.b3d256.block2", "backbone.synthesis.b3d256.block3"} <= names
    assert "backbone.synthesis.b3d128.block2" not in names


def test_planes_shapes_and_residual_only_for_stage2(generators):
    ws = generators["tiny-mimic3d"].mapping(torch.randn(2, 16), _cameras(2))
    with torch.no_grad():
        planes = generators["tiny-mimic3d"].planes(ws)
    cfg = generators["tiny-mimic3d"].config
    r, ch = cfg.triplane_resolution, cfg.plane_channels
    assert planes.coarse.shape == (2, 3, ch, r, r)
    assert planes.residual.shape == (2, 3, ch, 2 * r, 2 * r)
    stage1 = generators["tiny-mimic3d-stage1"]
    assert stage1.planes(stage1.mapping(torch.randn(1, 16), _cameras(1))).residual is None
    with pytest.raises(ValueError, match="residual"):
        stage1.planes(ws[:1], residual=True)


def test_2d_branch_never_runs_the_3d_super_resolution(generators):
    G = generators["tiny-mimic3d"]
    synthesis = G.backbone.synthesis
    last = getattr(synthesis, f"b3d{G.config.triplane_resolution}")
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in (last.block2, last.block3)]
    z, c = torch.randn(2, 16), _cameras(2)
    with torch.no_grad():
        G(z, c, branch="2d", perturb=False)
        assert calls == []
        G(z, c, branch="3d", perturb=False, neural_rendering_resolution=4)
    for hook in hooks:
        hook.remove()
    assert len(calls) == 2


@pytest.mark.parametrize("name", ["tiny-eg3d", "tiny-mimic3d"])
def test_chunked_and_unchunked_renders_are_identical(generators, name):
    G = generators[name]
    z, c = torch.randn(2, 16), _cameras(2, seed=1)
    ws = G.mapping(z, c)
    original = G.renderer
    outputs = []
    try:
        with torch.no_grad():
            planes = G.planes(ws)
            for chunk in (100, 100_000):
                G.renderer = original.with_options(chunk_rays=chunk)
                outputs.append(G.synthesis(ws, c, branch="3d", perturb=False, planes=planes))
    finally:
        G.renderer = original
    # Other chunk sizes are other matrix shapes for the decoder, so other kernel blockings: rounding.
    for key in ("image", "image_depth"):
        assert_close(outputs[0][key], outputs[1][key], terms=_render_terms(G))


def test_cached_planes_give_the_same_images(generators):
    G = generators["tiny-mimic3d"]
    z, c = torch.randn(2, 16), _cameras(2)
    ws = G.mapping(z, c)
    with torch.no_grad():
        planes = G.planes(ws)
        for branch in ("2d", "3d"):
            direct = G.synthesis(ws, c, branch=branch, perturb=False)
            cached = G.synthesis(ws, c, branch=branch, perturb=False, planes=planes)
            # The same kernels on the same inputs in one process: equal by construction.
            torch.testing.assert_close(direct["image"], cached["image"], rtol=0, atol=0)


def test_render_patch_equals_crop_of_full_3d_render(generators):
    G = generators["tiny-mimic3d"]
    z, c = torch.randn(2, 16), _cameras(2, seed=2)
    ws = G.mapping(z, c)
    top, left, size = torch.tensor([3, 17]), torch.tensor([9, 0]), 12
    with torch.no_grad():
        full = G.synthesis(ws, c, branch="3d", perturb=False)
        patch = G.render_patch(ws, c, top, left, size, perturb=False)
    # Fewer rays are other matrix shapes for the decoder, so other kernel blockings: rounding.
    for i in range(2):
        window = (slice(top[i], top[i] + size), slice(left[i], left[i] + size))
        for key in ("image", "image_depth"):
            assert_close(patch[key][i], full[key][i][:, window[0], window[1]], terms=_render_terms(G))


def _density_brute_force(G: TriplaneGenerator, planes: Triplanes, points: torch.Tensor) -> torch.Tensor:
    """grid_sample each plane with Mimic3D's (x,y), (y,z), (z,x) projection, sum P^c and P^r, mean, decode."""
    coords = points * (2 / G.config.rendering.box_warp)
    projected = torch.stack([coords[..., [0, 1]], coords[..., [1, 2]], coords[..., [2, 0]]], dim=1)
    features = 0
    for p in (planes.coarse, planes.residual):
        n, _, ch, h, w = p.shape
        grid = projected.reshape(n * 3, 1, -1, 2)
        sampled = F.grid_sample(p.reshape(n * 3, ch, h, w), grid, mode="bilinear", align_corners=False)
        features = features + sampled.reshape(n, 3, ch, -1)
    features = features.mean(1).permute(0, 2, 1)
    return G.decoder(features)[1]


def test_sample_density_is_the_summed_field_the_renderer_decodes(generators):
    G = generators["tiny-mimic3d"]
    ws = G.mapping(torch.randn(2, 16), _cameras(2))
    points = torch.rand(2, 300, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    with torch.no_grad():
        planes = G.planes(ws)
        sigma = G.sample_density(points, ws)
        expected = _density_brute_force(G, planes, points)
        coarse_only = G.renderer.sample_density(planes.coarse, G.decoder, points)
    assert sigma.shape == (2, 300, 1)
    assert_close(sigma, expected, terms=_render_terms(G))  # grid_sample vs our sampler, then the same MLP
    assert (sigma - coarse_only).abs().max() > 1e-3  # the residual tri-plane is part of the field


def test_truncation_psi_zero_gives_w_avg_driven_outputs(generators):
    G = generators["tiny-eg3d"]
    with torch.no_grad():
        G.backbone.mapping.w_avg.copy_(torch.randn(G.w_dim))
        c = _cameras(1).expand(3, -1)
        ws = G.mapping(torch.randn(3, 16), c, truncation_psi=0.0)
        images = G(torch.randn(3, 16), c, truncation_psi=0.0, perturb=False)["image"]
        cut = G.mapping(torch.randn(3, 16), c, truncation_psi=0.0, truncation_cutoff=2)
    # lerp(w_avg, w, 0) is w_avg exactly; the images of one batch may round differently per sample.
    torch.testing.assert_close(ws, G.backbone.mapping.w_avg.expand_as(ws), rtol=0, atol=0)
    assert_close(images[1:], images[:1].expand(2, -1, -1, -1), terms=fan_in_sum(G))
    assert torch.equal(cut[:, :2], G.backbone.mapping.w_avg.expand(3, 2, -1))
    assert not torch.allclose(cut[:, 2:], G.backbone.mapping.w_avg.expand(3, G.num_ws - 2, -1))


def test_pose_conditioning_scale_and_zeroing():
    z, c = torch.randn(2, 16), _cameras(2)
    scaled = _generator("tiny-eg3d", c_scale=0.5)
    # Scaling c then mapping is what G.mapping does, op for op: equal by construction.
    torch.testing.assert_close(scaled.mapping(z, c), scaled.backbone.mapping(z, c * 0.5), rtol=0, atol=0)
    zeroed = _generator("tiny-eg3d", c_gen_conditioning_zero=True)
    torch.testing.assert_close(zeroed.mapping(z, c), zeroed.backbone.mapping(z, torch.zeros_like(c)))


def test_fused_and_per_sample_modulation_agree(generators):
    G = generators["tiny-mimic3d"]
    ws = G.mapping(torch.randn(2, 16), _cameras(2))
    with torch.no_grad():
        fused = G.planes(ws, fused_modconv=True)
        unfused = G.planes(ws, fused_modconv=False)
    # One grouped convolution vs per-sample scaled weights: the same sums in another order.
    synthesis = fan_in_sum(G.backbone.synthesis)
    assert_close(fused.coarse, unfused.coarse, terms=synthesis)
    assert_close(fused.residual, unfused.residual, terms=synthesis)


def test_gradients_reach_every_parameter():
    G = _generator("tiny-mimic3d").train()
    z, c = torch.randn(2, 16), _cameras(2)
    ws = G.mapping(z, c)
    out2d = G.synthesis(ws, c, branch="2d", noise_mode="random")
    patch = G.render_patch(ws, c, 4, 4, 8, noise_mode="random")
    loss = out2d["image"].square().mean() + out2d["image_raw"].mean() + patch["image"].square().mean()
    loss.backward()
    # The super-resolution's noise is off (EG3D's sr_noise_mode "none"), so its strengths get no gradient.
    noiseless = {n for n, _ in G.named_parameters() if n.startswith("superresolution") and "noise" in n}
    without = [n for n, p in G.named_parameters() if p.grad is None or not (p.grad.abs().max() > 0)]
    assert sorted(without) == sorted(noiseless)
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)


def test_bad_inputs_are_named(generators):
    G = generators["tiny-eg3d"]
    z, c = torch.randn(2, 16), _cameras(2)
    with pytest.raises(ValueError, match="branch"):
        G(z, c, branch="4d")
    with pytest.raises(ValueError, match="c: expected"):
        G(z, c[:, :16])
    with pytest.raises(ValueError, match="batch size"):
        G(z, _cameras(3))
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, c, noise_mode="loud")
    with pytest.raises(ValueError, match="config"):
        TriplaneGenerator({"z_dim": 16})


def test_inputs_are_checked_and_cast_at_the_api_boundary(generators):
    G = generators["tiny-eg3d"]
    z, c = torch.randn(2, 16), _cameras(2)
    reference = G(z, c, perturb=False)["image"]
    # Float64 inputs are cast to the model's dtype: the same float32 numbers, bit for bit.
    assert torch.equal(G(z.double(), c.double(), perturb=False)["image"], reference)
    with pytest.raises(ValueError, match=r"z: expected latents \[N, 16\], got \[16\]"):
        G(z[0], c[:1])
    with pytest.raises(ValueError, match="c: expected a floating-point tensor"):
        G(z, c.long())
    bad = c.clone()
    bad[1, 5] = float("nan")
    with pytest.raises(ValueError, match="c: camera labels hold NaN"):
        G(z, bad)
    with pytest.raises(ValueError, match="c: camera labels hold NaN"):
        G.synthesis(G.mapping(z, c), bad)
    # Resolution 0 is refused, not read as "the default".
    for branch in ("2d", "3d"):
        with pytest.raises(ValueError, match="neural_rendering_resolution"):
            G(z, c, branch=branch, neural_rendering_resolution=0)


def test_generator_presets_share_the_training_presets_names():
    # One naming scheme: every training preset names the generator its runs start with (but the
    # distillation presets: a student's generator comes from its teacher checkpoint).
    names = [name for name in preset_names() if "distill" not in name]
    for name in names:
        assert generator_preset(name) == load_config(name, ["run.init_from=x"])[0].generator, name
    tiny = {"tiny-eg3d", "tiny-mimic3d-stage1", "tiny-mimic3d", "tiny-epigraf", "tiny-epigraf-bg"}
    assert set(generator_preset_names()) == {*names, *tiny}
    with pytest.raises(ValueError, match="unknown name 'tiny-distill-heads'"):
        generator_preset("tiny-distill-heads")
    stage2 = generator_preset("mimic3d-ffhq512-stage2")
    assert stage2.aware3d and stage2.sr3d and not generator_preset("mimic3d-ffhq512-stage1").sr3d


@pytest.mark.parametrize("name", generator_preset_names())
def test_presets_round_trip_through_json_and_yaml(name):
    config = generator_preset(name)
    assert GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert GeneratorConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


@pytest.mark.parametrize(
    "change, field",
    [
        ({"sr3d": True, "aware3d": False}, "sr3d"),
        ({"aware3d": True}, "rendering.convention"),
        ({"img_resolution": 100}, "img_resolution"),
        ({"superresolution": "hybrid3x"}, "superresolution"),
        ({"triplane_channels": 95}, "triplane_channels"),
        ({"aware3d_min_resolution": 512}, "aware3d_min_resolution"),
    ],
)
def test_inconsistent_configs_name_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        generator_preset("eg3d-ffhq512", **change)


def test_from_dict_names_unknown_and_mistyped_fields():
    data = generator_preset("tiny-mimic3d").to_dict()
    with pytest.raises(ValueError, match="unknown field.*'colour'"):
        GeneratorConfig.from_dict({**data, "colour": 1})
    with pytest.raises(ValueError, match="rendering.ray_start"):
        GeneratorConfig.from_dict({**data, "rendering": {**data["rendering"], "ray_start": "near"}})
    with pytest.raises(ValueError, match="z_dim"):
        GeneratorConfig.from_dict({**data, "z_dim": 1.5})
    with pytest.raises(ValueError, match="preset"):
        generator_preset("eg3d-ffhq1024")
