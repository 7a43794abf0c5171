"""EpiGRAF patch-wise training in the shared Trainer, and its patches inside Mimic3D."""

from __future__ import annotations

import math

import pytest
import torch
from training_support import (
    RESUME_OVERRIDES,
    assert_identical_states,
    tiny_config,
    training_state,
    write_random_dataset,
)

import mimic3d
from mimic3d.camera import PRESETS, split_label, to_angles
from mimic3d.models.patch_discriminator import HyperModulatedPatchDiscriminator
from mimic3d.training.data import PresetCameraSampler
from mimic3d.training.loop import Trainer
from mimic3d.training.patches import PixelWindows, ScaledPatches
from mimic3d.training.presets import load_config
from mimic3d.training.schedule import progress_at
from mimic3d.training.snapshot import latest_snapshot, load_snapshot, resolve_snapshot


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_random_dataset(tmp_path_factory.mktemp("training_epigraf") / "data")


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _moved(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def test_patch_wise_step_runs_epigraf_phases_on_scaled_patches(dataset, tmp_path):
    config = tiny_config("epigraf", dataset, "patches.anneal_kimg=0")
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    assert isinstance(trainer.nets.D, HyperModulatedPatchDiscriminator) and trainer.nets.D_patch is None
    assert [(p.name, p.interval) for p in trainer.phases] == [("Gmain", 1), ("Dmain", 1), ("Dreg", 16)]
    assert trainer.branches == ("3d",)
    draws = []
    draw = trainer.loss.draw

    def spy(batch, progress, device):
        draws.append(draw(batch, progress, device))
        return draws[-1]

    trainer.loss.draw = spy
    before = {name: _params(m) for name, m in trainer.nets.named().items()}
    objectives = trainer.train_step()
    assert list(objectives) == ["Gmain", "Dmain", "Dreg"]
    assert all(torch.isfinite(torch.tensor(v)) for v in objectives.values())
    assert _moved(before["G"], trainer.nets.G) and _moved(before["D"], trainer.nets.D)
    # Gmain's fakes, Dmain's fakes and reals, Dreg's reals: four independent draws, fully annealed.
    assert len(draws) == 4 and all(isinstance(d, ScaledPatches) for d in draws)
    r_over_R = config.loss.patch_resolution / config.generator.img_resolution
    scales = torch.stack([d.scale for d in draws])
    assert (scales >= r_over_R).all() and (scales <= 1).all()
    assert len({tuple(d.offset.flatten().tolist()) for d in draws}) == 4
    stats = trainer.stats.reduce()
    for key in ("Loss/G/loss", "Loss/D/loss", "Loss/D/reg", "Patches/fake_scale", "Patches/real_scale"):
        assert stats[key]["num"] > 0, key
    trainer.monitor.close()


@pytest.mark.parametrize("family", ["epigraf", "epigraf-cars"])
def test_tiny_epigraf_run_writes_snapshots_pictures_and_logs(dataset, tmp_path, family):
    config = tiny_config(family, dataset, "run.grid_size=2", "run.video_frames=2")
    trainer = Trainer(config, tmp_path / family, progress_bar=False)
    if family.endswith("cars"):  # fakes' cameras all around the car, from the full-circle sampler
        assert isinstance(trainer.labels, PresetCameraSampler)
        angles, radius = to_angles(split_label(trainer.labels.sample(2000))[0])
        torch.testing.assert_close(radius, torch.full([2000], 1.7), rtol=1e-5, atol=0)  # float32 norm
        assert angles[:, 0].min() < -3.0 and angles[:, 0].max() > 3.0 and angles[:, 1].max() < math.pi / 2
    result = trainer.run(max_steps=2)
    assert result.status == "max_steps" and result.snapshot == latest_snapshot(tmp_path / family)
    assert list((tmp_path / family / "images").glob("*-grid.png"))
    assert list((tmp_path / family / "videos").glob("*.mp4"))
    assert list((tmp_path / family).glob("**/events.out.tfevents.*"))
    networks, _, state = load_snapshot(result.snapshot)
    assert isinstance(networks["D"], HyperModulatedPatchDiscriminator)
    G = mimic3d.load(result.snapshot)
    c = PRESETS["shapenet" if family.endswith("cars") else "ffhq"].frontal_label()[None]
    image = G(torch.randn(1, G.z_dim), c, branch="3d")["image"]
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()


def test_epigraf_resume_is_exact(dataset, tmp_path):
    config = tiny_config("epigraf", dataset, *RESUME_OVERRIDES)
    straight = Trainer(config, tmp_path / "straight", progress_bar=False)
    straight.run(max_steps=4)
    first = Trainer(config, tmp_path / "split", progress_bar=False)
    first.run(max_steps=2)
    snapshot, run_dir = resolve_snapshot(tmp_path / "split")
    second = Trainer(config, run_dir, resume=snapshot, progress_bar=False)
    second.run(max_steps=4)
    expected = training_state(straight)
    assert float(expected["augment_p"]) != 0.5  # ADA moved p: its state matters for the comparison
    assert_identical_states(training_state(second), expected)


def test_mimic3d_3d_branch_with_beta_patches_and_the_scale_aware_d(dataset, tmp_path):
    config = tiny_config(
        "e2e",
        dataset,
        "patches.distribution=beta",
        "patches.anneal_kimg=0",
        "patch_discriminator=null",
        "hyper_discriminator.img_resolution=32",
        "hyper_discriminator.patch_resolution=16",
        "hyper_discriminator.channel_base=64",
        "hyper_discriminator.channel_max=8",
        "hyper_discriminator.hyper_mod_dim=8",
        "hyper_discriminator.patch_embed_dim=4",
        "hyper_discriminator.num_fp16_res=0",
        "hyper_discriminator.conv_clamp=null",
        "hyper_discriminator.mbstd_group_size=2",
    )
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    assert isinstance(trainer.nets.D_patch, HyperModulatedPatchDiscriminator)
    placed = []
    place = trainer.loss.place_patches

    def spy(*args):
        placed.append(place(*args))
        return placed[-1]

    trainer.loss.place_patches = spy
    teachers = []
    crop = ScaledPatches.crop

    def recording_crop(self, images):
        out = crop(self, images)
        teachers.append((self, images, out))
        return out

    before = _params(trainer.nets.D_patch)
    ScaledPatches.crop = recording_crop
    try:
        trainer.train_step()
    finally:
        ScaledPatches.crop = crop
    # Gmain's 3D patch, Dpatch_main's fake and real, Dpatch_reg's real: all scaled, none a window.
    assert len(placed) == 4 and all(isinstance(p, ScaledPatches) for p in placed)
    assert any(bool((p.scale > 0.5 + 1e-3).any()) for p in placed)  # larger than the fixed window
    # The teacher is the 2D image cut at the 3D patch's own placement.
    assert teachers[0][0] is placed[0] and teachers[0][1].shape[-1] == 32
    assert _moved(before, trainer.nets.D_patch)
    stats = trainer.stats.reduce()
    assert stats["Loss/G/imitation"]["num"] > 0 and stats["Loss/D_patch/reg"]["num"] > 0
    trainer.monitor.close()


def test_mimic3d_windows_stay_the_default(dataset, tmp_path):
    trainer = Trainer(tiny_config("e2e", dataset), tmp_path / "run", progress_bar=False)
    # Without a scaled distribution the loss places Mimic3D's fixed-scale pixel windows.
    where = trainer.loss.place_patches(4, 32, progress_at(trainer.config, 0), torch.device("cpu"))
    assert isinstance(where, PixelWindows) and where.size == 16
    trainer.monitor.close()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["hyper_discriminator=null"], "hyper_discriminator: patch-wise training"),
        (["patches.distribution=window"], "patches.distribution=window: patch-wise training draws scaled"),
        (["patches.min_scale=0.25"], "patches.min_scale"),
        (["loss.density_reg=0.25"], "loss.density_reg=0.25: EpiGRAF has no density regulariser"),
        (["loss.patch_gan=0.1"], "patch_discriminator: patch-wise training has no 3D-branch terms"),
        (
            ["hyper_discriminator.img_resolution=64"],
            "hyper_discriminator.img_resolution=64: 64 differs from generator",
        ),
        (["data.gen_cameras=moon"], "data.gen_cameras"),
        (["patches.beta_end=0"], "patches.beta_end"),
        (["run.batch_size=6"], "run.batch_size=6: chunks of 6 .* hyper_discriminator.mbstd_group_size=4"),
    ],
)
def test_bad_patch_wise_configs_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config("tiny-epigraf-heads", ["data.path=x", "patches.min_scale=null", *overrides])


