"""Consistency checks of a ``TrainConfig`` (``TrainConfig.validate``): every error names the
first inconsistent field by its dotted path and says what was expected."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mimic3d.camera import PRESETS as CAMERA_PRESETS
from mimic3d.metrics.protocols import get_protocol
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminatorConfig,
    PatchDiscriminatorConfig,
)
from mimic3d.training.patches import PATCH_DISTRIBUTIONS, SCALED_DISTRIBUTIONS

if TYPE_CHECKING:
    from mimic3d.training.config import AugmentSection, LossConfig, ScheduleConfig, TrainConfig

AUGMENT_MODES = ("noaug", "ada", "fixed")
LPIPS_MODES = ("pretrained", "untrained")
R1_TARGETS = ("discriminator_input", "input")
DEVICES = ("auto", "cpu", "cuda")
GEN_CAMERAS = ("dataset", *CAMERA_PRESETS)


def validate_config(config: TrainConfig) -> None:
    """Raise ``ValueError`` naming the first inconsistent field of ``config`` by its dotted path."""
    g, d, loss, run, sched = config.generator, config.discriminator, config.loss, config.run, config.schedule
    if d is not None and d.img_resolution != g.img_resolution:
        raise ValueError(
            f"discriminator.img_resolution: {d.img_resolution} differs from generator.img_resolution "
            f"{g.img_resolution}"
        )
    if d is not None and d.c_dim != g.c_dim:
        raise ValueError(f"discriminator.c_dim: {d.c_dim} differs from generator.c_dim {g.c_dim}")
    _check_positive("run.batch_size", run.batch_size)
    if run.batch_gpu is not None:
        _check_positive("run.batch_gpu", run.batch_gpu)
        if run.batch_size % run.batch_gpu:
            raise ValueError(
                f"run.batch_gpu: {run.batch_gpu} does not divide run.batch_size {run.batch_size}"
            )
    check_chunk(config, run.batch_gpu or run.batch_size)
    for name in ("total_kimg", "tick_kimg", "snapshot_kimg"):
        _check_positive(f"run.{name}", getattr(run, name))
    if run.keep_snapshots is not None:
        _check_positive("run.keep_snapshots", run.keep_snapshots)
    for name in ("grid_size", "video_frames"):
        if getattr(run, name) < 0:
            raise ValueError(f"run.{name}: expected >= 0 (0 disables it), got {getattr(run, name)}")
    for metric in run.metrics:
        get_protocol(metric)
    if run.init_required and run.init_from is None:
        raise ValueError(
            "run.init_from: this config continues an earlier stage (run.init_required); give "
            "run.init_from=PATH (the stage-1 run folder or checkpoint)"
        )
    if run.device not in DEVICES:
        raise ValueError(f"run.device: expected one of {DEVICES}, got {run.device!r}")
    _validate_loss(config, loss)
    _validate_schedule(config, sched)
    _validate_augment(config, config.augment)
    _validate_patches(config)
    if config.generator.class_dim:
        raise ValueError(
            "generator.class_dim: class-conditional training is not supported (the trainer has no "
            "class labels); set it to 0"
        )
    if config.data.gen_cameras not in GEN_CAMERAS:
        raise ValueError(f"data.gen_cameras: expected one of {GEN_CAMERAS}, got {config.data.gen_cameras!r}")
    if config.data.workers < 0:
        raise ValueError(f"data.workers: expected >= 0, got {config.data.workers}")
    if config.data.max_size is not None:
        _check_positive("data.max_size", config.data.max_size)
    if config.distill is not None:
        _validate_distill(config)


def _validate_distill(config: TrainConfig) -> None:
    """A student has no density, no 3D branch and no patches; its D is EG3D's dual discriminator."""
    config.distill.validate()
    if config.patch_wise:
        raise ValueError("discriminator: distillation's adversarial stage uses EG3D's dual discriminator")
    if config.loss.trains_3d_branch or config.patch_discriminator is not None:
        raise ValueError(
            "loss.imitation_weight: a student has no 3D branch; set loss.imitation_weight=0, "
            "loss.imitation_l1=0, loss.patch_gan=0 and patch_discriminator=null"
        )
    if config.loss.density_reg > 0:
        raise ValueError("loss.density_reg: a student has no density to regularise; set it to 0")
    if config.run.init_from is not None:
        raise ValueError(
            "run.init_from: a distillation run starts from its teacher (distill.teacher); "
            "continue one with --resume"
        )
    if config.schedule.nrr_final is not None:
        raise ValueError("schedule.nrr_final: a student renders its features at one resolution; set null")


