"""The inversion's parts against known answers: regularisers, schedules, latent and camera statistics,
cameras, the pose search, PTI's locality ball, checkpoint camera metadata."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from inversion_support import PRESET, structured_generator, true_latent
from numerics import assert_close, fan_in_sum
from training_support import tiny_config, write_random_dataset

import mimic3d
from mimic3d.camera import (
    PRESETS,
    camera_statistics,
    look_at,
    look_at_pivot,
    orbit_angles,
    orbit_cam2world,
    sample_labels,
)
from mimic3d.checkpoints.load import checkpoint_metadata
from mimic3d.inversion import (
    InversionConfig,
    LocalityRegularizer,
    OrbitCameras,
    ProjectorSchedule,
    ReconstructionLoss,
    Targets,
    candidate_poses,
    fit_latent,
    invert_targets,
    latent_statistics,
    model_camera,
    noise_regularization,
    pivotal_tuning,
    psnr,
    render_views,
    search_cameras,
)
from mimic3d.inversion.api import resolve_config
from mimic3d.inversion.cameras import conditioning_camera
from mimic3d.inversion.objectives import normalize_noise_
from mimic3d.losses import LPIPS
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.viewpoints import orbit_labels

EPS = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def G():
    return structured_generator("tiny-eg3d")


@pytest.fixture(scope="module")
def stats(G):
    return latent_statistics(G, conditioning_camera(PRESET, G.c_dim), samples=200)


# ----------------------------------------------------------------------------- objectives and schedules


def test_noise_regularization_on_analytic_maps():
    ones = torch.ones(16, 16)
    # 16^2 then 8^2 (where it stops): two shifted products of mean 1 at each level.
    assert float(noise_regularization([ones])) == 4.0
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1
    # Shifted products are -1 everywhere at 16^2; the 2x2 average of a checkerboard is 0 at 8^2.
    assert float(noise_regularization([checker])) == 2.0
    noise = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    assert float(noise_regularization([noise])) < 1e-2  # white noise: nearly uncorrelated
    maps = [torch.rand(8, 8) * 3 + 2, torch.rand(16, 16) - 4]
    normalize_noise_(maps)
    for m in maps:
        # Mean of 64..256 values then a rescale: a few eps of O(1) terms.
        assert abs(float(m.mean())) < 64 * EPS and abs(float(m.square().mean()) - 1) < 64 * EPS


def test_projector_schedule_matches_its_formulas():
    schedule = ProjectorSchedule()
    assert schedule.learning_rate(0.0) == 0.0  # ramp-up starts at zero
    assert schedule.learning_rate(0.05) == pytest.approx(0.1)
    assert schedule.learning_rate(0.5) == pytest.approx(0.1)
    assert schedule.learning_rate(0.875) == pytest.approx(0.05)  # half-way down the cosine
    assert schedule.latent_noise(0.0, 2.0) == pytest.approx(0.1)  # w_std * 0.05
    assert schedule.latent_noise(0.375, 2.0) == pytest.approx(0.1 * 0.25)
    assert schedule.latent_noise(0.8, 2.0) == 0.0


def test_psnr_and_reconstruction_loss():
    a = torch.zeros(2, 3, 16, 16)
    b = torch.full((2, 3, 16, 16), 0.2)
    assert torch.allclose(psnr(a, b), torch.full((2,), 10 * math.log10(4 / 0.04)))
    # Both clip to 1: identical, so the MSE floor (1e-20) decides: 206 dB.
    assert (psnr(torch.full_like(a, 5.0), torch.ones_like(a)) > 200).all()
    targets = torch.rand(2, 3, 16, 16) * 2 - 1
    l2_only = ReconstructionLoss(targets, None, lpips_weight=0.0, l2_weight=1.0)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    views = torch.tensor([1, 0, 1])
    terms = l2_only.terms(images, views)
    assert torch.allclose(terms.total, (images - targets[views]).square().mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match="pass views"):
        l2_only(images)
    with pytest.raises(ValueError, match="lpips"):
        ReconstructionLoss(targets, None)
    lpips = LPIPS.untrained(0)
    both = ReconstructionLoss(targets, lpips, lpips_weight=2.0, l2_weight=0.5)
    expected = 2.0 * lpips(images[:2], targets) + 0.5 * (images[:2] - targets).square().mean(dim=(1, 2, 3))
    # The same LPIPS network run twice: its reductions, in another blocking.
    assert_close(both.terms(images[:2]).total, expected, terms=fan_in_sum(lpips))


# ----------------------------------------------------------------------------- latents


def test_latent_statistics_in_batches_match_one_pass(G):
    c = conditioning_camera(PRESET, G.c_dim)
    stats = latent_statistics(G, c, samples=50, batch=16)
    z = torch.from_numpy(np.random.RandomState(123).randn(50, G.z_dim)).float()
    w = G.mapping(z, c.expand(50, -1))[:, :1]
    w_avg = w.mean(0, keepdim=True)
    # Same mapping per sample; a mean of 50 O(1) values in another order.
    assert torch.allclose(stats.w_avg, w_avg, rtol=1e-5, atol=50 * EPS)
    assert stats.w_std == pytest.approx(float((w - w_avg).square().sum(-1).mean().sqrt()), rel=1e-5)
    assert stats.num_ws == G.num_ws and stats.broadcast().shape == (1, G.num_ws, G.w_dim)


def test_fit_latent_spaces_and_zero_steps(G, stats):
    labels = orbit_labels([math.pi / 2], math.pi / 2, PRESET)
    with torch.no_grad():
        targets = render_views(G, true_latent(G), labels)
    loss = ReconstructionLoss(targets, None, lpips_weight=0.0)
    work = copy.deepcopy(G)
    start = fit_latent(work, loss, labels, stats, "w+", steps=0, progress=False)
    assert torch.equal(start.ws, stats.broadcast()) and start.losses == []
    fit = fit_latent(work, loss, labels, stats, "w", steps=4, progress=False)
    assert fit.ws.shape == (1, G.num_ws, G.w_dim)
    assert torch.equal(fit.ws, fit.ws[:, :1].expand_as(fit.ws))  # one code for every layer
    assert len(fit.losses) == 4
    with pytest.raises(ValueError, match="space"):
        fit_latent(work, loss, labels, stats, "z", steps=1, progress=False)


# ----------------------------------------------------------------------------- cameras


def test_orbit_angles_invert_the_orbit():
    yaw = torch.tensor([0.3, 1.57, 2.9, 4.0], dtype=torch.float64)
    pitch = torch.tensor([0.2, 1.57, 1.0, 2.8], dtype=torch.float64)
    radius = torch.tensor([1.0, 2.7, 1.7, 3.0], dtype=torch.float64)
    got = orbit_angles(orbit_cam2world(yaw, pitch, radius, (0.0, 0.0, 0.2)))
    for value, expected in zip(got, (yaw, pitch, radius)):
        assert torch.allclose(value, expected, atol=1e-12)  # float64 trigonometry round trip


def test_look_at_pivot_is_exact_for_cameras_aiming_at_one_point():
    generator = torch.Generator().manual_seed(0)
    origins = torch.randn(12, 3, generator=generator, dtype=torch.float64) * 3
    target = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    pivot = look_at_pivot(look_at(origins, target))
    assert torch.allclose(pivot, target, atol=1e-5)  # the ridge biases it by ~1e-6 of |target|


def test_camera_statistics_recover_the_presets():
    generator = torch.Generator().manual_seed(0)
    face = camera_statistics(sample_labels(PRESETS["ffhq"], 2000, generator))
    assert face.distribution == "gaussian"
    assert face.focal == pytest.approx(4.2647, rel=1e-6) and face.radius == pytest.approx(2.7, rel=1e-6)
    assert np.allclose(face.pivot, (0.0, 0.0, 0.2), atol=1e-4)
    # Sampling error of 2000 draws: std error ~ std / sqrt(2 N) ~ 0.005 for the yaw.
    assert face.yaw_std == pytest.approx(0.3, abs=0.02) and face.pitch_std == pytest.approx(0.155, abs=0.015)
    assert face.yaw_mean == pytest.approx(math.pi / 2, abs=0.02)
    cars = camera_statistics(sample_labels(PRESETS["shapenet"], 2000, generator))
    assert cars.distribution == "uniform" and cars.yaw_std == math.pi
    assert cars.focal == pytest.approx(1.7074, rel=1e-6) and np.allclose(cars.pivot, 0.0, atol=1e-4)
    with pytest.raises(ValueError, match="labels"):
        camera_statistics(torch.zeros(0, 25))


def test_orbit_cameras_render_labels_and_carry_gradients():
    cams = OrbitCameras(torch.tensor([1.8, 1.4]), torch.tensor([1.5, 1.7]), torch.tensor(2.7), PRESET)
    expected = orbit_labels([1.8, 1.4], [1.5, 1.7], PRESET)
    assert torch.allclose(cams(), expected, atol=16 * EPS)  # exp(log(2.7)) and look-at in float32
    cams = cams.double()
    yaw = cams.yaw.detach().clone()

    def x_position(value):
        cams.yaw.data.copy_(value)
        return cams()[:, 3].sum()

    step = 1e-6
    numeric = (x_position(yaw + step) - x_position(yaw - step)) / (2 * step)
    cams.yaw.data.copy_(yaw)
    cams.zero_grad()
    cams()[:, 3].sum().backward()
    assert torch.allclose(cams.yaw.grad.sum(), numeric, rtol=1e-6)


def test_candidate_poses_follow_the_statistics():
    yaw, pitch = candidate_poses(PRESET, yaws=5, pitches=3)
    assert yaw.shape == (15,)
    assert torch.allclose(yaw.unique(), PRESET.yaw_mean + PRESET.yaw_std * torch.linspace(-2, 2, 5))
    assert torch.allclose(pitch.unique(), PRESET.pitch_mean + PRESET.pitch_std * torch.linspace(-1.5, 1.5, 3))
    cars_yaw, _ = candidate_poses(PRESETS["shapenet"], yaws=8, pitches=1)
    # Angles up to 2 pi, shifted by the smallest: errors of the size of the largest angle.
    steps = cars_yaw.unique() - cars_yaw.min()
    assert_close(steps, torch.arange(8) * math.pi / 4, terms=3, scale=float(cars_yaw.abs().max()))
    fixed = dataclasses.replace(PRESET, yaw_std=0.0, pitch_std=0.0)
    assert candidate_poses(fixed)[0].shape == (1,)


def test_search_finds_the_candidate_a_target_was_rendered_from(G, stats):
    yaw, pitch = candidate_poses(PRESET)
    truth = [4, 17]
    with torch.no_grad():
        targets = render_views(G, stats.broadcast(), orbit_labels(yaw[truth], pitch[truth], PRESET))
    loss = ReconstructionLoss(targets, LPIPS.untrained(0))
    found_yaw, found_pitch = search_cameras(G, stats.broadcast(), loss, PRESET, views=2)
    assert torch.equal(found_yaw, yaw[truth]) and torch.equal(found_pitch, pitch[truth])


def test_model_camera_reads_the_checkpoint_or_names_its_assumption(G, tmp_path):
    stored = dataclasses.asdict(dataclasses.replace(PRESETS["afhq"], name="cats"))
    preset, source = model_camera(G, {"camera": stored})
    assert preset.pivot == PRESETS["afhq"].pivot and "cats" in source
    preset, source = model_camera(G, {})
    assert preset == PRESETS["ffhq"] and "no camera statistics" in source and "'ffhq'" in source
    assert model_camera(G, {"camera": stored}, "shapenet")[0] == PRESETS["shapenet"]
    with pytest.raises(ValueError, match="checkpoint metadata 'camera'.focal"):
        model_camera(G, {"camera": {**stored, "focal": "long"}})
    for path in (tmp_path / "g.safetensors", tmp_path / "folder"):
        mimic3d.save(path, G, metadata={"camera": stored, "step": 3})
        assert checkpoint_metadata(path) == {"camera": json_ready(stored), "step": 3}
    assert checkpoint_metadata(tmp_path / "folder" / "G_ema") == {}


def test_trainer_stores_the_training_set_camera_statistics(tmp_path):
    from mimic3d.training.loop import Trainer

    dataset = write_random_dataset(tmp_path / "data")
    trainer = Trainer(tiny_config("eg3d", dataset), tmp_path / "run", progress_bar=False)
    folder = trainer.save()
    stored = checkpoint_metadata(folder)["camera"]
    expected = camera_statistics(trainer.dataset.labels, "data")
    assert stored == json_ready(dataclasses.asdict(expected))
    assert model_camera(mimic3d.load(folder), checkpoint_metadata(folder))[0] == expected


def json_ready(record):
    """A record as JSON gives it back: tuples become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


