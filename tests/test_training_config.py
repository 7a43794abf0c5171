"""Training config: presets load and validate, overrides are typed, bad keys and values are named."""

from __future__ import annotations

import os

import pytest
import yaml
from distill_support import distill_config, save_teacher

from mimic3d.training.config import TrainConfig
from mimic3d.training.presets import (
    ABLATIONS,
    apply_overrides,
    check_key,
    config_to_yaml,
    load_config,
    parse_override,
    preset_dict,
    preset_names,
)

PAPER_PRESETS = [
    "eg3d-ffhq512",
    "eg3d-afhq512",
    "eg3d-shapenet128",
    "mimic3d-ffhq512-stage1",
    "mimic3d-ffhq512-stage2",
    "mimic3d-ffhq256",
    "mimic3d-afhq512",
    "mimic3d-shapenet128",
    "mimic3d-e2e",
]
TINY_PRESETS = ["tiny-eg3d-heads", "tiny-mimic3d-heads", "tiny-mimic3d-cars"]
STAGE2_PRESETS = ["mimic3d-ffhq512-stage2", "mimic3d-ffhq256", "mimic3d-afhq512", "mimic3d-shapenet128"]


def load(name: str, *overrides: str, ablation: str | None = None) -> TrainConfig:
    """A preset's config; stage-2 presets get the stage-1 run they require."""
    init = ["run.init_from=runs/00000-stage1"] if name in STAGE2_PRESETS else []
    return load_config(name, [*init, *overrides], ablation)[0]


def test_every_requested_preset_ships_and_validates():
    names = preset_names()
    for name in PAPER_PRESETS + TINY_PRESETS:
        assert name in names
    for name in names:
        config = load(name)
        assert isinstance(config, TrainConfig)
        assert config.description
        assert config.run.init_required == (name in STAGE2_PRESETS)


def test_stage2_presets_refuse_to_start_from_scratch():
    for name in STAGE2_PRESETS:
        with pytest.raises(ValueError, match="run.init_from"):
            load_config(name)


def test_paper_hyper_parameters():
    ffhq, _ = load_config("eg3d-ffhq512")
    assert (ffhq.run.batch_size, ffhq.optim.g_lr, ffhq.optim.d_lr) == (32, 0.0025, 0.002)
    assert ffhq.optim.betas == (0.0, 0.99)
    assert (ffhq.loss.r1_gamma, ffhq.loss.r1_interval) == (1.0, 16)
    assert (ffhq.loss.density_reg, ffhq.loss.density_reg_interval, ffhq.loss.density_reg_offset) == (
        0.25,
        4,
        0.004,
    )
    assert (ffhq.schedule.blur_init_sigma, ffhq.blur_fade_kimg) == (10.0, 200.0)
    assert (ffhq.schedule.gpc_prob, ffhq.schedule.gpc_fade_kimg) == (0.5, 1000.0)
    assert (ffhq.ema_kimg, ffhq.schedule.ema_rampup) == (10.0, 0.05)
    assert ffhq.augment.mode == "noaug" and not ffhq.loss.trains_3d_branch

    afhq, _ = load_config("eg3d-afhq512")
    assert (afhq.loss.r1_gamma, afhq.augment.mode, afhq.augment.target) == (5.0, "ada", 0.6)
    assert (afhq.schedule.nrr_initial, afhq.schedule.nrr_final, afhq.schedule.gpc_prob) == (64, 128, 0.8)

    cars, _ = load_config("eg3d-shapenet128")
    assert (cars.loss.r1_gamma, cars.schedule.gpc_prob, cars.generator.img_resolution) == (0.3, None, 128)
    assert cars.generator.rendering.white_background

    stage1, _ = load_config("mimic3d-ffhq512-stage1")
    assert stage1.generator.aware3d and not stage1.generator.sr3d
    assert stage1.generator.rendering.convention == "xyz"

    stage2 = load("mimic3d-ffhq512-stage2")
    assert stage2.generator.sr3d and stage2.loss.trains_3d_branch
    assert (stage2.loss.imitation_weight, stage2.loss.patch_gan, stage2.loss.patch_resolution) == (
        1.0,
        0.1,
        64,
    )
    assert stage2.loss.density_reg_offset == 0.002
    assert stage2.patch_discriminator.patch_resolution == 64 and stage2.patch_discriminator.c_dim == 0
    # The official resume: no blur, no GPC fade, no EMA ramp-up.
    assert (stage2.schedule.blur_init_sigma, stage2.schedule.gpc_fade_kimg, stage2.schedule.ema_rampup) == (
        0.0,
        0.0,
        None,
    )

    assert load("mimic3d-ffhq256").loss.patch_gan == 0.2
    assert load("mimic3d-shapenet128").loss.patch_gan == 0.2
    afhq3d = load("mimic3d-afhq512")
    assert (afhq3d.loss.r1_gamma, afhq3d.loss.patch_r1_gamma, afhq3d.augment.mode) == (5.0, 5.0, "ada")
    e2e, _ = load_config("mimic3d-e2e")
    assert e2e.run.init_from is None and e2e.schedule.blur_init_sigma == 10.0 and e2e.loss.trains_3d_branch


