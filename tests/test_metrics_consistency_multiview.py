"""PSNR_mv / SSIM_mv: a tri-plane fit explains an analytic (3D-consistent) scene, not a view-dependent one."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from mimic3d.camera import CameraPreset, intrinsics_matrix, make_label, orbit_cam2world, split_label
from mimic3d.metrics.multiview import (
    MultiviewProtocol,
    TriplaneFitConfig,
    fit_triplane,
    generator_multiview_consistency,
    multiview_consistency,
)
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.render import RenderConfig, TriplaneRenderer, generate_rays

RESOLUTION = 32
RENDER = RenderConfig(ray_start=2.0, ray_end=3.4, num_coarse=16, num_importance=16, convention="xyz")
# Yaw/pitch offsets from frontal; the last-but-two and last-but-one views lie between fitted ones.
YAW = [-0.8, -0.4, 0.0, 0.4, 0.8, -0.6, 0.6, 0.0, -0.2, 0.2]
PITCH = [0.0, 0.25, 0.0, -0.25, 0.0, -0.2, 0.2, 0.3, 0.0, 0.0]
HELD_OUT = [8, 9]
FIT = TriplaneFitConfig(steps=200, rays_per_step=256, plane_resolution=32, plane_channels=8, hidden_dim=32)


def _sphere_field(points: torch.Tensor):
    """A soft sphere of radius 0.35 with a smooth colour texture (a sum of plane-pair functions)."""
    x, y, z = points.unbind(-1)
    colour = torch.stack([
        0.5 + 0.3 * torch.sin(4 * x) * torch.cos(3 * y),
        0.5 + 0.3 * torch.sin(4 * y + 1) * torch.cos(2 * z),
        0.5 + 0.3 * torch.sin(4 * z + 2) * torch.cos(3 * x),
    ], -1)
    return colour, 30 * (0.35 - points.norm(dim=-1, keepdim=True)) + 1


def _views(view_noise: float = 0.0):
    cameras = make_label(
        orbit_cam2world(torch.tensor(YAW) + math.pi / 2, torch.tensor(PITCH) + math.pi / 2, 2.7),
        intrinsics_matrix(2.0),
    )
    origins, directions = generate_rays(*split_label(cameras), RESOLUTION)
    fine = TriplaneRenderer(RenderConfig(ray_start=2.0, ray_end=3.4, num_coarse=32, num_importance=32,
                                         perturb=False))
    rgb = fine.render_field(_sphere_field, origins, directions).features
    # A 3D-inconsistent variant: a colour term that follows the camera, not the surface.
    rgb = rgb + view_noise * torch.sin(25 * directions[..., :1] + 17 * directions[..., 1:2])
    return rgb.permute(0, 2, 1).reshape(-1, 3, RESOLUTION, RESOLUTION), cameras


def test_fit_explains_a_consistent_scene_on_fitted_and_held_out_views():
    images, cameras = _views()
    score = multiview_consistency(images, cameras, HELD_OUT, RENDER, FIT)
    assert score.psnr_fitted > 35 and score.psnr_held_out > 35, score
    assert score.ssim_fitted > 0.95 and score.ssim_held_out > 0.95, score
    assert score.held_out == (8, 9) and score.psnr_per_view.shape == (10,)


def test_view_dependent_noise_lowers_the_score():
    quick = replace(FIT, steps=40, rays_per_step=128)
    clean = multiview_consistency(*_views(), HELD_OUT, RENDER, quick)
    noisy = multiview_consistency(*_views(view_noise=0.3), HELD_OUT, RENDER, quick)
    assert noisy.psnr_fitted < clean.psnr_fitted - 5, (clean, noisy)
    assert noisy.ssim_fitted < clean.ssim_fitted


def test_protocol_holds_out_interior_grid_views():
    yaw, pitch, held = MultiviewProtocol(yaw_views=7, pitch_views=3).view_grid()
    assert yaw.shape == pitch.shape == (21,)
    assert held == (4, 10, 16)  # yaw index 1, 3, 5 at the middle pitch
    assert float(pitch[4]) == pytest.approx(math.pi / 2) and float(yaw[10]) == pytest.approx(math.pi / 2)


def test_generator_driver_runs_on_both_branches():
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("tiny-mimic3d")).eval()
    preset = CameraPreset("test", focal=2.0, radius=2.7, pivot=(0.0, 0.0, 0.0), yaw_std=0.3, pitch_std=0.15)
    fit = TriplaneFitConfig(steps=3, rays_per_step=64, plane_resolution=8, plane_channels=4, hidden_dim=8)
    for branch in ("2d", "3d"):
        protocol = MultiviewProtocol(num_subjects=2, branch=branch, yaw_views=3, pitch_views=1, preset=preset,
                                     fit=fit, resolution=16)
        summary = generator_multiview_consistency(G, protocol)
        assert len(summary.subjects) == 2 and summary.subjects[0].held_out == (1,)
        assert set(summary.mean) == {"psnr_mv", "ssim_mv", "psnr_mv_held_out", "ssim_mv_held_out"}
        assert all(math.isfinite(value) for value in summary.mean.values()), summary.mean


def test_bad_inputs_are_named():
    images, cameras = _views()
    with pytest.raises(ValueError, match="held_out"):
        multiview_consistency(images, cameras, range(10), RENDER, FIT)
    with pytest.raises(ValueError, match="held_out"):
        multiview_consistency(images, cameras, [10], RENDER, FIT)
    with pytest.raises(ValueError, match="SSIM window"):
        multiview_consistency(images[..., :8, :8], cameras, [0], RENDER, FIT)
    with pytest.raises(ValueError, match="cameras"):
        multiview_consistency(images, cameras[:5], [0], RENDER, FIT)
    with pytest.raises(ValueError, match="RGB"):
        fit_triplane(images[:, :1], cameras, RENDER, FIT)
    with pytest.raises(ValueError, match="render"):
        fit_triplane(images, cameras, {"ray_start": 2.0}, FIT)
    with pytest.raises(ValueError, match="steps"):
        TriplaneFitConfig(steps=0)
    with pytest.raises(ValueError, match="final_lr_fraction"):
        TriplaneFitConfig(final_lr_fraction=0.0)
    with pytest.raises(ValueError, match="resolution"):
        MultiviewProtocol(resolution=8)
    with pytest.raises(ValueError, match="branch"):
        MultiviewProtocol(branch="2.5d")
