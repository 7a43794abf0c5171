"""Shared pieces of the training tests: a small random dataset and tiny configs of each family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mimic3d.camera import PRESETS, sample_labels
from mimic3d.data import DatasetWriter
from mimic3d.training.config import TrainConfig
from mimic3d.training.presets import SMOKE_OVERRIDES, SMOKE_PATCH_OVERRIDES, apply_overrides, preset_dict

# Smaller than the demo preset: every code path, a fraction of the compute.
TINY = [
    *SMOKE_OVERRIDES,
    *SMOKE_PATCH_OVERRIDES,
    "run.grid_size=0",
    "run.video_frames=0",
    "run.keep_snapshots=null",
    "data.mirror=false",
    "data.workers=0",  # loader processes cost more than they save on these tiny images
]
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


def tiny_config(family: str, data_path: Path, *overrides: str) -> TrainConfig:
    """A tiny config of ``family`` (eg3d, stage1, stage2, e2e) from the demo preset."""
    data = apply_overrides(
        preset_dict("tiny-mimic3d-heads"),
        [*TINY, *FAMILY_OVERRIDES[family], f"data.path={data_path}", *overrides],
    )
    return TrainConfig.from_dict(data)