# ----------------------------------------------------------------------------- pivotal tuning


def test_locality_ball_and_regulariser(G, stats):
    c = conditioning_camera(PRESET, G.c_dim)
    regularizer = LocalityRegularizer(G, stats, PRESET, c, LPIPS.untrained(0), radius=0.5, samples=3)
    pivot = true_latent(G)
    ws = regularizer.ball_latents(pivot, torch.Generator().manual_seed(0))
    distance = (ws - pivot).flatten(1).norm(dim=1)
    assert torch.allclose(distance, torch.full((3,), 0.5 * stats.w_std * G.num_ws**0.5), rtol=1e-5)
    same = regularizer(G, pivot, torch.Generator().manual_seed(1))
    assert float(same) < 1e-10  # the reference itself: identical renders
    moved = copy.deepcopy(G)
    with torch.no_grad():
        moved.decoder.net[0].bias.add_(0.5)
    assert float(regularizer(moved, pivot, torch.Generator().manual_seed(1))) > 1e-4


def test_pivotal_tuning_tunes_a_copy_and_keeps_the_mapping(G):
    labels = orbit_labels([math.pi / 2], math.pi / 2, PRESET)
    pivot = true_latent(G, seed=3)
    with torch.no_grad():
        targets = render_views(G, true_latent(G, seed=4), labels)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    result = pivotal_tuning(G, pivot, labels, ReconstructionLoss(targets, None, 0.0), steps=3, progress=False)
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())
    tuned = result.generator.state_dict()
    assert not torch.equal(tuned["decoder.net.0.weight"], before["decoder.net.0.weight"])
    assert all(torch.equal(tuned[k], v) for k, v in before.items() if k.startswith("backbone.mapping"))
    assert not result.generator.training and not any(p.requires_grad for p in result.generator.parameters())
    assert result.losses[-1] < result.losses[0]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="method"):
        InversionConfig(method="z")
    with pytest.raises(ValueError, match="pti_steps"):
        InversionConfig(pti_steps=-1)
    with pytest.raises(ValueError, match="camera_lr"):
        InversionConfig(camera_lr=-0.1)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['step'\]"):
        resolve_config(None, {"step": 3})
    assert resolve_config(None, {"steps": 3}).steps == 3


def test_epigraf_generators_invert_through_the_same_api():
    # EpiGRAF (its decoder, integration, sphere background and class labels) renders ws through
    # G.synthesis like EG3D; w_avg and PTI's ball draw classes uniformly. Its cameras: the preset its
    # rendering settings imply.
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("tiny-epigraf-bg", class_dim=3)).eval().requires_grad_(False)
    preset, _ = model_camera(G, {})
    assert preset.name == "epigraf-megascans"
    labels = sample_labels(preset, 1, torch.Generator().manual_seed(0))
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ws = G.mapping(z, conditioning_camera(preset, G.c_dim), labels=torch.eye(3)[1:2])
        targets = Targets(render_views(G, ws, labels).clamp(-1, 1), labels)
    config = InversionConfig(pivot="w+", steps=10, pti_steps=5, pti_lr=2e-3, w_avg_samples=200)
    result = invert_targets(G, targets, preset, config, LPIPS.untrained(0), progress=False)
    assert result.psnr["final"][0] > result.psnr["w_avg"][0] + 3.0, result.psnr
