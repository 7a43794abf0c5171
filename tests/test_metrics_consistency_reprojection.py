"""Reprojection error on ray-traced analytic spheres with exact depth, and on a tiny generator."""

from __future__ import annotations

import math

import pytest
import torch

from mimic3d.camera import CameraPreset, intrinsics_matrix, look_at, make_label, orbit_cam2world, split_label
from mimic3d.metrics.reprojection import (
    ReprojectionProtocol,
    generator_reprojection_error,
    project_points,
    reprojection_error,
)
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.render import generate_rays

RESOLUTION = 48
BIG = ((0.0, 0.0, 0.0), 0.35)
SMALL = ((0.29, 0.0, 0.53), 0.15)  # between camera B (yaw + 0.5) and BIG


def _label(yaw: float, pitch: float = math.pi / 2, focal: float = 2.0, target=(0.0, 0.0, 0.0)):
    pose = orbit_cam2world(torch.tensor(yaw), torch.tensor(pitch), 2.7)
    pose = look_at(pose[:3, 3], torch.tensor(target))
    return make_label(pose, intrinsics_matrix(focal))[None]


def _hit_distance(origins, directions, centre, radius):
    """Nearest positive ray/sphere intersection distance [N, M] (inf on a miss)."""
    offset = origins - torch.tensor(centre)
    b = (offset * directions).sum(-1)
    c = offset.square().sum(-1) - radius**2
    disc = b.square() - c
    t = -b - disc.clamp_min(0).sqrt()
    return torch.where((disc > 0) & (t > 0), t, torch.full_like(t, math.inf))


def _texture(points):
    x, y, z = points.unbind(-1)
    return torch.stack([
        0.5 + 0.3 * torch.sin(4 * x) * torch.cos(3 * y),
        0.5 + 0.3 * torch.sin(4 * y + 1) * torch.cos(2 * z),
        0.5 + 0.3 * torch.sin(4 * z + 2) * torch.cos(3 * x),
    ], -1)


def _trace(camera, spheres=(BIG,), view_noise=0.0, resolution=RESOLUTION):
    """Image [1, 3, R, R] in [-1, 1] (black background) and exact Euclidean depth [1, 1, R, R] (inf = miss).

    ``view_noise`` adds a colour term that depends on the viewing direction, i.e. a 3D-inconsistent one.
    """
    origins, directions = generate_rays(*split_label(camera.double()), resolution)
    depth = torch.stack([_hit_distance(origins, directions, c, r) for c, r in spheres]).min(0).values
    hit = torch.isfinite(depth)
    points = origins + torch.where(hit, depth, torch.zeros_like(depth))[..., None] * directions
    colour = _texture(points) + view_noise * torch.sin(25 * directions[..., :1] + 17 * directions[..., 1:2])
    image = torch.where(hit[..., None], colour * 2 - 1, torch.full_like(colour, -1.0))
    to_image = lambda x: x.reshape(1, resolution, resolution, -1).permute(0, 3, 1, 2).float()  # noqa: E731
    return to_image(image), to_image(depth[..., None])


def _surface_points(camera, depth):
    origins, directions = generate_rays(*split_label(camera.double()), depth.shape[-1])
    return origins + depth.reshape(1, -1, 1).double() * directions


def test_projection_inverts_ray_generation():
    camera = _label(1.9, 1.4, focal=3.0)
    camera[0, 17] = 0.05  # skew exercises the full intrinsics
    origins, directions = generate_rays(*split_label(camera.double()), 8)
    distance = torch.rand(1, 64, dtype=torch.float64) + 2
    uv, z, back = project_points(origins + distance[..., None] * directions, camera.double())
    centres = (torch.arange(8, dtype=torch.float64) + 0.5) / 8
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    assert torch.allclose(uv, torch.stack([u, v], -1).reshape(1, -1, 2), atol=1e-12)
    assert torch.allclose(back, distance, atol=1e-12)
    assert bool((z > 0).all())


