"""The viewer's frames: latents (interpolation, style mixing), the tri-plane cache, what each view shows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numerics import assert_close
from torch import nn

from mimic3d.camera import PRESETS
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.imaging import depth_range, depth_to_images, normals_to_images, to_uint8
from mimic3d.tools.latents import seed_ws, style_mix
from mimic3d.tools.normals import normals_from_depth
from mimic3d.tools.planes import plane_norm_picture
from mimic3d.tools.viewpoints import camera_preset_for, orbit_labels
from mimic3d.viewer.frames import FrameRenderer, ViewSettings, capabilities

PRESET = PRESETS["ffhq"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TriplaneGenerator(generator_preset("tiny-mimic3d")).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def label():
    return orbit_labels([math.pi / 2 + 0.3], math.pi / 2 - 0.1, PRESET)[0]


def test_latents_blend_and_mix_like_the_tools(tiny):
    renderer = FrameRenderer(tiny, PRESET)
    ws = {seed: seed_ws(tiny, [seed], PRESET, truncation_psi=0.5) for seed in (1, 2, 3)}
    base = ViewSettings(seed=1, truncation_psi=0.5, blend_seed=2)
    torch.testing.assert_close(renderer.cache.ws(base), ws[1], rtol=0, atol=0)  # blend 0: the seed itself
    end = renderer.cache.ws(ViewSettings(seed=1, truncation_psi=0.5, blend_seed=2, blend=1.0))
    assert_close(end, ws[2], terms=2)  # lerp(a, b, 1) = a + (b - a): two roundings
    half = renderer.cache.ws(ViewSettings(seed=1, truncation_psi=0.5, blend_seed=2, blend=0.5))
    assert_close(half, (ws[1] + ws[2]) / 2, terms=2)
    layers = (3, 4, 5)
    mixed = renderer.cache.ws(ViewSettings(seed=1, truncation_psi=0.5, style_seed=3, style_layers=layers))
    torch.testing.assert_close(mixed, style_mix(ws[1], ws[3], layers), rtol=0, atol=0)
    # A style seed without layers, or layers without a style seed, changes nothing.
    assert ViewSettings(seed=1, style_seed=3).latent_key() == ViewSettings(seed=1).latent_key()


def test_tri_planes_are_computed_once_per_latent(tiny, label, monkeypatch):
    renderer = FrameRenderer(tiny, PRESET, cache_size=2)
    calls = []
    planes = tiny.planes
    monkeypatch.setattr(tiny, "planes", lambda *a, **k: calls.append(k.get("residual")) or planes(*a, **k))
    settings = ViewSettings(seed=4, branch="2d")
    first = renderer.render(settings, label)
    assert first.planes_seconds > 0 and calls == [False]  # the 2D branch needs P^c only
    moved = orbit_labels([math.pi / 2 - 0.3], math.pi / 2, PRESET)[0]
    again = renderer.render(settings, moved, preview=True)
    assert again.planes_seconds == 0 and calls == [False]
    renderer.render(ViewSettings(seed=4, branch="3d"), label)  # now P^r too: computed once more
    renderer.render(ViewSettings(seed=4, branch="both"), label)
    renderer.render(ViewSettings(seed=4, branch="2d", show="depth"), label)
    assert calls == [False, True]
    renderer.render(ViewSettings(seed=5), label)
    renderer.render(ViewSettings(seed=6), label)  # evicts seed 4 (cache of 2)
    renderer.render(ViewSettings(seed=4), label)
    assert calls == [False, True, False, False, False]


def test_what_each_view_shows(tiny, label):
    renderer = FrameRenderer(tiny, PRESET)
    ws = seed_ws(tiny, [7], PRESET, truncation_psi=0.7)
    with torch.no_grad():
        planes = tiny.planes(ws)
        image_3d, depth_3d = tiny.render(planes, label[None], 24, perturb=False, channels=3)
    settings = ViewSettings(seed=7, branch="3d", resolution_3d=24)

    depth = renderer.render(ViewSettings(**{**settings.__dict__, "show": "depth"}), label).panels[0]
    np.testing.assert_array_equal(depth, to_uint8(depth_to_images(depth_3d, depth_range(depth_3d)))[0])
    normals = renderer.render(ViewSettings(**{**settings.__dict__, "show": "normals"}), label).panels[0]
    expected = to_uint8(normals_to_images(normals_from_depth(depth_3d, label[None])))[0]
    np.testing.assert_array_equal(normals, expected)
    shown = renderer.render(ViewSettings(**{**settings.__dict__, "show": "planes"}), label).panels[0]
    np.testing.assert_array_equal(shown, plane_norm_picture(planes))

    # Previews: the volume render alone at the preview size; the 2D branch without super-resolution.
    preview = renderer.render(ViewSettings(seed=7, branch="3d", preview_resolution=8), label, preview=True)
    assert preview.preview and preview.panels[0].shape == (8, 8, 3)
    preview_2d = renderer.render(ViewSettings(seed=7, preview_resolution=8), label, preview=True).panels[0]
    with torch.no_grad():
        raw = tiny.synthesis(
            ws, label[None], noise_mode="const", perturb=False, neural_rendering_resolution=8
        )
    np.testing.assert_array_equal(preview_2d, to_uint8(raw["image_raw"])[0])

    # Both branches: two panels of one size (the 3D render upsampled to the 2D branch's 32).
    both = renderer.render(ViewSettings(seed=7, branch="both", resolution_3d=16), label)
    assert [p.shape for p in both.panels] == [(32, 32, 3), (32, 32, 3)]
    assert both.picture().shape == (32, 64, 3)
    assert np.abs(both.panels[0].astype(int) - both.panels[1]).mean() > 0.5  # two different branches


def test_the_2d_render_resolution_feeds_the_super_resolution(tiny, label):
    renderer = FrameRenderer(tiny, PRESET)
    ws = seed_ws(tiny, [2], PRESET, truncation_psi=0.7)
    frame = renderer.render(ViewSettings(seed=2, resolution_2d=8), label).panels[0]
    with torch.no_grad():
        out = tiny.synthesis(
            ws, label[None], noise_mode="const", perturb=False, neural_rendering_resolution=8
        )
    np.testing.assert_array_equal(frame, to_uint8(out["image"])[0])
    assert frame.shape == (32, 32, 3)


def test_bad_settings_name_the_field(tiny, label):
    renderer = FrameRenderer(tiny, PRESET)
    for settings, field in [
        (ViewSettings(seed=-1), "seed"),
        (ViewSettings(branch="4d"), "branch"),
        (ViewSettings(show="texture"), "show"),
        (ViewSettings(blend=1.5), "blend"),
        (ViewSettings(style_seed=1, style_layers=(99,)), "style_layers"),
        (ViewSettings(resolution_3d=0), "resolution_3d"),
    ]:
        with pytest.raises(ValueError, match=field):
            renderer.render(settings, label)


def test_an_epigraf_generator_shows_its_one_branch_with_its_background():
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("tiny-epigraf-bg")).eval().requires_grad_(False)
    preset = camera_preset_for(G)
    caps = capabilities(G)
    assert caps.branch_choices == ("3d",) and caps.shows == ("image", "depth", "normals", "planes")
    renderer = FrameRenderer(G, preset)
    label = orbit_labels([math.pi / 2 + 0.2], math.pi / 2, preset)[0]
    frame = renderer.render(ViewSettings(seed=1, branch="3d", resolution_3d=24), label)
    ws = seed_ws(G, [1], preset, truncation_psi=0.7)
    with torch.no_grad():
        image = G.synthesis(
            ws, label[None], branch="3d", noise_mode="const", perturb=False, neural_rendering_resolution=24
        )
    np.testing.assert_array_equal(frame.panels[0], to_uint8(image["image"])[0])
    for show in ("depth", "normals", "planes"):
        assert (
            renderer.render(ViewSettings(seed=1, branch="3d", show=show), label, preview=True).panels[0].std()
            > 0
        )
    with pytest.raises(ValueError, match="branch"):
        renderer.render(ViewSettings(seed=1, branch="2d"), label)


class _Student(nn.Module):
    """A generator without tri-planes: mapping and synthesis(ws, c) only (a distilled 2D student)."""

    num_ws, z_dim = 2, 4

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def mapping(self, z, c, truncation_psi=1.0, truncation_cutoff=None):
        return (z * truncation_psi)[:, None, :].expand(-1, self.num_ws, -1)

    def synthesis(self, ws, c, noise_mode="const"):
        value = torch.tanh(ws[:, 0, :3].mean() + c[:, 3:4].mean()) * self.scale
        return {"image": value.reshape(1, 1, 1, 1).expand(ws.shape[0], 3, 8, 8)}


def test_a_generator_without_tri_planes_shows_its_image_only(label):
    student = _Student()
    caps = capabilities(student)
    assert caps.branch_choices == ("2d",) and caps.shows == ("image",) and not caps.planes
    renderer = FrameRenderer(student, PRESET)
    frame = renderer.render(ViewSettings(seed=3), label)
    assert frame.panels[0].shape == (8, 8, 3)
    with pytest.raises(ValueError, match="branch"):
        renderer.render(ViewSettings(branch="3d"), label)
    with pytest.raises(ValueError, match="mapping"):
        capabilities(nn.Linear(2, 2))
