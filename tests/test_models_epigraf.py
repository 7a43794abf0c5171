"""The EpiGRAF generator configuration: presets, patches, density noise, class labels, background."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mimic3d.models import BackgroundConfig, TriplaneGenerator, generator_preset, generator_preset_names
from mimic3d.models.config import EPIGRAF_FACE_RENDERING, EPIGRAF_MEGASCANS_RENDERING, epigraf_architecture
from mimic3d.tools.viewpoints import camera_preset_for, view_labels

FULL_SIZE = {
    "epigraf-ffhq512": epigraf_architecture(512, EPIGRAF_FACE_RENDERING),
    "epigraf-ffhq256": epigraf_architecture(256, EPIGRAF_FACE_RENDERING),
    "epigraf-cats256": epigraf_architecture(256, EPIGRAF_FACE_RENDERING),
    "epigraf-megascans256": epigraf_architecture(
        256, EPIGRAF_MEGASCANS_RENDERING, background=BackgroundConfig()
    ),
}


@pytest.mark.parametrize(
    ("name", "params", "num_ws"),
    # universome/epigraf's Generator built with configs/model/epigraf.yaml (z_dim 512, FFHQ and Megascans
    # Food with bg_model.type=sphere): parameter counts and ws counted from the official modules.
    [
        ("epigraf-ffhq512", 28983507, 16),
        ("epigraf-ffhq256", 28983507, 16),
        ("epigraf-megascans256", 29311115, 20),
    ],
)
def test_full_size_generators_have_the_official_parameter_count(name: str, params: int, num_ws: int) -> None:
    # The training presets of these names (when present) must hold exactly these generators.
    if name in generator_preset_names():
        assert generator_preset(name) == FULL_SIZE[name]
    with torch.device("meta"):
        G = TriplaneGenerator(FULL_SIZE[name])
    assert sum(p.numel() for p in G.parameters()) == params
    assert G.num_ws == num_ws
    config = G.config
    assert (config.triplane_resolution, config.triplane_channels, config.superresolution) == (512, 96, "none")
    assert config.rendering.num_coarse == config.rendering.num_importance == 48


def _tiny(name: str = "tiny-epigraf", **overrides) -> tuple[TriplaneGenerator, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset(name, **overrides)).eval()
    labels = view_labels([0.3, -0.2], 0.1, camera_preset_for(G))
    return G, torch.randn(2, G.z_dim), labels


def test_tiny_epigraf_renders_both_branches_alike_and_ignores_the_conditioning_camera() -> None:
    G, z, c = _tiny()
    out = G(z, c, perturb=False)
    assert out["image"].shape == (2, 3, 32, 32) and out["image_depth"].shape == (2, 1, 32, 32)
    three_d = G(z, c, branch="3d", perturb=False)
    torch.testing.assert_close(three_d["image"], out["image"])
    # No pose conditioning: the mapping network does not see c.
    torch.testing.assert_close(G.mapping(z, c), G.mapping(z, c.flip(0)))
    assert G.backbone.mapping.c_dim == 0


def test_full_scale_patch_is_the_image_and_a_subgrid_patch_is_its_crop() -> None:
    G, z, c = _tiny()
    ws = G.mapping(z, c)
    full = G.synthesis(ws, c, branch="3d", perturb=False, neural_rendering_resolution=9)
    whole = G.render_scaled_patch(ws, c, torch.ones(2), torch.zeros(2, 2), 9, perturb=False)
    # Same pixel grid (scale 1 + offset 0 reproduces the grid values exactly): identical renders.
    assert torch.equal(whole["image"], full["image"])
    # On the corner grid pixel j of 9 sits at j / 8: a 5-pixel patch of scale 4/8 at offset (2/8, 3/8)
    # hits pixels 2..6 across and 3..7 down.
    patch = G.render_scaled_patch(
        ws, c, torch.full((2,), 0.5), torch.tensor([[0.25, 0.375]] * 2), 5, perturb=False
    )
    crop = full["image"][:, :, 3:8, 2:7]
    # The patch's ray directions differ from the full grid's by float32 rounding of the uv (a few eps).
    torch.testing.assert_close(patch["image"], crop, rtol=0, atol=1e-4)


def test_density_noise_acts_in_training_mode_only_and_only_for_epigraf() -> None:
    G, z, c = _tiny()
    ws = G.mapping(z, c)
    clean = G.synthesis(ws, c, perturb=False)["image"]
    G.density_noise_std = 1.0
    torch.testing.assert_close(G.synthesis(ws, c, perturb=False)["image"], clean)  # eval: no noise
    G.train()
    noisy = G.synthesis(ws, c, perturb=False, generator=torch.Generator().manual_seed(0))["image"]
    assert (noisy - clean).abs().max() > 1e-3
    G.density_noise_std = 0.0
    torch.testing.assert_close(G.synthesis(ws, c, perturb=False)["image"], clean)
    with pytest.raises(ValueError, match="density_noise_std"):
        G.density_noise_std = -1
    eg3d = TriplaneGenerator(generator_preset("tiny-eg3d"))
    with pytest.raises(ValueError, match="integration='epigraf'"):
        eg3d.density_noise_std = 0.5


def test_class_conditional_mapping_needs_labels_and_uses_them() -> None:
    G, z, c = _tiny(class_dim=5)
    assert G.backbone.mapping.c_dim == 5
    with pytest.raises(ValueError, match=r"labels: expected one-hot class labels \[N, 5\], got NoneType"):
        G.mapping(z, c)
    one = torch.eye(5)[[0, 0]]
    two = torch.eye(5)[[3, 3]]
    assert not torch.allclose(G.mapping(z, c, labels=one), G.mapping(z, c, labels=two))
    out = G(z, c, labels=one, perturb=False)
    assert out["image"].shape == (2, 3, 32, 32)
    plain, _, _ = _tiny()
    with pytest.raises(ValueError, match="not class-conditional"):
        plain.mapping(z, c, labels=one)


def test_background_model_gets_its_own_ws_and_fills_transparent_rays() -> None:
    G, z, c = _tiny("tiny-epigraf-bg")
    assert G.num_ws == G.backbone.synthesis.num_ws + G.background.num_ws
    ws = G.mapping(z, c)
    assert ws.shape[1] == G.num_ws
    planes = G.planes(ws)
    assert planes.background_ws.shape == (2, G.background.num_ws, G.w_dim)
    image = G.render(planes, c, 16, perturb=False)[0]
    # Changing only the background's ws changes the image (the foreground is not opaque) ...
    other = dataclasses.replace(planes, background_ws=planes.background_ws + 1)
    changed = G.render(other, c, 16, perturb=False)[0]
    assert (changed - image).abs().max() > 1e-3
    # ... and its state dict carries it under background.*
    assert any(k.startswith("background.blocks.1.to_out.") for k in G.state_dict())


def test_epigraf_config_combinations_are_checked() -> None:
    config = generator_preset("tiny-epigraf")
    with pytest.raises(ValueError, match="decoder, rendering.integration"):
        dataclasses.replace(config, decoder="eg3d")
    with pytest.raises(ValueError, match="superresolution"):
        dataclasses.replace(config, superresolution="hybrid2x", decoder_output_dim=8)
    with pytest.raises(ValueError, match="background, rendering.background_samples"):
        dataclasses.replace(config, rendering=dataclasses.replace(config.rendering, background_samples=4))
    with pytest.raises(ValueError, match="integration"):
        dataclasses.replace(config.rendering, integration="nerf")
    with pytest.raises(ValueError, match="pixel_grid"):
        dataclasses.replace(config.rendering, pixel_grid="edges")


def test_patch_training_step_reaches_every_part_of_the_model() -> None:
    G, z, c = _tiny("tiny-epigraf-bg")
    G.train()
    G.density_noise_std = 0.5
    ws = G.mapping(z, c)
    patch = G.render_scaled_patch(ws, c, torch.tensor([0.5, 0.8]), torch.tensor([[0.1, 0.2], [0.0, 0.1]]), 8)
    patch["image"].square().mean().backward()
    for prefix in ("backbone.mapping.", "backbone.synthesis.b32.", "decoder.net.2.", "background.blocks.1."):
        grads = [p.grad for name, p in G.named_parameters() if name.startswith(prefix)]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), prefix
        assert any(g.abs().sum() > 0 for g in grads), prefix
