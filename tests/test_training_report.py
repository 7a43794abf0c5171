"""``mimic3d demo`` end to end on a tiny budget, and the report's choices for barely trained models."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import trimesh

from mimic3d.cli.main import main
from mimic3d.export import read_video
from mimic3d.tools.mesh import EG3D_LEVEL, choose_level
from mimic3d.training.report import DISPLAY_SIZE


def test_demo_writes_a_complete_report(tmp_path, capsys):
    outdir = tmp_path / "demo"
    args = ["--outdir", str(outdir), "--minutes", "0.01", "--images", "16", "--video-frames", "4"]
    args += [
        "--metric-images",
        "16",
        "generator.rendering.num_coarse=4",
        "generator.rendering.num_importance=4",
    ]
    assert main(["demo", *args]) == 0
    printed = capsys.readouterr().out
    report = outdir / "report"
    assert str(report / "samples.png") in printed and (report / "README.txt").read_text() in printed

    # 32x32 tiles enlarged 4x: 5 rows (2D image/raw/depth, 3D image/depth) of 8 samples.
    factor = DISPLAY_SIZE // 32
    width, height = PIL.Image.open(report / "samples.png").size
    assert (width, height) == (factor * (8 * 32 + 7 * 2), factor * (5 * 32 + 4 * 2))
    assert len(list((report / "multiview").glob("seed*.png"))) == 4
    frames, _ = read_video(report / "multiview_3d.mp4")
    assert len(frames) == 4 and frames[0].shape[0] % 128 == 0  # the 3D branch rendered at 128

    metrics = json.loads((report / "metrics.json").read_text())
    for branch in ("2d", "3d"):
        assert np.isfinite(metrics[f"{branch}/swd_x1e3_avg"]) and metrics[f"{branch}/reprojection_psnr"] > 0
    mesh = trimesh.load(report / "mesh_seed0.ply")
    assert len(mesh.vertices) == metrics["mesh_vertices"] > 0 and mesh.is_watertight
    assert list((outdir / "runs").glob("*/events.out.tfevents.*"))

    # Step 1 came first: the shipped heads64 model's report, with the metrics recorded when shipped.
    shipped = outdir / "heads64"
    assert printed.index(str(shipped / "metrics.json")) < printed.index(str(report / "samples.png"))
    # 64x64 tiles enlarged 2x: 3 views; per branch rows of image, depth and normals.
    assert _png_size(shipped / "multiview" / "seed0000.png") == (3 * 128, 6 * 128)
    frames, _ = read_video(shipped / "multiview_3d.mp4")
    assert frames.shape == (4, 128, 2 * 128, 3)  # one seed: the 3D branch at 128^2 and its depth
    assert trimesh.load(shipped / "mesh_seed0.ply").is_watertight and (shipped / "epi_seed0000.png").is_file()
    shipped_metrics = json.loads((shipped / "metrics.json").read_text())
    for branch in ("2d", "3d"):
        assert shipped_metrics[f"{branch}/reprojection_psnr"] > 0
        assert np.isfinite(shipped_metrics[f"recorded/{branch}/swd_x1e3_avg"])


def test_demo_refuses_to_skip_both_steps(tmp_path, capsys):
    assert main(["demo", "--no-training", "--no-shipped-model", "--outdir", str(tmp_path / "x")]) == 2
    assert "nothing left to do" in capsys.readouterr().err and not (tmp_path / "x").exists()


def _png_size(path) -> tuple[int, int]:
    return PIL.Image.open(path).size


def test_mesh_level_looks_inside_the_border_only():
    volume = np.full((16, 16, 16), -5.0, np.float32)
    volume[4:12, 4:12, 4:12] = np.linspace(-5, 0, 8)[:, None, None]  # never reaches EG3D's level
    volume[0] = 50.0  # density in the border, which marching cubes never sees
    level, automatic = choose_level(volume, border_fraction=2 / 16)
    inner = volume[2:-2, 2:-2, 2:-2]
    assert automatic and inner.min() < level < inner.max() and level != EG3D_LEVEL
    with pytest.raises(ValueError, match="does not cut"):
        choose_level(volume, 2 / 16, level=EG3D_LEVEL)  # a level the user gave is never replaced
    volume[6, 6, 6] = 20.0
    assert choose_level(volume, 2 / 16) == (EG3D_LEVEL, False)
    with pytest.raises(ValueError, match="flat"):
        choose_level(np.zeros((8, 8, 8), np.float32), 1 / 8)


def test_epigraf_demo_reports_its_direct_render(tmp_path):
    outdir = tmp_path / "demo"
    args = ["--preset", "tiny-epigraf-heads", "--outdir", str(outdir), "--minutes", "0.01", "--images", "16"]
    args += ["--no-shipped-model"]  # step 1 is the same for every preset: test_demo_writes_a_complete_report
    args += ["--video-frames", "4", "--metric-images", "16", "generator.rendering.num_coarse=4"]
    assert main(["demo", *args]) == 0
    report = outdir / "report"
    factor = DISPLAY_SIZE // 32
    width, height = PIL.Image.open(report / "samples.png").size
    assert (width, height) == (factor * (8 * 32 + 7 * 2), factor * (2 * 32 + 2))  # image and depth rows
    metrics = json.loads((report / "metrics.json").read_text())
    assert np.isfinite(metrics["3d/swd_x1e3_avg"]) and metrics["3d/reprojection_psnr"] > 0
    assert not any(key.startswith("2d/") for key in metrics)
    assert (report / "multiview_3d.mp4").is_file() and list((outdir / "runs").glob("*/events.out.tfevents.*"))
    assert not (outdir / "heads64").exists()