def test_mimic3d_with_both_patch_discriminators_is_refused():
    hyper = ["hyper_discriminator.img_resolution=32", "hyper_discriminator.patch_resolution=16"]
    with pytest.raises(ValueError, match="D\\^3D is either patch_discriminator or hyper_discriminator"):
        load_config("tiny-mimic3d-heads", ["data.path=x", *hyper])


def test_epigraf_schedules_anneal_scales_and_density_noise(dataset, tmp_path):
    config = tiny_config("epigraf", dataset)  # beta and density noise both over 5 kimg
    assert config.patches.anneal_kimg == config.schedule.density_noise_kimg == 5
    for kimg, beta, noise in [(0, 0.001, 1.0), (2.5, 0.001 + 0.799 / 2, 0.5), (5, 0.8, 0.0), (9, 0.8, 0.0)]:
        progress = progress_at(config, int(kimg * 1000))
        assert progress.patch_scales.beta == pytest.approx(beta, rel=1e-12)
        assert progress.patch_scales.floor == config.min_patch_scale == 0.5  # 16 / 32
        assert progress.density_noise_std == pytest.approx(noise, rel=1e-12)
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    trainer.cur_nimg = 2500
    trainer.train_step()
    assert trainer.nets.G.density_noise_std == pytest.approx(0.5)  # G trains with it; G_ema is in eval
    assert not trainer.nets.G_ema.training
    trainer.monitor.close()
