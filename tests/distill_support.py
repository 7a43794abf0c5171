"""Shared pieces of the distillation tests: a tiny random teacher, its student and a distillation config."""

from __future__ import annotations

from pathlib import Path

import torch
from training_support import RUN_OVERRIDES

import mimic3d
from mimic3d.models.config import generator_preset
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.student import StudentGenerator, student_from_teacher
from mimic3d.training.config import TrainConfig
from mimic3d.training.distill import with_teacher
from mimic3d.training.presets import apply_overrides, preset_dict

# A few-thousand-parameter student (the tiny preset's is wider, for the CPU demo).
STUDENT = ["distill.student.channel_base=512", "distill.student.channel_max=32"]


def tiny_teacher(seed: int = 0) -> TriplaneGenerator:
    """A random tiny EG3D (32^2 images, 16^2 neural render, 8-channel features), frozen.

    Its decoder's output layer is scaled x4: at its random initialisation the renders are nearly
    uniform (the teacher's mean image scores 30 dB against them, nothing left to learn); scaled,
    colours and densities vary over subjects and views (mean image: 17 dB), as a trained model's do.
    """
    torch.manual_seed(seed)
    teacher = TriplaneGenerator(generator_preset("tiny-eg3d")).eval().requires_grad_(False)
    teacher.decoder.net[2].weight.mul_(4)
    return teacher


def tiny_student(teacher: TriplaneGenerator) -> StudentGenerator:
    return student_from_teacher(teacher, channel_base=512, channel_max=32, samples=64).eval()


def save_teacher(folder: Path, seed: int = 0) -> Path:
    return mimic3d.save(folder / f"teacher{seed}.safetensors", tiny_teacher(seed))


def distill_config(teacher: Path, data: Path, *overrides: str) -> TrainConfig:
    """The tiny distillation preset fitted to ``teacher``, smaller and without pictures."""
    data_dict = apply_overrides(
        preset_dict("tiny-distill-heads"),
        [
            *RUN_OVERRIDES,
            *STUDENT,
            f"data.path={data}",
            "run.batch_size=4",
            "distill.eval_images=0",
            *overrides,
        ],
    )
    return TrainConfig.from_dict(with_teacher(data_dict, teacher))
