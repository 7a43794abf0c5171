"""Procedural datasets: determinism, depth on the SDF surface, mirrored cameras, bounds, output validity."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from mimic3d.camera import mirror_label, split_label
from mimic3d.cli.main import main
from mimic3d.data import ImageDataset
from mimic3d.data.check import check_dataset
from mimic3d.data.synth import get_kind, object_labels, render_samples, sample_objects, synth_dataset
from mimic3d.data.synth.generate import render_range
from mimic3d.render import image_uv

KINDS = ["heads", "cars"]


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _unproject(labels: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """World points [B, R, R, 3] at ``depth`` [B, R, R] along pixel-centre rays (written independently
    of the renderer: normalised pixel centres through the inverse intrinsics, rotated, unit length)."""
    cam2world, intrinsics = split_label(labels.double())
    resolution = depth.shape[-1]
    centres = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], -1)  # [R, R, 3]
    local = torch.einsum("bij,hwj->bhwi", torch.linalg.inv(intrinsics), pixels)
    world = torch.einsum("bij,bhwj->bhwi", cam2world[:, :3, :3], local)
    world = world / world.norm(dim=-1, keepdim=True)
    return cam2world[:, None, None, :3, 3] + world * depth.double()[..., None]


def _distance_at(kind, objects, points: torch.Tensor) -> torch.Tensor:
    """SDF of each object at its own points [B, R, R, 3] -> [B, R, R]."""
    batch = points.shape[0]
    geometry = torch.from_numpy(np.stack([o.geometry for o in objects], axis=1))
    obj = torch.arange(batch)[:, None, None].expand(points.shape[:3]).reshape(-1)
    flat = points.reshape(-1, 3).float()
    g = kind.geometry.view(geometry[:, obj])
    return kind.distance(flat[:, 0], flat[:, 1], flat[:, 2], g).reshape(points.shape[:3])


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    synth_dataset(str(tmp_path / "a.zip"), "cars", 5, 16, seed=3, batch_size=2, workers=1, progress=False)
    synth_dataset(str(tmp_path / "b.zip"), "cars", 5, 16, seed=3, batch_size=4, workers=1, progress=False)
    synth_dataset(str(tmp_path / "c.zip"), "cars", 5, 16, seed=4, batch_size=2, workers=1, progress=False)
    a, b, c = _members(tmp_path / "a.zip"), _members(tmp_path / "b.zip"), _members(tmp_path / "c.zip")
    assert a == b
    assert a["00000/img00000000.png"] != c["00000/img00000000.png"]


@pytest.mark.parametrize("kind", KINDS)
def test_sample_does_not_depend_on_its_batch(kind):
    images, labels, depth = render_range(kind, 11, 0, 5, 16)
    images2, labels2, depth2 = render_range(kind, 11, 3, 2, 16)
    assert np.array_equal(images[3:], images2) and np.array_equal(labels[3:], labels2)
    assert np.array_equal(depth[3:], depth2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("background, value", [("white", 1.0), ("black", 0.0)])
def test_plain_background_fills_exactly_the_uncovered_pixels(kind, background, value):
    category = get_kind(kind)
    objects = sample_objects(category, 7, range(3))
    labels = object_labels(category, objects)
    scene = render_samples(category, objects, labels, 24)
    plain = render_samples(category, objects, labels, 24, background)
    assert torch.equal(plain.depth, scene.depth) and torch.equal(plain.coverage, scene.coverage)
    alpha = scene.coverage[..., None]
    empty, full = alpha.expand_as(scene.image) == 0, alpha.expand_as(scene.image) == 1
    assert empty.any() and full.any()
    assert (plain.image[empty] == value).all()
    assert torch.equal(plain.image[full], scene.image[full])
    # Silhouette pixels blend the object over the background, bg (1 - a) + colour a, so changing
    # the background by d changes them by d (1 - a), up to float32 rounding, where the final clamp to
    # [0, 1] (specular highlights exceed 1) leaves both images alone.
    unclamped = (scene.image > 0) & (scene.image < 1) & (plain.image > 0) & (plain.image < 1)
    edge = ((alpha > 0) & (alpha < 1)).expand_as(scene.image) & unclamped
    assert edge.any()
    change = (value - kind_background(category, objects, 24)) * (1 - alpha)
    torch.testing.assert_close((plain.image - scene.image)[edge], change[edge], atol=4e-7, rtol=0)


def kind_background(category, objects, resolution: int) -> torch.Tensor:
    """The kind's own background [B, R, R, 3], what scene pixels show with no object."""
    appearance = torch.from_numpy(np.stack([o.appearance for o in objects], axis=1))
    u, v = image_uv(resolution).unbind(1)
    image = category.background(u, v, category.appearance.view(appearance))  # [3, B, R*R]
    return image.reshape(3, len(objects), resolution, resolution).permute(1, 2, 3, 0)