def test_consistent_scene_reprojects_almost_exactly():
    camera_a, camera_b = _label(math.pi / 2), _label(math.pi / 2 + 0.35, math.pi / 2 - 0.15)
    (image_a, depth_a), (image_b, depth_b) = _trace(camera_a), _trace(camera_b)
    result = reprojection_error(image_a, depth_a, camera_a, image_b, camera_b, depth_b)
    assert result.valid_fraction.item() > 0.12  # the sphere covers ~21% of the frame
    assert result.psnr.item() > 40 and result.l1.item() < 3e-3
    same = reprojection_error(image_a, depth_a, camera_a, image_a, camera_a, depth_a)
    assert same.psnr.item() > 80
    assert torch.equal(same.mask, torch.isfinite(depth_a))


def test_error_grows_monotonically_with_view_dependent_noise():
    camera_a, camera_b = _label(math.pi / 2 - 0.2), _label(math.pi / 2 + 0.25)
    psnrs, l1s = [], []
    for noise in (0.0, 0.01, 0.03, 0.1, 0.3):
        image_a, depth_a = _trace(camera_a, view_noise=noise)
        image_b, depth_b = _trace(camera_b, view_noise=noise)
        result = reprojection_error(image_a, depth_a, camera_a, image_b, camera_b, depth_b)
        psnrs.append(result.psnr.item())
        l1s.append(result.l1.item())
    assert all(a > b for a, b in zip(psnrs, psnrs[1:])), psnrs
    assert all(a < b for a, b in zip(l1s, l1s[1:])), l1s
    assert psnrs[0] > 40 and psnrs[-1] < 25


def test_occluded_pixels_are_masked():
    camera_a, camera_b = _label(math.pi / 2 - 0.5), _label(math.pi / 2 + 0.5)
    (image_a, depth_a), (image_b, depth_b) = _trace(camera_a, (BIG, SMALL)), _trace(camera_b, (BIG, SMALL))
    points = _surface_points(camera_a, depth_a)
    origin_b = split_label(camera_b.double())[0][:, :3, 3]
    towards = points - origin_b[:, None]
    distance = towards.norm(dim=-1)
    has_surface = torch.isfinite(depth_a).view(1, -1)

    def hidden_from_b(spheres) -> torch.Tensor:
        """A's surface points that B's line of sight meets one of these spheres before."""
        origins = origin_b[:, None].expand_as(points)
        hits = [_hit_distance(origins, towards / distance[..., None], c, r) for c, r in spheres]
        return (has_surface & (torch.stack(hits).min(0).values < distance - 1e-3)).view_as(depth_a)

    covisible = torch.isfinite(depth_a) & ~hidden_from_b((BIG, SMALL))
    # Within a pixel of the occluder's silhouette in B, all bilinear taps may still see the big sphere
    # (and give its colour): only points hidden by a sphere 1.5 B-pixels smaller must be dropped.
    clearly_occluded = hidden_from_b([(SMALL[0], SMALL[1] - 1.5 * 2.5 / (2.0 * RESOLUTION))])
    assert clearly_occluded.sum() > 20
    result = reprojection_error(image_a, depth_a, camera_a, image_b, camera_b, depth_b)
    assert not bool((result.mask & clearly_occluded).any())
    assert result.psnr.item() > 40
    # Grazing points near B's silhouettes fail the bilinear depth test; most co-visible pixels remain.
    assert result.mask.sum() > 0.5 * covisible.sum()
    blind = reprojection_error(image_a, depth_a, camera_a, image_b, camera_b)
    assert bool((blind.mask & clearly_occluded).any()) and blind.psnr.item() < result.psnr.item() - 10