def check_chunk(config: TrainConfig, chunk: int) -> None:
    """ValueError unless a discriminator batch of ``chunk`` images (``run.batch_gpu``, or the
    per-process batch) splits into its minibatch-std groups, as EG3D's layer requires."""
    if config.patch_wise:
        discriminators = [("hyper_discriminator", config.hyper_discriminator)]
    else:
        discriminators = [("discriminator", config.discriminator)]
    patch_d = config.patch_d_config
    if patch_d is not None:
        section = "hyper_discriminator" if patch_d is config.hyper_discriminator else "patch_discriminator"
        discriminators.append((section, patch_d))
    for section, d_config in discriminators:
        if d_config is None:  # refused with a clearer message by _validate_patch_wise
            continue
        group = d_config.mbstd_group_size
        if group is not None and chunk % min(group, chunk):
            key = "run.batch_gpu" if config.run.batch_gpu is not None else "run.batch_size"
            raise ValueError(
                f"{key}: chunks of {chunk} images do not split into the minibatch-std groups of "
                f"{section}.mbstd_group_size={group}; use a batch (per process) that is a multiple "
                f"of {group} or smaller than it, or change {section}.mbstd_group_size"
            )


def _validate_loss(config: TrainConfig, loss: LossConfig) -> None:
    for name in (
        "r1_gamma",
        "density_reg",
        "density_reg_offset",
        "imitation_weight",
        "imitation_l1",
        "patch_gan",
        "patch_r1_gamma",
    ):
        check_non_negative(f"loss.{name}", getattr(loss, name))
    for name in ("r1_interval", "density_reg_interval", "patch_r1_interval"):
        value = getattr(loss, name)
        if value is not None and value < 1:
            raise ValueError(f"loss.{name}: expected None or an int >= 1, got {value}")
    _check_positive("loss.density_reg_points", loss.density_reg_points)
    if loss.r1_target not in R1_TARGETS:
        raise ValueError(f"loss.r1_target: expected one of {R1_TARGETS}, got {loss.r1_target!r}")
    if loss.lpips not in LPIPS_MODES:
        raise ValueError(f"loss.lpips: expected one of {LPIPS_MODES}, got {loss.lpips!r}")
    if loss.noise_mode not in ("random", "const", "none"):
        raise ValueError(f"loss.noise_mode: expected random, const or none, got {loss.noise_mode!r}")
    if not loss.trains_3d_branch or config.patch_wise:  # patch-wise: _validate_patch_wise refuses
        return
    size = loss.patch_resolution
    if size < 16 or size > config.generator.img_resolution:
        raise ValueError(
            f"loss.patch_resolution: expected 16 (LPIPS minimum) .. generator.img_resolution "
            f"{config.generator.img_resolution}, got {size}"
        )
    if loss.patch_gan > 0:
        if config.patch_discriminator is not None and config.hyper_discriminator is not None:
            raise ValueError(
                "hyper_discriminator: D^3D is either patch_discriminator or hyper_discriminator; "
                "set the other to null"
            )
        patch_d = config.patch_d_config
        if patch_d is None:
            raise ValueError(
                "patch_discriminator: loss.patch_gan > 0 needs a patch discriminator section "
                "(patch_discriminator, or hyper_discriminator for EpiGRAF's scale-aware one)"
            )
        section = "patch_discriminator" if patch_d is config.patch_discriminator else "hyper_discriminator"
        _check_patch_d(config, section, patch_d)


def _check_patch_d(
    config: TrainConfig,
    section: str,
    patch_d: PatchDiscriminatorConfig | HyperModulatedPatchDiscriminatorConfig,
) -> None:
    size, resolution = config.loss.patch_resolution, config.generator.img_resolution
    if patch_d.patch_resolution != size:
        raise ValueError(
            f"{section}.patch_resolution: {patch_d.patch_resolution} differs from "
            f"loss.patch_resolution {size}"
        )
    if patch_d.c_dim != 0:
        raise ValueError(f"{section}.c_dim: patch discriminators are unconditional here (0)")
    if isinstance(patch_d, HyperModulatedPatchDiscriminatorConfig) and patch_d.img_resolution != resolution:
        raise ValueError(
            f"{section}.img_resolution: {patch_d.img_resolution} differs from generator.img_resolution "
            f"{resolution}"
        )