def test_background_is_checked_and_recorded(tmp_path):
    with pytest.raises(ValueError, match="background: expected one of"):
        synth_dataset(str(tmp_path / "x.zip"), "heads", 1, 8, background="grey", progress=False)
    synth_dataset(str(tmp_path / "w.zip"), "heads", 1, 8, background="white", workers=1, progress=False)
    assert '"background": "white"' in _members(tmp_path / "w.zip")["dataset.json"].decode()


@pytest.mark.parametrize("kind", KINDS)
def test_pose_spread_scales_the_poses_of_the_same_objects(kind):
    category = get_kind(kind)
    base = sample_objects(category, 4, range(6))
    wide = sample_objects(category.with_pose_spread(yaw_std=2 * category.yaw_std), 4, range(6))
    preset = category.preset
    for a, b in zip(base, wide):
        assert np.array_equal(a.geometry, b.geometry) and np.array_equal(a.appearance, b.appearance)
        # numpy draws normal(0, s) and uniform(-s, s) as s times the same standard variate.
        assert b.yaw - preset.yaw_mean == pytest.approx(2 * (a.yaw - preset.yaw_mean), rel=1e-12)
        assert b.pitch == a.pitch
    assert category.yaw_std == get_kind(kind).yaw_std  # the registered kind is left alone
    with pytest.raises(ValueError, match="pitch_std: expected a finite angle >= 0"):
        category.with_pose_spread(pitch_std=-0.1)


def test_pose_spread_is_recorded_and_checked_on_the_command_line(tmp_path, capsys):
    dest = tmp_path / "wide.zip"
    args = ["dataset", "synth", str(dest), "--num", "2", "--resolution", "8", "--workers", "1"]
    assert main([*args, "--yaw-std", "0.6"]) == 0
    synth = json.loads(_members(dest)["dataset.json"])["synth"]
    assert synth["yaw_std"] == 0.6 and synth["pitch_std"] == get_kind("heads").pitch_std
    capsys.readouterr()
    assert main([*args, "--overwrite", "--pitch-std", "-1"]) == 2
    assert "argument --pitch-std: expected a finite number >= 0" in capsys.readouterr().err


def test_worker_processes_write_the_same_dataset(tmp_path):
    synth_dataset(str(tmp_path / "one.zip"), "heads", 4, 16, seed=2, batch_size=2, workers=1, progress=False)
    synth_dataset(str(tmp_path / "two.zip"), "heads", 4, 16, seed=2, batch_size=2, workers=2, progress=False)
    assert _members(tmp_path / "one.zip") == _members(tmp_path / "two.zip")