def test_out_of_frame_pixels_are_masked():
    camera_a = _label(math.pi / 2, focal=2.0)
    camera_b = _label(math.pi / 2 + 0.2, focal=3.5, target=(0.25, 0.1, 0.0))  # sees only part of the sphere
    (image_a, depth_a), (image_b, depth_b) = _trace(camera_a), _trace(camera_b)
    uv, _, _ = project_points(_surface_points(camera_a, depth_a), camera_b.double())
    outside = (torch.isfinite(depth_a).view(1, -1) & ((uv < 0) | (uv > 1)).any(-1)).view_as(depth_a)
    assert outside.sum() > 50
    for depth_b_or_none in (depth_b, None):
        result = reprojection_error(image_a, depth_a, camera_a, image_b, camera_b, depth_b_or_none)
        assert not bool((result.mask & outside).any())
        assert bool((result.warped[result.mask.expand_as(result.warped).logical_not()] == -1).all())
        if depth_b_or_none is not None:
            assert result.psnr.item() > 40


def test_max_depth_drops_far_pixels():
    camera = _label(math.pi / 2)
    image, depth = _trace(camera)
    result = reprojection_error(image, depth, camera, image, camera, max_depth=2.5)
    assert torch.equal(result.mask, torch.isfinite(depth) & (depth < 2.5))


def test_bad_inputs_are_named():
    camera = _label(math.pi / 2)
    image, depth = _trace(camera, resolution=16)
    with pytest.raises(ValueError, match="image_a"):
        reprojection_error(image[..., :8], depth, camera, image, camera)
    with pytest.raises(ValueError, match="depth_a"):
        reprojection_error(image, depth[..., :8, :8], camera, image, camera)
    with pytest.raises(ValueError, match="depth_b"):
        reprojection_error(image, depth, camera, image, camera, depth_b=depth[:, :, :4])
    with pytest.raises(ValueError, match="camera_a"):
        reprojection_error(image, depth, camera[:, :24], image, camera)
    with pytest.raises(ValueError, match="camera_b: 2 labels for 1 image_b"):
        reprojection_error(image, depth, camera, image, torch.cat([camera, camera]))
    with pytest.raises(ValueError, match="camera_b: labels contain non-finite"):
        reprojection_error(image, depth, camera, image, camera * math.nan)
    with pytest.raises(ValueError, match="image_b"):
        reprojection_error(image, depth, camera, image[:, :1], camera)
    with pytest.raises(ValueError, match="depth_tolerance"):
        reprojection_error(image, depth, camera, image, camera, depth_b=depth, depth_tolerance=0.0)
    with pytest.raises(ValueError, match="branch"):
        ReprojectionProtocol(branch="4d")
    with pytest.raises(ValueError, match="pairs_per_subject"):
        ReprojectionProtocol(pairs_per_subject=0)
    with pytest.raises(ValueError, match="G"):
        generator_reprojection_error(torch.nn.Linear(2, 2), ReprojectionProtocol(num_subjects=1))


@pytest.fixture(scope="module")
def tiny_generator() -> TriplaneGenerator:
    torch.manual_seed(0)
    return TriplaneGenerator(generator_preset("tiny-mimic3d")).eval()


@pytest.mark.parametrize("branch", ["2d", "3d"])
def test_generator_driver_on_both_branches(tiny_generator, branch):
    preset = CameraPreset("test", focal=2.0, radius=2.7, pivot=(0.0, 0.0, 0.0), yaw_std=0.3, pitch_std=0.15)
    same_view = ReprojectionProtocol(num_subjects=1, pairs_per_subject=2, branch=branch, max_yaw=0.0,
                                     max_pitch=0.0, preset=preset)
    identical = generator_reprojection_error(tiny_generator, same_view)
    assert bool((identical.psnr > 60).all()) and bool((identical.valid_fraction > 0.5).all())
    moved = generator_reprojection_error(tiny_generator, ReprojectionProtocol(
        num_subjects=2, pairs_per_subject=2, branch=branch, max_yaw=0.4, preset=preset, depth_tolerance=0.05))
    assert moved.psnr.shape == (4,)
    summary = moved.as_dict()
    assert math.isfinite(summary["reprojection_psnr"]) and summary["reprojection_psnr"] < 60
    assert 0 < summary["reprojection_valid_fraction"] < 1
