"""``mimic3d invert`` end to end on a tiny checkpoint: files written, the tuned checkpoint in every tool,
image and camera files (``--crop``), and one-line errors. Few steps: these check plumbing, not quality
(tests/test_inversion.py checks quality)."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from inversion_support import TARGET_PITCH, TARGET_YAW, cameras, structured_generator, true_latent
from numerics import assert_close

import mimic3d
from mimic3d.checkpoints.load import checkpoint_metadata
from mimic3d.cli.main import main
from mimic3d.export import read_video
from mimic3d.inversion import load_targets, render_views
from mimic3d.tools.imaging import to_uint8

FAST = ["--steps", "3", "--pti-steps", "2", "--lpips", "untrained", "--frames", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny Mimic3D checkpoint, a target PNG it rendered from a known camera, and its dataset.json."""
    folder = tmp_path_factory.mktemp("invert")
    G = structured_generator("tiny-mimic3d")
    label = cameras([TARGET_YAW], [TARGET_PITCH])
    with torch.no_grad():
        image = render_views(G, true_latent(G), label, "3d")
    PIL.Image.fromarray(to_uint8(image)[0]).save(folder / "target.png")
    (folder / "dataset.json").write_text(json.dumps({"labels": [["target.png", label[0].tolist()]]}))
    mimic3d.save(folder / "tiny.safetensors", G)
    return folder


def _invert(files, outdir, *extra):
    return main(["invert", str(files / "target.png"), "--network", str(files / "tiny.safetensors"), *FAST,
                 "--outdir", str(outdir), *extra])  # fmt: skip


def test_invert_writes_latent_checkpoint_picture_video_and_mesh(files, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ["--cameras", str(files / "dataset.json"), "--branch", "3d", "--mesh-resolution", "64"]
    assert _invert(files, out, *extra, "--mesh-level", "0") == 0
    printed = capsys.readouterr().out
    assert "target: PSNR (dB) w_avg" in printed and "no camera statistics" in printed
    latent = np.load(out / "latent.npz")
    G = mimic3d.load(out / "generator.safetensors")
    assert latent["ws"].shape == (1, G.num_ws, G.w_dim) and latent["cameras"].shape == (1, 25)
    assert list(latent["names"]) == ["target"]
    summary = json.loads((out / "inversion.json").read_text())
    assert summary["config"]["method"] == "pti" and summary["config"]["branch"] == "3d"
    assert summary["steps_run"] == {"latent": 3, "pti": 2} and summary["estimated_cameras"] is None
    # The saved checkpoint renders the inverted subject as reported (same weights, same kernels).
    with torch.no_grad():
        image = render_views(G, torch.from_numpy(latent["ws"]), torch.from_numpy(latent["cameras"]), "3d")
    target = torch.from_numpy(np.array(PIL.Image.open(files / "target.png"))).permute(2, 0, 1) / 127.5 - 1
    reported = summary["psnr"]["final"][0]
    assert float(mimic3d.inversion.psnr(image, target[None].float())[0]) == pytest.approx(reported, abs=1e-3)
    metadata = checkpoint_metadata(out / "generator.safetensors")
    assert metadata["camera"]["name"] == "ffhq"
    assert metadata["inversion"]["source"].endswith("tiny.safetensors")
    picture = np.asarray(PIL.Image.open(out / "before_after.png"))
    assert picture.shape[1] >= 4 * 32  # target, w_avg, latent, tuned
    frames, _ = read_video(out / "front-circle.mp4")
    assert len(frames) == 3
    assert (out / "mesh.ply").stat().st_size > 0

    tuned = str(out / "generator.safetensors")
    for command, options in (
        ("generate", ["--seeds", "0", "--branch", "both"]),
        ("video", ["--seeds", "0", "--frames", "2", "--sample-mult", "1"]),
        ("mesh", ["--seeds", "0", "--resolution", "64", "--level", "0"]),
        ("epi", ["--seeds", "0"]),
    ):
        assert main([command, tuned, *options, "--outdir", str(tmp_path / command)]) == 0, command
        assert any((tmp_path / command).iterdir()), command


def test_invert_without_cameras_estimates_them(files, tmp_path, capsys):
    assert _invert(files, tmp_path, "--method", "w", "--no-video", "--no-mesh") == 0
    assert "estimated yaw" in capsys.readouterr().out
    summary = json.loads((tmp_path / "inversion.json").read_text())
    assert set(summary["estimated_cameras"]) == {"yaw", "pitch", "radius"}
    assert "pti" not in summary["steps_run"]
    assert not (tmp_path / "front-circle.mp4").exists() and "video" not in summary["files"]


def test_crop_takes_the_centred_square_and_moves_the_principal_point(files, tmp_path):
    image = np.asarray(PIL.Image.open(files / "target.png"))
    wide = np.full((32, 48, 3), 255, np.uint8)
    wide[:, 8:40] = image
    PIL.Image.fromarray(wide).save(tmp_path / "wide.png")
    label = np.array(json.loads((files / "dataset.json").read_text())["labels"][0][1])
    wide_label = label.copy()
    wide_label[16] *= 32 / 48  # fx in units of the wider image
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [["wide.png", wide_label.tolist()]]}))
    targets = load_targets([tmp_path / "wide.png"], 32, tmp_path / "dataset.json", crop=True)
    square = load_targets([files / "target.png"], 32, files / "dataset.json")
    assert torch.equal(targets.images, square.images)
    # Intrinsics of the crop: back to the square image's (a few float32 roundings).
    assert_close(targets.cameras, square.cameras, terms=3, depth=3)
    with pytest.raises(ValueError, match="not square.*--crop"):
        load_targets([tmp_path / "wide.png"], 32)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (["--method", "z"], "--method"),
        (["--mesh-resolution", "100"], "--mesh-resolution"),
        (["--cameras", "MISSING"], "camera file not found"),
        (["--branch", "4d"], "--branch"),
        (["--steps", "-1"], "--steps"),
    ],
)
def test_bad_arguments_give_one_line_errors(files, tmp_path, capsys, extra, field):
    extra = [str(tmp_path / "missing.json") if e == "MISSING" else e for e in extra]
    assert _invert(files, tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mimic3d invert: error:") and field in err[0]
    assert not (tmp_path / "generator.safetensors").exists()


def test_non_square_image_without_crop_is_refused(files, tmp_path, capsys):
    PIL.Image.new("RGB", (40, 32)).save(tmp_path / "wide.png")
    rc = main(["invert", str(tmp_path / "wide.png"), "--network", str(files / "tiny.safetensors"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "wide.png" in err and "--crop" in err