@pytest.mark.parametrize("kind", KINDS)
def test_depth_unprojects_onto_the_surface(kind):
    category = get_kind(kind)
    objects = sample_objects(category, 5, range(4))
    labels = object_labels(category, objects)
    rendered = render_samples(category, objects, labels, 32)
    hit = torch.isfinite(rendered.depth)
    assert 0.1 < hit.float().mean() < 0.9
    assert torch.equal(hit, rendered.coverage == 1.0)
    distance = _distance_at(category, objects, _unproject(labels, torch.where(hit, rendered.depth, 0.0)))
    assert distance[hit].abs().max() < 1e-3
    # Moving 2 cm along the ray in either direction leaves the surface (a real test of depth).
    assert (
        _distance_at(category, objects, _unproject(labels, rendered.depth - 0.02))[hit] > 5e-3
    ).float().mean() > 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_stored_dataset_is_valid_and_depth_matches_the_geometry(tmp_path, kind):
    dest = tmp_path / f"{kind}.zip"
    synth_dataset(str(dest), kind, 6, 32, seed=9, workers=1, progress=False)
    report = check_dataset(dest)
    assert report.ok, report.problems
    assert report.has_depth and report.resolution == 32
    category = get_kind(kind)
    objects = sample_objects(category, 9, range(6))
    dataset = ImageDataset(dest, load_depth=True)
    images, labels, depth = (torch.stack(items) for items in zip(*[dataset[i] for i in range(6)]))
    torch.testing.assert_close(labels, object_labels(category, objects))
    depth = depth[:, 0]
    hit = torch.isfinite(depth)
    distance = _distance_at(category, objects, _unproject(labels, torch.where(hit, depth, 0.0)))
    assert distance[hit].abs().max() < 1e-3
    if kind == "cars":
        # ShapeNet-like white background away from the silhouette (anti-aliased edge pixels excluded).
        far = ~torch.nn.functional.max_pool2d(hit[:, None].float(), 3, 1, 1)[:, 0].bool()
        assert (images.permute(0, 2, 3, 1)[far] == 255).all()


@pytest.mark.parametrize("kind", KINDS)
def test_mirrored_sample_camera_renders_the_mirrored_silhouette(tmp_path, kind):
    dest = tmp_path / f"{kind}.zip"
    synth_dataset(str(dest), kind, 6, 32, seed=1, workers=1, progress=False)
    dataset = ImageDataset(dest, mirror=True, load_depth=True)
    category = get_kind(kind)
    objects = sample_objects(category, 1, range(6))
    mirrored = [dataset[6 + i] for i in range(6)]
    labels = torch.stack([item[1] for item in mirrored])
    torch.testing.assert_close(labels, mirror_label(object_labels(category, objects)))
    silhouettes = torch.stack([torch.isfinite(item[2][0]) for item in mirrored])
    rendered = render_samples(category, objects, labels, 32)
    mismatch = (torch.isfinite(rendered.depth) != silhouettes).float().mean(dim=(1, 2))
    assert mismatch.max() <= 0.005
    # Control: the un-mirrored cameras do not reproduce the flipped silhouettes of turned objects.
    unmirrored = render_samples(category, objects, object_labels(category, objects), 32)
    control = (torch.isfinite(unmirrored.depth) != silhouettes).float().mean(dim=(1, 2))
    assert control.max() > 0.02


@pytest.mark.parametrize("kind", KINDS)
def test_bound_contains_every_object(kind):
    category = get_kind(kind)
    objects = sample_objects(category, 0, range(48))
    generator = torch.Generator().manual_seed(0)
    count = 4000
    centre = torch.tensor(category.bound_center)
    direction = torch.randn(48, count, 3, generator=generator)
    radius = category.bound_radius * torch.rand(48, count, 1, generator=generator) ** (1 / 3)
    points = (centre + direction / direction.norm(dim=-1, keepdim=True) * radius).reshape(48, count, 1, 3)
    inside = _distance_at(category, objects, points).reshape(-1) < 0
    flat = points.reshape(-1, 3)
    bound = category.bound_distance(flat[:, 0], flat[:, 1], flat[:, 2])
    assert inside.sum() > 1000
    assert (bound[inside] < 0).all()


def test_cli_synth_and_errors(tmp_path, capsys):
    assert (
        main(
            [
                "dataset",
                "synth",
                str(tmp_path / "s.zip"),
                "--kind",
                "heads",
                "--num",
                "2",
                "--resolution",
                "16",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "images/s" in capsys.readouterr().out
    plot = tmp_path / "cams.png"
    assert main(["dataset", "check", str(tmp_path / "s.zip"), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "images:      2" in out and "camera radius:" in out and "problems:    0" in out
    with PIL.Image.open(plot) as picture:
        assert picture.size[0] > 400 and picture.size[1] > 200
    assert main(["dataset", "synth", str(tmp_path / "s.zip"), "--num", "2", "--resolution", "16"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["dataset", "synth", str(tmp_path / "t.zip"), "--resolution", "48"]) == 2
    assert "power of two" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["check", "build", "synth"])
def test_cli_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["dataset", command, "--help"])
    assert exited.value.code == 0
    assert command in capsys.readouterr().out
