"""EG3D-style pose samplers: determinism, radius, Gaussian statistics, sphere coverage, presets."""

from __future__ import annotations

import math

import pytest
import torch

from mimic3d.camera import (
    PRESETS,
    orbit_cam2world,
    sample_gaussian,
    sample_labels,
    sample_look_at,
    sample_uniform,
    validate_label,
)

N = 20000


def _eg3d_yaw_pitch(poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert EG3D's orbit: origin = r (sin phi cos(pi - h), cos phi, sin phi sin(pi - h))."""
    origin = poses[:, :3, 3].double()
    radius = origin.norm(dim=-1)
    yaw = math.pi - torch.atan2(origin[:, 2], origin[:, 0])
    pitch = math.pi / 2 * (1 - origin[:, 1] / radius)
    return yaw, pitch


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sampler", [sample_look_at, sample_gaussian, sample_uniform])
def test_deterministic_with_seeded_generator(sampler):
    a = sampler(8, yaw_mean=1.5, pitch_mean=1.4, radius=2.0, generator=_gen(5), **_spread(sampler))
    b = sampler(8, yaw_mean=1.5, pitch_mean=1.4, radius=2.0, generator=_gen(5), **_spread(sampler))
    c = sampler(8, yaw_mean=1.5, pitch_mean=1.4, radius=2.0, generator=_gen(6), **_spread(sampler))
    assert a.shape == (8, 4, 4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def _spread(sampler) -> dict[str, float]:
    if sampler is sample_uniform:
        return {"yaw_range": 0.5, "pitch_range": 0.3}
    return {"yaw_std": 0.5, "pitch_std": 0.3}


def test_look_at_keeps_radius_and_aims_at_pivot():
    pivot = torch.tensor([0.0, 0.0, 0.2])
    poses = sample_look_at(256, yaw_std=0.4, pitch_std=0.2, radius=2.7, pivot=pivot, generator=_gen(0))
    torch.testing.assert_close(poses[:, :3, 3].norm(dim=-1), torch.full((256,), 2.7))
    to_pivot = pivot - poses[:, :3, 3]
    torch.testing.assert_close(poses[:, :3, 2], to_pivot / to_pivot.norm(dim=-1, keepdim=True))
    centred = sample_gaussian(256, yaw_std=0.4, pitch_std=0.2, radius=1.3, generator=_gen(0))
    torch.testing.assert_close(centred[:, :3, 2], -centred[:, :3, 3] / 1.3)
    # Same draws, different pivot: only the viewing direction changes.
    torch.testing.assert_close(centred[:, :3, 3] / 1.3, poses[:, :3, 3] / 2.7)


def test_zero_spread_gives_the_mean_camera():
    poses = sample_look_at(3, 1.2, 1.7, radius=2.0, pivot=(0.0, 0.0, 0.2))
    torch.testing.assert_close(poses, orbit_cam2world(1.2, 1.7, 2.0, (0.0, 0.0, 0.2)).expand(3, 4, 4))


def test_gaussian_statistics():
    poses = sample_gaussian(N, 1.4, 1.7, yaw_std=0.3, pitch_std=0.15, generator=_gen(1))
    yaw, pitch = _eg3d_yaw_pitch(poses)
    # Standard error of the mean is std / sqrt(N) ~ 0.002; of the std ~ 0.5%.
    assert yaw.mean().item() == pytest.approx(1.4, abs=0.01)
    assert pitch.mean().item() == pytest.approx(1.7, abs=0.005)
    assert yaw.std().item() == pytest.approx(0.3, rel=0.03)
    assert pitch.std().item() == pytest.approx(0.15, rel=0.03)


def test_uniform_ranges():
    poses = sample_uniform(2000, 1.0, 1.2, yaw_range=0.2, pitch_range=0.1, generator=_gen(2))
    yaw, pitch = _eg3d_yaw_pitch(poses)
    assert yaw.min() >= 0.8 - 1e-4 and yaw.max() <= 1.2 + 1e-4
    assert pitch.min() >= 1.1 - 1e-4 and pitch.max() <= 1.3 + 1e-4
    assert yaw.std().item() == pytest.approx(0.2 / math.sqrt(3), rel=0.06)


def test_uniform_on_sphere_coverage():
    origin = sample_uniform(N, radius=1.5, generator=_gen(4))[:, :3, 3] / 1.5
    # Archimedes: the height of a uniform point on the sphere is uniform in [-1, 1].
    heights = torch.histc(origin[:, 1], bins=10, min=-1.0, max=1.0) / N
    torch.testing.assert_close(heights, torch.full((10,), 0.1), atol=0.012, rtol=0)
    octant = (origin > 0).long() @ torch.tensor([1, 2, 4])
    counts = torch.bincount(octant, minlength=8) / N
    torch.testing.assert_close(counts, torch.full((8,), 0.125), atol=0.012, rtol=0)
    assert origin.mean(0).abs().max() < 0.03


def test_sample_labels_from_presets():
    for name, preset in PRESETS.items():
        c = sample_labels(preset, 500, generator=_gen(7))
        validate_label(c, name=name)
        assert torch.allclose(c[:, 16], torch.tensor(preset.focal))
        radius = c[:, [3, 7, 11]].norm(dim=-1)
        torch.testing.assert_close(radius, torch.full((500,), preset.radius))
    shapenet = sample_labels(PRESETS["shapenet"], 2000, generator=_gen(8))
    assert (shapenet[:, 7] >= -1e-6).all()  # upper hemisphere only
    yaw = torch.atan2(shapenet[:, 11], shapenet[:, 3])
    assert yaw.min() < -3.0 and yaw.max() > 3.0  # all around the car


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sample_gaussian(-1), "batch_size: expected a non-negative int"),
        (lambda: sample_gaussian(2.5), "batch_size"),
        (lambda: sample_look_at(2, yaw_std=-0.1), "yaw spread: expected a finite value >= 0"),
        (lambda: sample_uniform(2, pitch_range=float("nan")), "pitch spread"),
        (lambda: sample_look_at(2, pivot=(0.0, 1.0)), "pivot: expected shape"),
    ],
)
def test_sampler_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
