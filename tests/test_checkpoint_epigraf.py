"""``mimic3d.load`` on official EpiGRAF network pickles: inert OmegaConf, renamed weights, official renders.

The pickles are written from the committed fixtures (``epigraf_pickles``): the official G_ema's module
tree, constructor arguments, hydra config and fp16-exact weights, and its outputs computed by
universome/epigraf on CPU with jitter off and ``det=True`` importance sampling, for a foreground-only
(FFHQ cameras) and a background-sphere, class-conditional (Megascans Food cameras) configuration.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from epigraf_pickles import epigraf_snapshot, load_fixture, write_epigraf_snapshot
from safetensors.torch import load_file

from mimic3d.camera import epigraf_label
from mimic3d.checkpoints.load import load, load_networks, save
from mimic3d.checkpoints.omegaconf_data import config_to_plain
from mimic3d.checkpoints.safe_unpickle import read_official_pickle
from mimic3d.models.generator import TriplaneGenerator

# Dataset cameras of the two configurations (configs/dataset/ffhq_posed.yaml, megascans_food.yaml).
CAMERAS = {"epigraf_fg": (1.0, 12.0), "epigraf_bg": (1.0, 30.0)}
SCRATCH = Path("/work/scratch/i12/out")
# The bound for images and depths (both O(1)-O(5) here; float32 differences measured ~1e-5).
ATOL = 1e-4


def _loaded(name: str, tmp_path: Path, monkeypatch) -> tuple[TriplaneGenerator, dict, dict, dict]:
    info, weights, io = load_fixture(name)
    path = write_epigraf_snapshot(
        tmp_path / "network-snapshot.pkl", monkeypatch, epigraf_snapshot(info, weights)
    )
    return load(path), info, weights, io


def _epigraf_points_to_ours(points: torch.Tensor) -> torch.Tensor:
    """EpiGRAF's world (subject facing +x) -> ours (facing +z): (x', y', z') = (z, y, -x)."""
    return torch.stack([-points[..., 2], points[..., 1], points[..., 0]], -1)


@pytest.mark.parametrize("name", ["epigraf_fg", "epigraf_bg"])
def test_epigraf_pickle_renders_the_official_images_and_depths(name, tmp_path, monkeypatch):
    modules_before = set(sys.modules)
    G, info, weights, io = _loaded(name, tmp_path, monkeypatch)
    # Nothing of omegaconf or the official code was imported to read it.
    assert not {
        m for m in set(sys.modules) - modules_before if m.split(".")[0] in ("omegaconf", "src", "hydra")
    }
    config = G.config
    assert isinstance(G, TriplaneGenerator) and not G.training
    assert (config.decoder, config.superresolution, config.pose_conditioning) == ("epigraf", "none", False)
    rendering = config.rendering
    assert (rendering.convention, rendering.integration, rendering.pixel_grid) == (
        "epigraf",
        "epigraf",
        "corners",
    )
    assert rendering.align_corners and rendering.num_coarse == rendering.num_importance == 12
    assert (config.triplane_resolution, config.triplane_channels, config.z_dim, config.w_dim) == (
        64,
        96,
        32,
        64,
    )
    if name == "epigraf_bg":
        assert config.class_dim == 10 and config.background is not None
        assert (rendering.box_warp, rendering.white_background, rendering.background_samples) == (
            0.95,
            True,
            8,
        )
    else:
        assert config.class_dim == 0 and config.background is None and rendering.box_warp == 0.4
    radius, fov = CAMERAS[name]
    c = epigraf_label(io["angles"], radius, fov)
    labels = io["c"] if io["c"].shape[1] else None
    with torch.no_grad():
        ws = G.mapping(io["z"], c, labels=labels)
        ws07 = G.mapping(io["z"], c, truncation_psi=0.7, labels=labels)
        out = G.synthesis(io["ws"], c, branch="3d", perturb=False)
        psi07 = G.synthesis(io["ws_psi07"], c, branch="3d", perturb=False)
        # EpiGRAF measures the patch's y offset from the bottom; ours is its top edge.
        scale, offset = io["patch_scale"], io["patch_offset"].clone()
        offset[:, 1] = 1 - scale - offset[:, 1]
        patch = G.render_scaled_patch(io["ws"], c, scale, offset, 16, perturb=False)
        density = G.sample_density(_epigraf_points_to_ours(io["points"]), io["ws"])
    # ws: two FC layers of <= 96 inputs on O(3) values, ~sqrt(96) * eps relative each.
    torch.testing.assert_close(ws, io["ws"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ws07, io["ws_psi07"], rtol=1e-5, atol=1e-5)
    for ours, key in (
        (out["image"], "image"),
        (out["image_depth"], "image_depth"),
        (psi07["image"], "psi07_image"),
        (patch["image"], "patch_image"),
        (patch["image_depth"], "patch_depth"),
    ):
        torch.testing.assert_close(ours, io[key], rtol=0, atol=ATOL, msg=lambda m, k=key: f"{k}: {m}")
    torch.testing.assert_close(density, io["density"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["epigraf_fg", "epigraf_bg"])
def test_imported_epigraf_model_round_trips_bit_exactly(name, tmp_path, monkeypatch):
    G, _, _, io = _loaded(name, tmp_path, monkeypatch)
    radius, fov = CAMERAS[name]
    c = epigraf_label(io["angles"], radius, fov)
    labels = io["c"] if io["c"].shape[1] else None
    for target in (tmp_path / "converted.safetensors", tmp_path / "converted"):
        again = load(save(target, G))
        assert again.config == G.config
        ours, theirs = G.state_dict(), again.state_dict()
        assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
        with torch.no_grad():
            first = G(io["z"], c, labels=labels, perturb=False)
            second = again(io["z"], c, labels=labels, perturb=False)
        for key in ("image", "image_depth"):
            assert torch.equal(first[key], second[key]), key


def test_snapshot_networks_and_inert_config(tmp_path, monkeypatch):
    info, weights, _ = load_fixture("epigraf_bg")
    path = write_epigraf_snapshot(
        tmp_path / "network-snapshot.pkl", monkeypatch, epigraf_snapshot(info, weights)
    )
    snapshot = read_official_pickle(path)
    # The optimisers are inert records, the config plain data with its interpolations resolved.
    assert snapshot["G_opt"].qualified_name == "torch.optim.adam.Adam"
    cfg = config_to_plain(snapshot["G_ema"].init_kwargs["cfg"])
    assert cfg["dataset"]["camera"]["fov"] == 30.0 and cfg["patch"]["resolution"] == 16
    assert cfg["dataset"]["name"] == "food_32"  # "food_${dataset.resolution}"
    # G_ema is what load() returns, G the training copy; EpiGRAF's D is not imported unless named.
    networks = load_networks(path)
    assert sorted(networks) == ["G", "G_ema"]
    key = "backbone.mapping.fc1.bias"
    assert torch.equal(networks["G_ema"].state_dict()[key], weights["mapping.fc1.bias"])
    assert torch.equal(networks["G"].state_dict()[key], weights["mapping.fc1.bias"] + 0.5)
    with pytest.raises(ValueError, match="cannot import discriminator class 'Discriminator'"):
        load_networks(path, names=["D"])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("backbone", "stylegan3-r"),
        ("clamp_mode", "relu"),
        ("tri_plane.mlp.n_layers", 3),
        ("tri_plane.has_view_cond", True),
        ("bg_model.type", "plane"),
        ("use_noise", False),
    ],
)
def test_unsupported_epigraf_options_are_named(option, value, tmp_path, monkeypatch):
    info, weights, _ = load_fixture("epigraf_fg")
    experiment = copy.deepcopy(info["experiment_config"])
    node = experiment["model"]["generator"]
    *parents, leaf = option.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    snapshot = epigraf_snapshot(info, weights, experiment)
    path = write_epigraf_snapshot(tmp_path / "network-snapshot.pkl", monkeypatch, snapshot)
    with pytest.raises(ValueError, match=f"unsupported EpiGRAF option {option}="):
        load(path)


@pytest.mark.parametrize("name", ["epigraf_fg", "epigraf_bg"])
def test_scratch_pickle_matches_committed_fixture(name):
    """Pickles written by the official code in the scratch harness read back to the committed weights."""
    path = SCRATCH / f"{name}.pkl"
    if not path.is_file():
        pytest.skip(f"scratch pickle {path} not present (only on the harness machine)")
    snapshot = read_official_pickle(path)
    info, weights, _ = load_fixture(name)
    state = snapshot["G_ema"].state_dict()
    assert list(state) == info["state_dict_order"]
    assert all(torch.equal(state[k], weights[k]) for k in state)
    assert config_to_plain(snapshot["G_ema"].init_kwargs["cfg"])["num_ray_steps"] == 12
    expected = load_file(str(Path(__file__).parent / "fixtures" / "parity" / info["io_file"]))
    G = load(path)
    c = epigraf_label(expected["angles"], *CAMERAS[name])
    labels = expected["c"] if expected["c"].shape[1] else None
    with torch.no_grad():
        image = G(expected["z"], c, labels=labels, branch="3d", perturb=False)["image"]
    torch.testing.assert_close(image, expected["image"], rtol=0, atol=ATOL)
