"""Shared pieces of the training tests: a small random dataset and tiny configs of each family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mimic3d.camera import PRESETS, sample_labels
from mimic3d.data import DatasetWriter
from mimic3d.training.config import TrainConfig
from mimic3d.training.presets import (
    SMOKE_OVERRIDES,
    SMOKE_PATCH_OVERRIDES,
    apply_overrides,
    preset_dict,
    smoke_overrides,
)

# Smaller than the demo preset: every code path, a fraction of the compute.
RUN_OVERRIDES = ["run.grid_size=0", "run.video_frames=0", "run.keep_snapshots=null", "data.mirror=false"]
TINY = [*SMOKE_OVERRIDES, *SMOKE_PATCH_OVERRIDES, *RUN_OVERRIDES]
# Every regulariser every other step and ADA moving p every step, so that all state is exercised
# on both sides of a resume point.
RESUME_OVERRIDES = [
    "loss.density_reg_interval=2",
    "loss.r1_interval=2",
    "loss.patch_r1_interval=2",
    "augment.mode=ada",
    "augment.interval=1",
    "augment.p=0.5",
    "augment.speed_kimg=0.1",
]
EPIGRAF_PRESETS = {"epigraf": "tiny-epigraf-heads", "epigraf-cars": "tiny-epigraf-cars"}
FAMILY_OVERRIDES = {
    "eg3d": [
        "generator.aware3d=false",
        "generator.sr3d=false",
        "generator.rendering.convention=eg3d",
        "loss.imitation_weight=0",
        "loss.patch_gan=0",
        "patch_discriminator=null",
    ],
    "stage1": [
        "generator.sr3d=false",
        "loss.imitation_weight=0",
        "loss.patch_gan=0",
        "patch_discriminator=null",
    ],
    "stage2": [
        "schedule.blur_init_sigma=0",
        "schedule.gpc_fade_kimg=0",
        "schedule.ema_rampup=null",
    ],
    "e2e": [],
}


def write_random_dataset(path: Path, count: int = 12, resolution: int = 32, seed: int = 0) -> Path:
    """An EG3D-format folder of smooth random RGB images with FFHQ-like camera labels."""
    generator = torch.Generator().manual_seed(seed)
    labels = sample_labels(PRESETS["ffhq"], count, generator=generator).numpy()
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 4, 4, 3)).astype(np.float32)
    images = np.kron(coarse, np.ones((1, resolution // 4, resolution // 4, 1), np.float32))
    images = np.clip(images + rng.normal(0, 8, images.shape), 0, 255).astype(np.uint8)
    with DatasetWriter(path) as writer:
        for image, label in zip(images, labels):
            writer.add(image, label)
    return path


def epigraf_tiny_overrides(preset: str = "tiny-epigraf-heads") -> list[str]:
    """The smoke sizes and run settings of ``TINY`` for an EpiGRAF preset (no dual discriminator)."""
    return [*smoke_overrides(TrainConfig.from_dict(preset_dict(preset))), *RUN_OVERRIDES]


def tiny_config(family: str, data_path: Path, *overrides: str) -> TrainConfig:
    """A tiny config of ``family`` (eg3d, stage1, stage2, e2e from the Mimic3D demo preset; epigraf,
    epigraf-cars from the tiny EpiGRAF presets)."""
    if family in EPIGRAF_PRESETS:
        preset = EPIGRAF_PRESETS[family]
        tiny = epigraf_tiny_overrides(preset)
        return TrainConfig.from_dict(
            apply_overrides(preset_dict(preset), [*tiny, f"data.path={data_path}", *overrides])
        )
    data = apply_overrides(
        preset_dict("tiny-mimic3d-heads"),
        [*TINY, *FAMILY_OVERRIDES[family], f"data.path={data_path}", *overrides],
    )
    return TrainConfig.from_dict(data)
