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
import os
from dataclasses import dataclass, field
from typing import Any

from mimic3d.checkpoints.builtin import is_builtin_name
from mimic3d.models.config import GeneratorConfig
from mimic3d.models.discriminator import DualDiscriminatorConfig
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminatorConfig,
    PatchDiscriminatorConfig,
)
from mimic3d.paths import absolute_path
from mimic3d.training.augment import AugmentConfig
from mimic3d.training.config_checks import check_chunk, validate_config
from mimic3d.training.distill_config import DistillConfig
from mimic3d.training.patches import SCALED_DISTRIBUTIONS

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
        validate_config(self)

    def check_chunk(self, chunk: int) -> None:
        """ValueError unless a discriminator batch of ``chunk`` images (``run.batch_gpu``, or the
        per-process batch) splits into its minibatch-std groups, as EG3D's layer requires."""
        check_chunk(self, chunk)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON data; ``from_dict`` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build and validate a config from nested dicts; errors name the dotted field path."""
        from mimic3d.checkpoints.portable import config_from_dict

        return config_from_dict(cls, data, where=where)