def _validate_patches(config: TrainConfig) -> None:
    patches, loss = config.patches, config.loss
    if patches.distribution not in PATCH_DISTRIBUTIONS:
        raise ValueError(
            f"patches.distribution: expected one of {PATCH_DISTRIBUTIONS}, got {patches.distribution!r}"
        )
    if not 0 < patches.max_scale <= 1:
        raise ValueError(f"patches.max_scale: expected a value in (0, 1], got {patches.max_scale}")
    for name in ("alpha", "beta_start", "beta_end"):
        if not (math.isfinite(getattr(patches, name)) and getattr(patches, name) > 0):
            raise ValueError(f"patches.{name}: expected a positive number, got {getattr(patches, name)}")
    check_non_negative("patches.anneal_kimg", patches.anneal_kimg)
    if not patches.discrete_support or not all(0 < v <= 1 for v in patches.discrete_support):
        raise ValueError(
            f"patches.discrete_support: expected scales in (0, 1], got {list(patches.discrete_support)}"
        )
    size, resolution = loss.patch_resolution, config.generator.img_resolution
    if patches.scaled and not size / resolution <= config.min_patch_scale <= patches.max_scale:
        raise ValueError(
            f"patches.min_scale: expected loss.patch_resolution / generator.img_resolution "
            f"({size}/{resolution}) <= min_scale <= patches.max_scale {patches.max_scale}, got "
            f"{config.min_patch_scale} (a finer patch would sample between the image's pixels)"
        )
    if config.patch_wise:
        _validate_patch_wise(config)


def _validate_patch_wise(config: TrainConfig) -> None:
    """EpiGRAF: the hyper-modulated D on scaled patches, nothing of the dual-D objective."""
    loss = config.loss
    if config.hyper_discriminator is None:
        raise ValueError(
            "hyper_discriminator: patch-wise training (discriminator: null) needs EpiGRAF's "
            "discriminator section"
        )
    if config.patch_discriminator is not None or loss.trains_3d_branch:
        raise ValueError(
            "patch_discriminator: patch-wise training has no 3D-branch terms; set "
            "patch_discriminator=null, loss.imitation_weight=0, loss.imitation_l1=0, loss.patch_gan=0"
        )
    if loss.density_reg > 0:
        raise ValueError("loss.density_reg: EpiGRAF has no density regulariser; set it to 0")
    if not config.patches.scaled:
        raise ValueError(
            f"patches.distribution: patch-wise training draws scaled patches, one of "
            f"{SCALED_DISTRIBUTIONS}; got {config.patches.distribution!r}"
        )
    _check_patch_d(config, "hyper_discriminator", config.hyper_discriminator)


def _validate_schedule(config: TrainConfig, sched: ScheduleConfig) -> None:
    for name in (
        "blur_init_sigma",
        "blur_fade_kimg",
        "gpc_fade_kimg",
        "nrr_fade_kimg",
        "ema_kimg",
        "density_noise_init",
        "density_noise_kimg",
    ):
        check_non_negative(f"schedule.{name}", getattr(sched, name))
    if sched.density_noise_init > 0 and config.generator.rendering.integration != "epigraf":
        raise ValueError(
            "schedule.density_noise_init: density noise needs generator.rendering.integration=epigraf"
        )
    if sched.gpc_prob is not None and not 0 <= sched.gpc_prob <= 1:
        raise ValueError(f"schedule.gpc_prob: expected None or a probability, got {sched.gpc_prob}")
    if sched.ema_rampup is not None and sched.ema_rampup <= 0:
        raise ValueError(f"schedule.ema_rampup: expected None or > 0, got {sched.ema_rampup}")
    for name in ("nrr_initial", "nrr_final"):
        value = getattr(sched, name)
        if value is not None and value < 4:
            raise ValueError(f"schedule.{name}: expected a rendering resolution >= 4, got {value}")


def _validate_augment(config: TrainConfig, aug: AugmentSection) -> None:
    if aug.mode not in AUGMENT_MODES:
        raise ValueError(f"augment.mode: expected one of {AUGMENT_MODES}, got {aug.mode!r}")
    if not 0 <= aug.p <= 1:
        raise ValueError(f"augment.p: expected a probability, got {aug.p}")
    if not 0 <= aug.target <= 1:
        raise ValueError(f"augment.target: expected a value in [0, 1], got {aug.target}")
    _check_positive("augment.interval", aug.interval)
    _check_positive("augment.speed_kimg", aug.speed_kimg)


def check_non_negative(name: str, value: float) -> None:
    """ValueError naming the field ``name`` unless ``value`` is a finite number >= 0."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: expected a positive value, got {value}")
