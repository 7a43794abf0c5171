"""The ``distill`` section of a training config: NeRF-GAN distillation (Shahbazi et al. 2023).

A run with this section trains a ``StudentGenerator`` (``mimic3d.models.student``) to reproduce a
frozen teacher, in the same ``Trainer`` as every other method (its phase set: ``Gmain``, then
``Dmain`` / ``Dreg`` once the adversarial stage starts; see ``mimic3d.training.distill_loss``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mimic3d.models.student import TEACHER_BRANCHES
from mimic3d.training.config_checks import check_non_negative


@dataclass
class StudentSection:
    """The student's own architecture (the rest follows its teacher, see ``student_config``):
    synthesis widths as StyleGAN2's (min(channel_base / res, channel_max)) and the pose mapping's
    FC layers and learning-rate multiplier."""

    channel_base: int = 32768
    channel_max: int = 512
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01


@dataclass
class DistillConfig:
    """Teacher, loss weights and curriculum of a distillation run.

    ``teacher``: a checkpoint ``mimic3d.load`` reads (run folder snapshot, portable file, official
    pickle); ``mimic3d distill TEACHER`` sets it and takes the run's ``generator`` section from it.
    ``teacher_branch``: what the student imitates, "2d" (neural render + super-resolution, the
    paper's EG3D setting) or "3d" (the direct full-resolution render: Mimic3D's 3D branch,
    EpiGRAF); None picks "2d" when the teacher has a super-resolution, else "3d".

    Losses (paper Eq. 1-3; all weights 1 except the adversarial 0.1): ``feature_weight`` x SmoothL1
    between the feature images (the first 3 channels are the low-resolution image),
    ``lpips_lr_weight`` x LPIPS on the low-resolution images, ``lpips_hr_weight`` x LPIPS on the
    final images, ``depth_weight`` x SmoothL1 between the depth maps normalised to the teacher's ray
    range (not in the paper: the student's depth channel), and from ``adversarial_kimg`` on (the
    paper's stage 2; None: never) ``adversarial_weight`` x EG3D's non-saturating dual-discriminator
    loss, with the discriminator phases starting at the same point.

    ``teacher_chunk``: teacher targets are rendered without gradients in chunks of this many
    samples (the memory bound of a big teacher). ``eval_images``: teacher/student pairs whose
    correspondence PSNR is logged at every snapshot (0: none).
    """

    teacher: str | None = None
    teacher_branch: str | None = None
    student: StudentSection = field(default_factory=StudentSection)
    feature_weight: float = 1.0
    lpips_lr_weight: float = 1.0
    lpips_hr_weight: float = 1.0
    depth_weight: float = 1.0
    adversarial_weight: float = 0.1
    adversarial_kimg: float | None = None
    teacher_chunk: int = 4
    eval_images: int = 64

    @property
    def adversarial(self) -> bool:
        """Whether the run has an adversarial stage at all."""
        return self.adversarial_kimg is not None and self.adversarial_weight > 0

    @property
    def uses_lpips(self) -> bool:
        """Whether a perceptual term is on (the run then builds LPIPS, ``loss.lpips`` says which)."""
        return self.lpips_lr_weight > 0 or self.lpips_hr_weight > 0

    @property
    def adversarial_nimg(self) -> int | None:
        """Images shown before the adversarial stage starts (None: no such stage)."""
        return round(self.adversarial_kimg * 1000) if self.adversarial else None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field as ``distill.<field>``."""
        if self.teacher_branch is not None and self.teacher_branch not in TEACHER_BRANCHES:
            raise ValueError(
                f"distill.teacher_branch: expected null or one of {TEACHER_BRANCHES}, "
                f"got {self.teacher_branch!r}"
            )
        for name in (
            "feature_weight",
            "lpips_lr_weight",
            "lpips_hr_weight",
            "depth_weight",
            "adversarial_weight",
        ):
            check_non_negative(f"distill.{name}", getattr(self, name))
        if self.adversarial_kimg is not None and not (
            math.isfinite(self.adversarial_kimg) and self.adversarial_kimg >= 0
        ):
            raise ValueError(
                f"distill.adversarial_kimg: expected null or a number >= 0, got {self.adversarial_kimg}"
            )
        if self.teacher_chunk < 1:
            raise ValueError(f"distill.teacher_chunk: expected a positive int, got {self.teacher_chunk}")
        if self.eval_images < 0:
            raise ValueError(f"distill.eval_images: expected >= 0 (0 disables it), got {self.eval_images}")
        student = self.student
        for name in ("channel_base", "channel_max", "mapping_layers"):
            if getattr(student, name) < 1:
                raise ValueError(
                    f"distill.student.{name}: expected a positive int, got {getattr(student, name)}"
                )
        if not student.mapping_lr_multiplier > 0:
            raise ValueError(
                f"distill.student.mapping_lr_multiplier: expected a positive number, got "
                f"{student.mapping_lr_multiplier}"
            )
