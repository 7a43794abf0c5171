"""Every tool on EpiGRAF models (tiny presets): generate, video, mesh, epi, planes, metrics, class labels."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
import trimesh

import mimic3d
from mimic3d.cli.main import main
from mimic3d.data.synth import synth_dataset
from mimic3d.export import read_video
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.models.config import EPIGRAF_FACE_RENDERING, epigraf_architecture
from mimic3d.tools.latents import seed_class_labels, seed_ws
from mimic3d.tools.mesh import EPIGRAF_LEVEL, default_level, model_colour_fn
from mimic3d.tools.viewpoints import camera_preset_for

IMAGE = 32


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("epigraf_tools")
    paths = {}
    for name, overrides in (("tiny-epigraf", {}), ("tiny-epigraf-bg", {}), ("classes", {"class_dim": 3})):
        torch.manual_seed(0)
        preset = "tiny-epigraf" if name == "classes" else name
        G = TriplaneGenerator(generator_preset(preset, **overrides)).eval()
        paths[name] = str(mimic3d.save(root / f"{name}.safetensors", G))
    return paths


def _png(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path).convert("RGB"))


def _run(command: str, checkpoint: str, options: str, outdir, *extra: str) -> int:
    return main([command, checkpoint, *options.split(), *extra, "--outdir", str(outdir)])


def test_cameras_follow_the_model_ray_ranges(checkpoints):
    assert camera_preset_for(mimic3d.load(checkpoints["tiny-epigraf"])).name == "ffhq"  # 2.25..3.3
    assert camera_preset_for(mimic3d.load(checkpoints["tiny-epigraf-bg"])).name == "epigraf-megascans"
    face = epigraf_architecture(256, EPIGRAF_FACE_RENDERING, triplane_resolution=16, channel_base=64)
    assert camera_preset_for(TriplaneGenerator(face)).name == "epigraf-ffhq"


@pytest.mark.parametrize("name", ["tiny-epigraf", "tiny-epigraf-bg", "classes"])
def test_generate_grids(checkpoints, tmp_path, name):
    assert _run("generate", checkpoints[name], "--seeds 0 --views 0.3,-0.3", tmp_path) == 0
    grid = _png(tmp_path / "seed0000.png")
    assert grid.shape == (3 * IMAGE, 2 * IMAGE, 3)  # image, depth, normals rows
    assert grid[:IMAGE].std() > 1  # not blank


@pytest.mark.parametrize(
    ("name", "trajectory"), [("tiny-epigraf", "front-circle"), ("tiny-epigraf-bg", "wiggle")]
)
def test_videos_on_epigraf_trajectories(checkpoints, tmp_path, name, trajectory):
    options = f"--seeds 0,1 --frames 4 --trajectory {trajectory} --sample-mult 1 --depth"
    assert _run("video", checkpoints[name], options, tmp_path) == 0
    frames, _ = read_video(tmp_path / f"{trajectory}_seeds0_1.mp4")
    assert frames.shape == (4, IMAGE, 2 * 2 * IMAGE, 3) and frames.std() > 1
    # The camera moves: consecutive frames differ.
    assert np.abs(frames[0].astype(float) - frames[2].astype(float)).mean() > 0.5


def test_mesh_of_an_epigraf_model(checkpoints, tmp_path, capsys):
    checkpoint = checkpoints["tiny-epigraf"]
    G = mimic3d.load(checkpoint)
    assert default_level(G) == EPIGRAF_LEVEL
    assert _run("mesh", checkpoint, "--seeds 0 --resolution 64 --format npy", tmp_path) == 0
    volume = np.load(tmp_path / "seed0000.npy")
    assert volume.shape == (64, 64, 64)
    level = float(np.median(volume[8:-8, 8:-8, 8:-8]))
    assert _run("mesh", checkpoint, f"--seeds 0 --resolution 64 --format ply --level {level}", tmp_path) == 0
    assert "watertight" in capsys.readouterr().out
    mesh = trimesh.load(tmp_path / "seed0000.ply", force="mesh")
    half = G.config.rendering.box_warp / 2
    assert len(mesh.faces) > 100 and np.all(np.abs(mesh.bounds) <= half + 1e-6)
    # Raw EpiGRAF colours in [-1, 1] become vertex colours in [0, 1].
    ws = seed_ws(G, [0], camera_preset_for(G))
    planes = G.planes(ws)
    points = torch.rand(64, 3) - 0.5
    raw, _ = G.renderer.sample(planes.field_planes(), G.decoder, points[None])
    torch.testing.assert_close(model_colour_fn(G, planes)(points), (raw[0] + 1) / 2)


def test_epi_and_planes_pictures(checkpoints, tmp_path, capsys):
    checkpoint = checkpoints["tiny-epigraf-bg"]
    assert _run("epi", checkpoint, "--seeds 0 --frames 8", tmp_path) == 0
    assert _png(tmp_path / "epi_seed0000.png").shape == (8, IMAGE + 4 + IMAGE, 3)
    assert _run("planes", checkpoint, "--seeds 0", tmp_path) == 0
    assert _png(tmp_path / "planes_seed0000.png").shape == (IMAGE, 3 * IMAGE + 2 * 4, 3)
    assert "columns zy, z-x, y-x" in capsys.readouterr().out


def test_swd_metric_of_an_epigraf_model(checkpoints, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIMIC3D_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "heads32.zip"
    synth_dataset(str(data), "heads", 8, 32, workers=1, progress=False)
    quick = "--metrics swd16k --num-gen 8 --device cpu --batch-gen 4 --workers 0 --branch 3d".split()
    args = ["metrics", checkpoints["tiny-epigraf"], "--data", str(data), *quick, "--run-dir", str(tmp_path)]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert np.isfinite(record["results"]["swd_x1e3_avg"]) and record["resolution"] == IMAGE


def test_class_conditional_tools_draw_a_class_per_seed(checkpoints):
    G = mimic3d.load(checkpoints["classes"])
    labels = seed_class_labels([0, 1, 2, 3], 3)
    assert labels.sum(1).tolist() == [1, 1, 1, 1]
    # EpiGRAF's sample_c_from_seeds: np.random.RandomState(seed).choice(c_dim).
    assert labels.argmax(1).tolist() == [int(np.random.RandomState(s).choice(3)) for s in range(4)]
    preset = camera_preset_for(G)
    ws = seed_ws(G, [0, 1], preset)
    c = preset.frontal_label()[None].expand(2, -1)
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in (0, 1)])).float()
    torch.testing.assert_close(ws, G.mapping(z, c, labels=seed_class_labels([0, 1], 3)))
