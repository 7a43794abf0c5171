"""NeRF-GAN distillation runs: the teacher, the run config built around it, and the student.

A distillation config's ``generator`` section is its teacher's architecture and its discriminator
judges the teacher's image size; ``with_teacher`` writes both (and the student's feature resolution
into ``schedule.nrr_initial``, which the discriminator's low-resolution input follows) from the
teacher checkpoint, so ``mimic3d distill TEACHER`` needs nothing else. The Trainer then loads the
teacher (``load_teacher``), refuses one whose architecture differs from that section (a replaced
file), and builds the student with ``build_student``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from typing import Any

import torch

from mimic3d.checkpoints.load import load
from mimic3d.models.config import GeneratorConfig
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.student import StudentGenerator, student_config, student_from_teacher
from mimic3d.training.config import TrainConfig
from mimic3d.training.distill_config import DistillConfig
from mimic3d.training.presets import apply_overrides, preset_dict, preset_names

TINY_RESOLUTION = 64  # teachers up to this size get the tiny CPU preset
NO_TEACHER = (
    "distill.teacher: no teacher given; add distill.teacher=PATH (a checkpoint mimic3d.load reads: "
    "a run folder, a snapshot, a .safetensors file or an official pickle), or run `mimic3d distill TEACHER`"
)


def read_teacher(source: str | os.PathLike, device: str | torch.device = "cpu") -> TriplaneGenerator:
    """The frozen EMA generator of a teacher checkpoint (anything ``mimic3d.load`` resolves: run
    folder, snapshot, .safetensors, official pickle); errors name ``distill.teacher``."""
    try:
        teacher = load(source, device)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"distill.teacher: {err}") from err
    if not isinstance(teacher, TriplaneGenerator):
        raise ValueError(
            f"distill.teacher: {source} holds a {type(teacher).__name__}; a teacher is a tri-plane generator"
        )
    return teacher.eval().requires_grad_(False)


def _student_options(distill: DistillConfig) -> dict[str, Any]:
    s = distill.student
    return dict(
        channel_base=s.channel_base,
        channel_max=s.channel_max,
        mapping_layers=s.mapping_layers,
        mapping_lr_multiplier=s.mapping_lr_multiplier,
        teacher_source=str(distill.teacher or ""),
    )


def with_teacher(
    data: dict[str, Any], teacher: str | os.PathLike | None = None, model: TriplaneGenerator | None = None
) -> dict[str, Any]:
    """A copy of a raw distillation config (nested dicts) fitted to its teacher (see the module
    docstring); ``teacher`` replaces ``distill.teacher`` when given, ``model`` is that teacher
    already loaded (else it is read)."""
    data = copy.deepcopy(data)
    section = data.setdefault("distill", {})
    if not isinstance(section, dict):
        raise ValueError("distill: expected a section (mapping) of distillation settings")
    if teacher is not None:
        section["teacher"] = str(teacher)
    if section.get("teacher") is None:
        raise ValueError(NO_TEACHER)
    model = model if model is not None else read_teacher(section["teacher"])
    data["generator"] = model.config.to_dict()
    if data.get("discriminator", {}) is not None:
        data.setdefault("discriminator", {})["img_resolution"] = model.config.img_resolution
    distill = DistillConfig(**{k: v for k, v in section.items() if k != "student"})
    distill.validate()
    options = _student_options(distill)
    options.update({k: v for k, v in (section.get("student") or {}).items() if k in options})
    student = student_config(model.config, distill.teacher_branch, **options)
    schedule = data.setdefault("schedule", {})
    schedule["nrr_initial"], schedule["nrr_final"] = student.neural_rendering_resolution, None
    return data


def preset_for_teacher(teacher: GeneratorConfig) -> str:
    """The shipped distillation preset that fits a teacher architecture (``mimic3d distill``'s default)."""
    if teacher.img_resolution <= TINY_RESOLUTION:
        return "tiny-distill-heads"
    if teacher.aware3d and teacher.img_resolution == 512:
        return "distill-mimic3d-ffhq512"
    if not teacher.aware3d and teacher.superresolution != "none":
        if teacher.img_resolution == 512:
            return (
                "distill-eg3d-afhq512"
                if teacher.neural_rendering_resolution == 128
                else "distill-eg3d-ffhq512"
            )
        if teacher.img_resolution == 128:
            return "distill-eg3d-shapenet128"
    raise ValueError(
        f"preset: no distillation preset fits a {teacher.img_resolution}^2 teacher "
        f"(aware3d={teacher.aware3d}, superresolution={teacher.superresolution}); give one of "
        f"{[name for name in preset_names() if 'distill' in name]}"
    )


def distill_config(
    teacher: str | os.PathLike, preset: str | None = None, overrides: Iterable[str] = ()
) -> tuple[TrainConfig, str]:
    """The validated config of distilling ``teacher`` with ``preset`` (None: ``preset_for_teacher``)
    and ``KEY=VALUE`` overrides (``mimic3d distill TEACHER [PRESET] [KEY=VALUE ...]``), and the preset."""
    model = read_teacher(teacher)
    preset = preset or preset_for_teacher(model.config)
    data = apply_overrides(preset_dict(preset), overrides)
    return TrainConfig.from_dict(with_teacher(data, teacher, model), where=f"preset {preset}"), preset


def load_teacher(config: TrainConfig, device: torch.device) -> TriplaneGenerator:
    """The run's teacher; refuses a missing one and one that no longer matches ``config.generator``."""
    if config.distill.teacher is None:
        raise ValueError(NO_TEACHER)
    teacher = read_teacher(config.distill.teacher, device)
    if teacher.config != config.generator:
        raise ValueError(
            f"distill.teacher: {config.distill.teacher} is not the architecture of this run's generator "
            "section; build distillation configs with `mimic3d distill TEACHER` "
            "(mimic3d.training.distill.with_teacher), which copies it"
        )
    return teacher


def build_student(config: TrainConfig, teacher: TriplaneGenerator, cameras: torch.Tensor) -> StudentGenerator:
    """A fresh student of ``teacher`` for this run; its input statistics use the dataset's cameras [K, 25].

    Its feature resolution must be the schedule's rendering resolution (the discriminator's
    low-resolution input and the snapshot pictures use it); ``with_teacher`` sets it so.
    """
    distill = config.distill
    student = student_from_teacher(
        teacher,
        distill.teacher_branch,
        cameras=cameras.float(),
        seed=config.run.seed,
        **_student_options(distill),
    )
    resolution = student.config.neural_rendering_resolution
    if config.schedule.nrr_initial != resolution:
        raise ValueError(
            f"schedule.nrr_initial: {config.schedule.nrr_initial} differs from the student's feature "
            f"resolution {resolution} (the teacher's rendering resolution); "
            f"set schedule.nrr_initial={resolution}"
        )
    return student
