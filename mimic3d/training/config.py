"""The typed configuration of a training run (EG3D, Mimic3D stage 1 / stage 2 / end-to-end, EpiGRAF).

A ``TrainConfig`` is plain data: it round-trips through YAML/JSON with ``to_dict`` / ``from_dict``,
and ``from_dict`` names every unknown or ill-typed field by its dotted path
(``loss.r1_gamma: expected a number``). Presets live in ``mimic3d/training/presets/*.yaml``
(see ``mimic3d.training.presets``). Durations given "at batch 32" are scaled by batch / 32 exactly
as EG3D does when ``schedule.scale_with_batch`` is true (blur fade and EMA half-life).
Path fields (``PATH_FIELDS``) are stored expanded (``~``, ``$VARS``) and absolute, so a saved config
names the same files when a run is resumed from another folder; a built-in model's name in
``run.init_from`` or ``distill.teacher`` (``heads64``) stays a name.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from mimic3d.camera import PRESETS as CAMERA_PRESETS
from mimic3d.checkpoints.builtin import is_builtin_name
from mimic3d.metrics.protocols import get_protocol
from mimic3d.models.config import GeneratorConfig
from mimic3d.models.discriminator import DualDiscriminatorConfig
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminatorConfig,
    PatchDiscriminatorConfig,
)
from mimic3d.paths import absolute_path
from mimic3d.training.augment import AugmentConfig
from mimic3d.training.distill_config import DistillConfig
from mimic3d.training.patches import PATCH_DISTRIBUTIONS, SCALED_DISTRIBUTIONS

AUGMENT_MODES = ("noaug", "ada", "fixed")
LPIPS_MODES = ("pretrained", "untrained")
R1_TARGETS = ("discriminator_input", "input")
DEVICES = ("auto", "cpu", "cuda")
GEN_CAMERAS = ("dataset", *CAMERA_PRESETS)
MODEL_FIELDS = ("run.init_from", "distill.teacher")  # fields that take a checkpoint
PATH_FIELDS = ("data.path", "run.init_from", "loss.lpips_weights_dir", "distill.teacher")


@dataclass
class LossConfig:
    """Weights and lazy-regularisation intervals of the EG3D / Mimic3D objectives.

    The 3D branch is trained (Mimic3D stage 2) when ``imitation_weight``, ``imitation_l1`` or
    ``patch_gan`` is > 0: a ``patch_resolution`` window of the full-resolution 3D render imitates the
    same window of the stop-gradient 2D image (LPIPS, weight ``imitation_weight``), and ``patch_gan``
    weights the patch discriminator's loss. ``imitation_l1`` adds a mean absolute pixel difference on
    the same windows: not in the paper (0 in its presets), but it gives the tiny CPU presets a teacher
    signal when LPIPS runs with untrained weights.
    Intervals of None run the regulariser every step without lazy scaling.
    ``r1_target`` says what R1 differentiates: ``discriminator_input`` (official EG3D/Mimic3D: the
    images D sees, after the blur and the augmentation) or ``input`` (the real images before both,
    StyleGAN2-ADA's definition); it applies to both R1 terms (dual D and D^3D).
    """

    r1_gamma: float = 1.0
    r1_interval: int | None = 16
    r1_target: str = "discriminator_input"
    density_reg: float = 0.25
    density_reg_interval: int | None = 4
    density_reg_offset: float = 0.004
    density_reg_points: int = 1000
    imitation_weight: float = 0.0
    imitation_l1: float = 0.0
    patch_gan: float = 0.0
    patch_r1_gamma: float = 1.0
    patch_r1_interval: int | None = 16
    patch_resolution: int = 64
    lpips: str = "pretrained"
    lpips_weights_dir: str | None = None
    noise_mode: str = "random"

    @property
    def trains_3d_branch(self) -> bool:
        return self.imitation_weight > 0 or self.imitation_l1 > 0 or self.patch_gan > 0


@dataclass
class PatchConfig:
    """Where patches sit (``mimic3d.training.patches``); their size is ``loss.patch_resolution``.

    ``window``: Mimic3D's fixed-scale windows of full-resolution pixels at uniform pixel corners (its
    presets). ``beta``, ``uniform``, ``discrete``: EpiGRAF's scaled patches, s in [``min_scale``
    (None: patch_resolution / img_resolution), ``max_scale``], annealed over ``anneal_kimg``; beta
    draws Beta(``alpha``, b) with b linear from ``beta_start`` to ``beta_end``; uniform and discrete
    anneal their lower bound from max_scale down to min_scale (discrete: the ``discrete_support``
    values in range). EpiGRAF trains with them; Mimic3D's 3D branch can too (beyond its paper).
    """

    distribution: str = "window"
    min_scale: float | None = None
    max_scale: float = 1.0
    anneal_kimg: float = 10000.0
    alpha: float = 1.0
    beta_start: float = 0.001
    beta_end: float = 0.8
    discrete_support: tuple[float, ...] = (0.25, 1.0)

    @property
    def scaled(self) -> bool:
        return self.distribution in SCALED_DISTRIBUTIONS


@dataclass
class OptimConfig:
    """Adam settings of the three networks (before lazy-regularisation scaling)."""

    g_lr: float = 0.0025
    d_lr: float = 0.002
    patch_d_lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8


@dataclass
class ScheduleConfig:
    """Fades of EG3D/Mimic3D, as functions of images shown (kimg).

    ``gpc_prob`` None trains without generator pose conditioning (G sees zeros).
    ``blur_fade_kimg`` and ``ema_kimg`` are "at batch 32" when ``scale_with_batch``.
    ``density_noise_init``: std of the Gaussian noise added to raw densities while G trains (EpiGRAF,
    after pi-GAN), fading linearly to 0 over ``density_noise_kimg``; 0 disables it.
    """

    blur_init_sigma: float = 10.0
    blur_fade_kimg: float = 200.0
    gpc_prob: float | None = 0.5
    gpc_fade_kimg: float = 1000.0
    nrr_initial: int = 64
    nrr_final: int | None = None
    nrr_fade_kimg: float = 1000.0
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    scale_with_batch: bool = True
    density_noise_init: float = 0.0
    density_noise_kimg: float = 5000.0


@dataclass
class AugmentSection:
    """Discriminator augmentation: ``noaug``, ``ada`` (p adapts towards ``target``, starting from
    ``p``) or ``fixed`` (p stays ``p``)."""

    mode: str = "noaug"
    p: float = 0.0
    target: float = 0.6
    interval: int = 4
    speed_kimg: float = 500.0
    pipe: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class DataConfig:
    """The training set: an EG3D-format zip or folder (``mimic3d dataset check`` validates one).

    ``gen_cameras``: where the fakes' cameras come from: ``dataset`` (its labels, as EG3D) or the pose
    distribution of a camera preset (``mimic3d.camera.PRESETS``; ``shapenet``: all 360 degrees of
    yaw over the upper hemisphere; ``epigraf-megascans``: the whole sphere, EpiGRAF's
    ``spherical_uniform``). The preset's radius and focal must be the dataset's.
    """

    path: str | None = None
    gen_cameras: str = "dataset"
    mirror: bool = False
    max_size: int | None = None
    # Loader processes (EG3D uses 3; at most the CPUs the process may use), each keeping
    # PREFETCH_BATCHES batches ready; 0 loads in the training process.
    workers: int = 3


@dataclass
class RunConfig:
    """Length, batch, output and bookkeeping of a run."""

    seed: int = 0
    batch_size: int = 32
    batch_gpu: int | None = None
    total_kimg: float = 25000.0
    tick_kimg: float = 4.0
    snapshot_kimg: float = 200.0
    keep_snapshots: int | None = 3
    init_from: str | None = None
    init_required: bool = False  # the preset continues an earlier stage: refuse to start without init_from
    device: str = "auto"
    tf32: bool = False  # TF32 matmuls/convolutions on GPUs: faster, ~1e-3 off the official numerics
    compile: bool = False  # torch.compile G, D and D^3D (eager if compilation fails)
    grid_size: int = 8  # samples in the snapshot grids (0: none)
    video_frames: int = 24  # frames of the snapshot clip (0: none)
    metrics: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Everything a run needs; ``mimic3d train PRESET key=value ...`` builds one.

    ``discriminator`` None trains patch-wise as EpiGRAF: every D input is a scaled patch (``patches``)
    judged by ``hyper_discriminator``. With a (dual) ``discriminator``, a ``hyper_discriminator`` is
    Mimic3D's D^3D instead of the plain ``patch_discriminator`` (beyond the Mimic3D paper).
    A ``distill`` section trains a distilled student of its teacher instead of G (NeRF-GAN
    distillation); ``generator`` is then the teacher's architecture (``mimic3d.training.distill``).
    """

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DualDiscriminatorConfig | None = field(default_factory=DualDiscriminatorConfig)
    patch_discriminator: PatchDiscriminatorConfig | None = None
    hyper_discriminator: HyperModulatedPatchDiscriminatorConfig | None = None
    patches: PatchConfig = field(default_factory=PatchConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentSection = field(default_factory=AugmentSection)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    distill: DistillConfig | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for key in PATH_FIELDS:
            section, name = key.split(".")
            value = getattr(getattr(self, section), name, None)  # no distill section: not distilling
            # A built-in model's name (run.init_from=heads64, distill.teacher=heads64) stays a name
            # unless a file has it.
            keep_name = key in MODEL_FIELDS and is_builtin_name(value) and not os.path.exists(value)
            if isinstance(value, str) and not keep_name:
                setattr(getattr(self, section), name, absolute_path(value))
        self.validate()

    @property
    def ema_kimg(self) -> float:
        """EMA half-life in kimg at this run's batch size."""
        return self._batch_scaled(self.schedule.ema_kimg)

    @property
    def blur_fade_kimg(self) -> float:
        """D-input blur fade length in kimg at this run's batch size."""
        return self._batch_scaled(self.schedule.blur_fade_kimg)

    @property
    def patch_wise(self) -> bool:
        """EpiGRAF training: no dual discriminator, only patches (see the class docstring)."""
        return self.discriminator is None

    @property
    def distilling(self) -> bool:
        """NeRF-GAN distillation: G is a student of the frozen ``distill.teacher``."""
        return self.distill is not None

    @property
    def patch_d_config(self) -> PatchDiscriminatorConfig | HyperModulatedPatchDiscriminatorConfig | None:
        """The patch discriminator of Mimic3D's 3D branch (D^3D), plain or hyper-modulated, if any."""
        if self.patch_wise or self.loss.patch_gan <= 0:
            return None
        return self.hyper_discriminator or self.patch_discriminator

    @property
    def min_patch_scale(self) -> float:
        """Smallest scaled-patch side over the image side (``patches.min_scale`` or r / R)."""
        if self.patches.min_scale is not None:
            return self.patches.min_scale
        return self.loss.patch_resolution / self.generator.img_resolution

    def _batch_scaled(self, kimg: float) -> float:
        return kimg * self.run.batch_size / 32 if self.schedule.scale_with_batch else kimg

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field by its dotted path."""
        g, d, loss, run, sched = self.generator, self.discriminator, self.loss, self.run, self.schedule
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
        self.check_chunk(run.batch_gpu or run.batch_size)
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
        self._validate_loss(loss)
        self._validate_schedule(sched)
        self._validate_augment(self.augment)
        self._validate_patches()
        if self.generator.class_dim:
            raise ValueError(
                "generator.class_dim: class-conditional training is not supported (the trainer has no "
                "class labels); set it to 0"
            )
        if self.data.gen_cameras not in GEN_CAMERAS:
            raise ValueError(
                f"data.gen_cameras: expected one of {GEN_CAMERAS}, got {self.data.gen_cameras!r}"
            )
        if self.data.workers < 0:
            raise ValueError(f"data.workers: expected >= 0, got {self.data.workers}")
        if self.data.max_size is not None:
            _check_positive("data.max_size", self.data.max_size)
        if self.distill is not None:
            self._validate_distill()

    def _validate_distill(self) -> None:
        """A student has no density, no 3D branch and no patches; its D is EG3D's dual discriminator."""
        self.distill.validate()
        if self.patch_wise:
            raise ValueError("discriminator: distillation's adversarial stage uses EG3D's dual discriminator")
        if self.loss.trains_3d_branch or self.patch_discriminator is not None:
            raise ValueError(
                "loss.imitation_weight: a student has no 3D branch; set loss.imitation_weight=0, "
                "loss.imitation_l1=0, loss.patch_gan=0 and patch_discriminator=null"
            )
        if self.loss.density_reg > 0:
            raise ValueError("loss.density_reg: a student has no density to regularise; set it to 0")
        if self.run.init_from is not None:
            raise ValueError(
                "run.init_from: a distillation run starts from its teacher (distill.teacher); "
                "continue one with --resume"
            )
        if self.schedule.nrr_final is not None:
            raise ValueError("schedule.nrr_final: a student renders its features at one resolution; set null")

    def check_chunk(self, chunk: int) -> None:
        """ValueError unless a discriminator batch of ``chunk`` images (``run.batch_gpu``, or the
        per-process batch) splits into its minibatch-std groups, as EG3D's layer requires."""
        if self.patch_wise:
            discriminators = [("hyper_discriminator", self.hyper_discriminator)]
        else:
            discriminators = [("discriminator", self.discriminator)]
        patch_d = self.patch_d_config
        if patch_d is not None:
            section = "hyper_discriminator" if patch_d is self.hyper_discriminator else "patch_discriminator"
            discriminators.append((section, patch_d))
        for section, config in discriminators:
            if config is None:  # refused with a clearer message by _validate_patch_wise
                continue
            group = config.mbstd_group_size
            if group is not None and chunk % min(group, chunk):
                key = "run.batch_gpu" if self.run.batch_gpu is not None else "run.batch_size"
                raise ValueError(
                    f"{key}: chunks of {chunk} images do not split into the minibatch-std groups of "
                    f"{section}.mbstd_group_size={group}; use a batch (per process) that is a multiple "
                    f"of {group} or smaller than it, or change {section}.mbstd_group_size"
                )

    def _validate_loss(self, loss: LossConfig) -> None:
        for name in (
            "r1_gamma",
            "density_reg",
            "density_reg_offset",
            "imitation_weight",
            "imitation_l1",
            "patch_gan",
            "patch_r1_gamma",
        ):
            value = getattr(loss, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"loss.{name}: expected a finite number >= 0, got {value}")
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
        if not loss.trains_3d_branch or self.patch_wise:  # patch-wise: _validate_patch_wise refuses
            return
        size = loss.patch_resolution
        if size < 16 or size > self.generator.img_resolution:
            raise ValueError(
                f"loss.patch_resolution: expected 16 (LPIPS minimum) .. generator.img_resolution "
                f"{self.generator.img_resolution}, got {size}"
            )
        if loss.patch_gan > 0:
            if self.patch_discriminator is not None and self.hyper_discriminator is not None:
                raise ValueError(
                    "hyper_discriminator: D^3D is either patch_discriminator or hyper_discriminator; "
                    "set the other to null"
                )
            patch_d = self.patch_d_config
            if patch_d is None:
                raise ValueError(
                    "patch_discriminator: loss.patch_gan > 0 needs a patch discriminator section "
                    "(patch_discriminator, or hyper_discriminator for EpiGRAF's scale-aware one)"
                )
            section = "patch_discriminator" if patch_d is self.patch_discriminator else "hyper_discriminator"
            self._check_patch_d(section, patch_d)

    def _check_patch_d(
        self, section: str, patch_d: PatchDiscriminatorConfig | HyperModulatedPatchDiscriminatorConfig
    ) -> None:
        size, resolution = self.loss.patch_resolution, self.generator.img_resolution
        if patch_d.patch_resolution != size:
            raise ValueError(
                f"{section}.patch_resolution: {patch_d.patch_resolution} differs from "
                f"loss.patch_resolution {size}"
            )
        if patch_d.c_dim != 0:
            raise ValueError(f"{section}.c_dim: patch discriminators are unconditional here (0)")
        if (
            isinstance(patch_d, HyperModulatedPatchDiscriminatorConfig)
            and patch_d.img_resolution != resolution
        ):
            raise ValueError(
                f"{section}.img_resolution: {patch_d.img_resolution} differs from generator.img_resolution "
                f"{resolution}"
            )

    def _validate_patches(self) -> None:
        patches, loss = self.patches, self.loss
        if patches.distribution not in PATCH_DISTRIBUTIONS:
            raise ValueError(
                f"patches.distribution: expected one of {PATCH_DISTRIBUTIONS}, got {patches.distribution!r}"
            )
        if not 0 < patches.max_scale <= 1:
            raise ValueError(f"patches.max_scale: expected a value in (0, 1], got {patches.max_scale}")
        for name in ("alpha", "beta_start", "beta_end"):
            if not (math.isfinite(getattr(patches, name)) and getattr(patches, name) > 0):
                raise ValueError(f"patches.{name}: expected a positive number, got {getattr(patches, name)}")
        if not (math.isfinite(patches.anneal_kimg) and patches.anneal_kimg >= 0):
            raise ValueError(f"patches.anneal_kimg: expected a finite number >= 0, got {patches.anneal_kimg}")
        if not patches.discrete_support or not all(0 < v <= 1 for v in patches.discrete_support):
            raise ValueError(
                f"patches.discrete_support: expected scales in (0, 1], got {list(patches.discrete_support)}"
            )
        size, resolution = loss.patch_resolution, self.generator.img_resolution
        if patches.scaled and not size / resolution <= self.min_patch_scale <= patches.max_scale:
            raise ValueError(
                f"patches.min_scale: expected loss.patch_resolution / generator.img_resolution "
                f"({size}/{resolution}) <= min_scale <= patches.max_scale {patches.max_scale}, got "
                f"{self.min_patch_scale} (a finer patch would sample between the image's pixels)"
            )
        if self.patch_wise:
            self._validate_patch_wise()

    def _validate_patch_wise(self) -> None:
        """EpiGRAF: the hyper-modulated D on scaled patches, nothing of the dual-D objective."""
        loss = self.loss
        if self.hyper_discriminator is None:
            raise ValueError(
                "hyper_discriminator: patch-wise training (discriminator: null) needs EpiGRAF's "
                "discriminator section"
            )
        if self.patch_discriminator is not None or loss.trains_3d_branch:
            raise ValueError(
                "patch_discriminator: patch-wise training has no 3D-branch terms; set "
                "patch_discriminator=null, loss.imitation_weight=0, loss.imitation_l1=0, loss.patch_gan=0"
            )
        if loss.density_reg > 0:
            raise ValueError("loss.density_reg: EpiGRAF has no density regulariser; set it to 0")
        if not self.patches.scaled:
            raise ValueError(
                f"patches.distribution: patch-wise training draws scaled patches, one of "
                f"{SCALED_DISTRIBUTIONS}; got {self.patches.distribution!r}"
            )
        self._check_patch_d("hyper_discriminator", self.hyper_discriminator)

    def _validate_schedule(self, sched: ScheduleConfig) -> None:
        for name in (
            "blur_init_sigma",
            "blur_fade_kimg",
            "gpc_fade_kimg",
            "nrr_fade_kimg",
            "ema_kimg",
            "density_noise_init",
            "density_noise_kimg",
        ):
            value = getattr(sched, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"schedule.{name}: expected a finite number >= 0, got {value}")
        if sched.density_noise_init > 0 and self.generator.rendering.integration != "epigraf":
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

    def _validate_augment(self, aug: AugmentSection) -> None:
        if aug.mode not in AUGMENT_MODES:
            raise ValueError(f"augment.mode: expected one of {AUGMENT_MODES}, got {aug.mode!r}")
        if not 0 <= aug.p <= 1:
            raise ValueError(f"augment.p: expected a probability, got {aug.p}")
        if not 0 <= aug.target <= 1:
            raise ValueError(f"augment.target: expected a value in [0, 1], got {aug.target}")
        _check_positive("augment.interval", aug.interval)
        _check_positive("augment.speed_kimg", aug.speed_kimg)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON data; ``from_dict`` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build and validate a config from nested dicts; errors name the dotted field path."""
        from mimic3d.checkpoints.portable import config_from_dict

        return config_from_dict(cls, data, where=where)


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: expected a positive value, got {value}")
