"""Every tools command through the console entry point on a tiny checkpoint: outputs and bad arguments."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
import trimesh

import mimic3d
from mimic3d.cli.main import COMMANDS, main
from mimic3d.export import read_mrc, read_video
from mimic3d.models import TriplaneGenerator, generator_preset

IMAGE = 32  # tiny presets render 32^2 images, tri-planes 16^2 (residual 32^2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("tiny-mimic3d")).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    mimic3d.save(path, G)
    return str(path)


def _png(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path).convert("RGB"))


def _run(command: str, checkpoint: str, options: str, outdir, *extra: str) -> int:
    """Exit status of ``mimic3d COMMAND CHECKPOINT OPTIONS EXTRA --outdir OUTDIR``; OPTIONS is split
    at spaces, EXTRA (paths) is passed as it is."""
    return main([command, checkpoint, *options.split(), *extra, "--outdir", str(outdir)])


def test_generate_writes_one_grid_per_seed_with_depth_and_normal_rows(checkpoint, tmp_path, capsys):
    assert _run("generate", checkpoint, "--seeds 0-1 --branch both --views 0.3,-0.3", tmp_path) == 0
    for seed in (0, 1):
        grid = _png(tmp_path / f"seed{seed:04d}.png")
        # 2 views; per branch rows of images, depths and normals.
        assert grid.shape == (6 * IMAGE, 2 * IMAGE, 3)
        depth_tile = grid[IMAGE : 2 * IMAGE, :IMAGE]
        assert np.all(depth_tile[..., 0] == depth_tile[..., 1]) and depth_tile.std() > 0  # grey, not flat
    plain = tmp_path / "plain"
    assert _run("generate", checkpoint, "--seeds 3 --no-depth --no-normals", plain) == 0
    assert _png(plain / "seed0003.png").shape == (IMAGE, 3 * IMAGE, 3)


def test_video_frame_count_and_size(checkpoint, tmp_path):
    out = tmp_path / "both.mp4"
    options = "--seeds 0,1 --branch both --depth --frames 5 --fps 12 --sample-mult 1 --output"
    assert _run("video", checkpoint, options, tmp_path, str(out)) == 0
    frames, fps = read_video(out)
    # Two cells in a row, each 2 branch images + 2 depth maps.
    assert frames.shape == (5, IMAGE, 2 * 4 * IMAGE, 3) and fps == 12
    assert frames.std() > 1  # not a blank video


def test_interpolation_and_style_mixing_videos(checkpoint, tmp_path):
    # Each mode has its own default file name, so the three videos of one seed list coexist.
    common = "--frames 3 --trajectory turntable --sample-mult 1"
    assert _run("video", checkpoint, f"--seeds 0,1 {common}", tmp_path) == 0
    assert _run("video", checkpoint, f"--seeds 0,1 --interpolate {common}", tmp_path) == 0
    assert _run("video", checkpoint, f"--seeds 0,1 --style-seeds 5,6,7 {common}", tmp_path) == 0
    names = ["turntable_seeds0_1.mp4", "turntable_interp_seeds0_1.mp4", "turntable_seeds0_1_style5_6_7.mp4"]
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == sorted(names)
    shapes = [read_video(tmp_path / name)[0].shape for name in names]
    # Plain: one cell per seed; interpolated: one cell looping through both; style mixing: rows of
    # seeds, columns of the original and its 3 mixes.
    assert shapes == [(3, IMAGE, 2 * IMAGE, 3), (3, IMAGE, IMAGE, 3), (3, 2 * IMAGE, 4 * IMAGE, 3)]
    options = "--seeds 0-3 --interpolate --grid 2x1 --frames 4 --trajectory front-circle --sample-mult 1"
    assert _run("video", checkpoint, options, tmp_path) == 0
    frames, _ = read_video(tmp_path / "front-circle_interp_seeds0-3.mp4")
    assert frames.shape == (4, IMAGE, 2 * IMAGE, 3)


def test_mesh_volume_and_meshes(checkpoint, tmp_path, capsys):
    assert _run("mesh", checkpoint, "--seeds 0 --resolution 64 --format npy,mrc", tmp_path) == 0
    volume = np.load(tmp_path / "seed0000.npy")
    assert volume.shape == (64, 64, 64) and volume.dtype == np.float32
    from_mrc, voxel, origin = read_mrc(tmp_path / "seed0000.mrc")
    np.testing.assert_array_equal(from_mrc, volume)
    assert voxel == pytest.approx(1 / 63) and origin == pytest.approx((-0.5, -0.5, -0.5))
    level = float(np.median(volume[8:-8, 8:-8, 8:-8]))
    assert (
        _run("mesh", checkpoint, f"--seeds 0 --resolution 64 --format ply,glb --level {level}", tmp_path) == 0
    )
    assert "watertight" in capsys.readouterr().out
    for suffix in ("ply", "glb"):
        mesh = trimesh.load(tmp_path / f"seed0000.{suffix}", force="mesh")
        assert len(mesh.faces) > 100 and mesh.is_watertight
        assert np.all(mesh.bounds[0] >= -0.5) and np.all(mesh.bounds[1] <= 0.5)
        assert mesh.visual.vertex_colors[:, :3].std() > 0  # coloured by the decoder


def test_epi_and_planes_pictures(checkpoint, tmp_path):
    assert _run("epi", checkpoint, "--seeds 0 --frames 12", tmp_path) == 0
    epi = _png(tmp_path / "epi_seed0000.png")
    assert epi.shape == (12, IMAGE + 4 + IMAGE, 3)  # 2D | gap | 3D, one row per frame
    assert _run("planes", checkpoint, "--seeds 0", tmp_path) == 0
    planes = _png(tmp_path / "planes_seed0000.png")
    # Coarse and residual rows of three tiles at the residual's 32^2, 4-pixel gaps.
    assert planes.shape == (2 * IMAGE + 4, 3 * IMAGE + 2 * 4, 3)


@pytest.mark.parametrize(
    "args, field",
    [
        (["video", "MISSING", "--seeds", "0"], "not found"),
        (["video", "CKPT", "--seeds", "0-"], "seeds"),
        (["generate", "CKPT", "--seeds", "7-3"], "seeds"),
        (["generate", "CKPT", "--seeds", "4294967296"], "out of range"),
        (["video", "CKPT", "--trajectory", "spiral"], "trajectory"),
        (["mesh", "CKPT", "--resolution", "100"], "resolution"),
        (["mesh", "CKPT", "--format", "stl"], "format"),
        (["video", "CKPT", "--seeds", "0-2", "--grid", "2x2", "--frames", "2"], "seeds"),
        (["video", "CKPT", "--grid", "2x", "--frames", "2"], "grid"),
        (["generate", "CKPT", "--branch", "4d"], "branch"),
        (["generate", "CKPT", "--views", "left"], "views"),
        (["epi", "CKPT", "--row", "1.5"], "row"),
        (["generate", "CKPT", "--camera", "lsun"], "camera"),
    ],
)
def test_bad_arguments_give_one_line_errors(checkpoint, tmp_path, capsys, args, field):
    args = [
        checkpoint if a == "CKPT" else str(tmp_path / "missing.pkl") if a == "MISSING" else a for a in args
    ]
    rc = main(args + ["--outdir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"mimic3d {args[0]}: error:") and field in err


def test_help_lists_every_command_without_importing_any():
    # A fresh interpreter: the test process has imported the command modules already.
    code = (
        "import contextlib, io, sys\n"
        "from mimic3d.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(sorted(name for name in sys.modules if name.startswith('mimic3d.cli.')))\n"
        "print(out.getvalue())\n"
    )
    env = dict(os.environ, COLUMNS="200")  # one line per command
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    modules, listing = result.stdout.split("\n", 1)
    assert modules == "['mimic3d.cli.main']"
    lines = [line.split(None, 1) for line in listing.splitlines()]
    for name, summary in COMMANDS.items():
        assert [name, summary] in lines


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: mimic3d {command} ")