def test_overrides_are_typed_and_nested():
    config, _ = load_config(
        "eg3d-ffhq512",
        [
            "loss.r1_gamma=5",
            "schedule.gpc_prob=null",
            "generator.sr_channels=[128, 64]",
            "generator.rendering.num_coarse=24",
            "data.path=some/data.zip",
            "run.metrics=[fid50k_full]",
        ],
    )
    assert config.loss.r1_gamma == 5.0 and isinstance(config.loss.r1_gamma, float)
    assert config.schedule.gpc_prob is None
    assert config.generator.sr_channels == (128, 64)
    assert config.generator.rendering.num_coarse == 24
    assert config.data.path == os.path.abspath("some/data.zip")  # stored absolute: resumable elsewhere
    assert config.run.metrics == ["fid50k_full"]


def test_unknown_keys_are_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown config key 'loss\.r1_gama'.*r1_gamma"):
        load_config("eg3d-ffhq512", ["loss.r1_gama=5"])
    with pytest.raises(ValueError, match=r"'lossy'.*valid keys there: .*loss"):
        check_key("lossy.r1_gamma")
    with pytest.raises(ValueError, match=r"loss\.r1_gamma\.x.*not a section"):
        check_key("loss.r1_gamma.x")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_override("loss.r1_gamma")


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match=r"loss\.r1_gamma.*expected a number"):
        load_config("eg3d-ffhq512", ["loss.r1_gamma=abc"])
    with pytest.raises(ValueError, match=r"run\.batch_gpu"):
        load_config("eg3d-ffhq512", ["run.batch_gpu=5"])
    with pytest.raises(ValueError, match="discriminator.img_resolution"):
        load_config("eg3d-ffhq512", ["generator.img_resolution=256"])
    with pytest.raises(ValueError, match="patch_discriminator.patch_resolution"):
        load("mimic3d-ffhq512-stage2", "loss.patch_resolution=32")
    with pytest.raises(ValueError, match="unknown metric"):
        load_config("eg3d-ffhq512", ["run.metrics=[fid_of_my_dreams]"])
    with pytest.raises(ValueError, match="preset: unknown name"):
        load_config("eg3d-ffhq1024")


def test_ablation_settings_switch_the_three_components():
    expected = {  # imitation, S^3D, 3D adversarial (paper Table 2)
        "A": (False, False, False),
        "B": (True, False, False),
        "C": (True, True, False),
        "D": (False, True, True),
        "E": (True, True, True),
    }
    assert sorted(ABLATIONS) == sorted(expected)
    for setting, (imitation, sr3d, adversarial) in expected.items():
        config = load("mimic3d-ffhq256", ablation=setting)
        assert (config.loss.imitation_weight > 0, config.generator.sr3d, config.loss.patch_gan > 0) == (
            imitation,
            sr3d,
            adversarial,
        )
        tiny = load("tiny-mimic3d-heads", ablation=setting)
        assert (tiny.loss.imitation_l1 > 0) == imitation and tiny.loss.trains_3d_branch == (setting != "A")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load("mimic3d-afhq512", "data.path=x.zip")
    text = config_to_yaml(config)
    again = TrainConfig.from_dict(yaml.safe_load(text))
    assert again == config
    path = tmp_path / "mine.yaml"
    path.write_text("base: eg3d-ffhq512\nloss:\n  r1_gamma: 2.5\n", encoding="utf-8")
    mine, _ = load_config(str(path))
    assert mine.loss.r1_gamma == 2.5 and mine.optim.g_lr == 0.0025


def test_base_chain_merges_deeply():
    data = preset_dict("mimic3d-shapenet128")
    assert "base" not in data
    assert data["generator"]["rendering"]["convention"] == "xyz"
    assert data["generator"]["sr3d"] is True
    merged = apply_overrides(data, ["generator.rendering.ray_end=3.0"])
    assert (
        merged["generator"]["rendering"]["ray_start"] == 0.1
        and merged["generator"]["rendering"]["ray_end"] == 3.0
    )


def test_distillation_teacher_is_stored_absolute(tmp_path, monkeypatch):
    # A distillation run resumed or evaluated from another folder must still find its teacher.
    teacher = save_teacher(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = distill_config(teacher.name, tmp_path / "data.zip")
    assert config.distill.teacher == str(teacher.absolute())
