"""Shared pieces of the training tests: a small random dataset and tiny configs of each family."""

from __future__ import annotations

import math
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
RUN_OVERRIDES = [
    "run.grid_size=0",
    "run.video_frames=0",
    "run.keep_snapshots=null",
    "data.mirror=false",
    "data.workers=0",  # loader processes cost more than they save on these tiny images
]
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


# Entries whose gradient is within rounding of zero may take any Adam step (see below); at most this
# fraction of a network's entries, which is ~100x what rounding produces.
OUTLIER_FRACTION = 1e-3


def adam_moves(trainer, steps: int) -> dict[str, float]:
    """The largest distance each network's entries can move in ``steps`` steps. With beta1 = 0 (EG3D's
    betas), Adam's t-th step is lr * g_t / sqrt(v_t / (1 - beta2^t)), at most
    lr * sqrt((1 - beta2^t) / (1 - beta2)) in size; the main and the regularisation phase of a network
    step the same optimiser. G_ema is an average of G's values."""
    moves: dict[str, float] = {}
    counts: dict[str, int] = {}
    for step in range(steps):
        for phase in trainer.phases:
            if step % phase.interval == 0:
                group = phase.optimizer.param_groups[0]
                beta1, beta2 = group["betas"]
                assert beta1 == 0, "the bound assumes beta1 = 0"
                counts[phase.network] = t = counts.get(phase.network, 0) + 1
                largest = group["lr"] * math.sqrt((1 - beta2**t) / (1 - beta2))
                moves[phase.network] = moves.get(phase.network, 0.0) + largest
    moves["G_ema"] = moves["G"]
    return moves


def assert_same_training(actual: dict, expected: dict, moves: dict[str, float]) -> None:
    """Parameters of a network agree within 16 eps of their value plus 1% of its largest Adam move,
    except at most OUTLIER_FRACTION of its entries, which stay within that largest move.

    For two runs that compute the same steps in other processes (two processes against one, a run
    killed and resumed against a straight one). Why: they draw the same random numbers and data,
    and sum chunk gradients exactly in either order, but kernels' blocking can depend on the
    process (memory alignment in MKL and oneDNN), so a gradient entry g carries a difference of
    ~sqrt(K) eps |g|_max. Adam divides
    by the running RMS of g, so the step changes by lr times that over |g|: far below 1% of lr,
    except for the few entries whose gradient is itself within ~100 sqrt(K) eps of zero, whose
    direction is arbitrary. A real difference between the runs (a missed all-reduce, a wrongly
    seeded or sharded chunk) changes most entries by O(lr).
    """
    eps = torch.finfo(torch.float32).eps
    for network, move in moves.items():
        keys = [k for k in expected if k.startswith(f"{network}.")]
        diff = torch.cat([(actual[k] - expected[k]).abs().flatten() for k in keys])
        value = torch.cat([expected[k].abs().flatten() for k in keys])
        assert diff.max() <= 2 * move, (
            f"{network}: an entry differs by {diff.max():.3g}, more than twice Adam's largest move"
        )
        beyond = diff > 16 * eps * value + 0.01 * move
        assert beyond.float().mean() <= OUTLIER_FRACTION, (
            f"{network}: {int(beyond.sum())} of {diff.numel()} entries differ by more than rounding "
            f"(largest {diff.max():.3g}; 1% of the Adam move is {0.01 * move:.3g})"
        )


def training_state(trainer) -> dict[str, torch.Tensor]:
    """Every tensor a resume must restore: the networks' parameters and buffers, each phase's
    optimiser moments and ADA's p, by name."""
    tensors = {
        f"{name}.{k}": v.detach().clone()
        for name, m in trainer.nets.named().items()
        for k, v in m.state_dict().items()
    }
    for phase in trainer.phases:
        for index, entries in phase.optimizer.state_dict()["state"].items():
            for key, value in entries.items():
                tensors[f"optim.{phase.network}.{index}.{key}"] = value.clone()
    if trainer.augment_pipe is not None:
        tensors["augment_p"] = trainer.augment_pipe.p.detach().clone()
    return tensors


def assert_identical_states(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Bit-for-bit equal ``training_state``s: same process, same kernels, so guaranteed by construction."""
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key
