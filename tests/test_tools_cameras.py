"""Seeds, grids, trajectories, latents and interpolation used by the tools."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numerics import POSE, assert_close

from mimic3d.camera import PRESETS, split_label, validate_label
from mimic3d.export import VideoWriter, read_video
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.latents import interpolate_keyframes, seed_latents, style_mix
from mimic3d.tools.parsing import parse_floats, parse_grid, parse_layers, parse_seeds
from mimic3d.tools.trajectories import TRAJECTORIES, trajectory_angles, trajectory_labels
from mimic3d.tools.viewpoints import camera_preset_for


def test_parse_seeds_ranges_lists_and_errors():
    assert parse_seeds("0-3,10,5-5") == [0, 1, 2, 3, 10, 5]
    assert parse_seeds([7, 8]) == [7, 8]
    assert parse_seeds("4294967295") == [4294967295]
    for bad, message in [
        ("0-", "cannot parse"),
        ("3-1", "ends before"),
        ("-1", "cannot parse"),
        ("a", "cannot parse"),
        ("", "cannot parse"),
        ("4294967296", "out of range"),
        ([1.5], "integers"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)


def test_parse_grid_floats_and_layers():
    assert parse_grid("4x2") == (4, 2) and parse_grid("3,1") == (3, 1) and parse_grid((2, 2)) == (2, 2)
    for bad in ("4x", "0x2", "x"):
        with pytest.raises(ValueError, match="grid"):
            parse_grid(bad)
    assert parse_floats("0.4, 0,-0.4", "views") == [0.4, 0.0, -0.4]
    with pytest.raises(ValueError, match="views"):
        parse_floats("nan", "views")
    assert parse_layers("7-", 14) == list(range(7, 14)) and parse_layers(None, 14) == list(range(7, 14))
    assert parse_layers("0-2,5", 6) == [0, 1, 2, 5]
    with pytest.raises(ValueError, match="mix_layers"):
        parse_layers("9-", 6)


def test_seed_latents_follow_eg3d_numpy_convention():
    z = seed_latents([3, 0], 8)
    np.testing.assert_allclose(z[0].numpy(), np.random.RandomState(3).randn(8).astype(np.float32))
    assert torch.equal(seed_latents([0], 8)[0], z[1])


@pytest.mark.parametrize("name", TRAJECTORIES)
def test_trajectories_look_at_the_pivot_from_the_orbit(name):
    preset = PRESETS["ffhq"]
    labels = trajectory_labels(name, 16, preset)
    assert labels.shape == (16, 25)
    validate_label(labels)
    cam2world, intrinsics = split_label(labels)
    origin, forward = cam2world[:, :3, 3], cam2world[:, :3, 2]
    assert_close(origin.norm(dim=-1), torch.full((16,), preset.radius), **POSE)
    to_pivot = torch.tensor(preset.pivot) - origin
    cosine = (forward * to_pivot).sum(-1) / to_pivot.norm(dim=-1)
    assert_close(cosine, torch.ones(16), terms=3, depth=5)  # ... then a 3-term dot product and a norm
    assert torch.allclose(intrinsics[:, 0, 0], torch.tensor(preset.focal))


def test_trajectory_shapes():
    yaw, pitch = trajectory_angles("orbit", 8)
    # EG3D's gen_videos loop: starts at the top of the ellipse and does not repeat its first frame.
    assert yaw[0] == pytest.approx(math.pi / 2) and pitch[0] == pytest.approx(math.pi / 2 - 0.05 + 0.25)
    assert yaw[2] == pytest.approx(math.pi / 2 + 0.35)
    yaw, pitch = trajectory_angles("yaw-sweep", 5, yaw_range=0.5)
    np.testing.assert_allclose(yaw - math.pi / 2, [-0.5, -0.25, 0, 0.25, 0.5])
    assert np.all(pitch == math.pi / 2)
    yaw, _ = trajectory_angles("turntable", 4)
    np.testing.assert_allclose(np.diff(yaw), math.pi / 2)
    with pytest.raises(ValueError, match="trajectory"):
        trajectory_angles("spiral", 4)
    with pytest.raises(ValueError, match="frames"):
        trajectory_angles("orbit", 0)


def test_periodic_interpolation_passes_through_keyframes_and_loops():
    keyframes = torch.randn(3, 2, 4, dtype=torch.float64)
    times = np.array([0.0, 1.0, 2.0, 3.0, 1.5])
    values = interpolate_keyframes(keyframes, times)
    torch.testing.assert_close(values[:3], keyframes)
    torch.testing.assert_close(values[3], keyframes[0])  # back to the start after one loop
    assert not torch.allclose(values[4], keyframes[1]) and not torch.allclose(values[4], keyframes[2])
    # The loop is smooth: the finite-difference slope agrees across the seam.
    eps = 1e-4
    near = interpolate_keyframes(keyframes, np.array([3 - eps, eps]))
    torch.testing.assert_close(
        (near[1] - keyframes[0]) / eps, (keyframes[0] - near[0]) / eps, atol=1e-3, rtol=1e-3
    )
    single = interpolate_keyframes(keyframes[:1], np.array([0.0, 0.7]))
    torch.testing.assert_close(single, keyframes[:1].expand(2, -1, -1))


def test_style_mix_replaces_only_the_chosen_layers():
    content, style = torch.zeros(1, 6, 3), torch.ones(1, 6, 3)
    mixed = style_mix(content, style, [4, 5])
    assert mixed[0, :4].abs().sum() == 0 and torch.all(mixed[0, 4:] == 1)
    with pytest.raises(ValueError, match="ws_style"):
        style_mix(content, torch.ones(1, 5, 3), [1])


def test_camera_preset_follows_the_rendering_settings():
    assert camera_preset_for(TriplaneGenerator(generator_preset("tiny-eg3d"))).name == "ffhq"
    cars = TriplaneGenerator(
        generator_preset(
            "eg3d-shapenet128", channel_base=256, channel_max=16, triplane_resolution=16, z_dim=8, w_dim=8
        )
    )
    assert camera_preset_for(cars).name == "shapenet"
    assert camera_preset_for(cars, "afhq").name == "afhq"
    with pytest.raises(ValueError, match="camera"):
        camera_preset_for(cars, "lsun")


def test_video_writer_pads_odd_sizes_and_keeps_frames(tmp_path):
    frames = np.zeros((3, 17, 31, 3), np.uint8)
    for k in range(3):
        frames[k, :, : 10 * (k + 1)] = 255  # a white bar that grows
    with VideoWriter(tmp_path / "odd.mp4", fps=10) as writer:
        for frame in frames:
            writer.append(frame)
        with pytest.raises(ValueError, match="size"):
            writer.append(np.zeros((18, 31, 3), np.uint8))
    decoded, fps = read_video(tmp_path / "odd.mp4")
    assert decoded.shape == (3, 18, 32, 3) and fps == 10
    assert np.abs(decoded[:, :17, :31].astype(int) - frames).mean() < 8  # lossy, but the same picture
    assert decoded[:, 17].max() < 40 and decoded[:, :, 31].max() < 40  # black padding
