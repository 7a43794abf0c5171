"""Training step time, sec/kimg and peak memory per family (``python -m benchmarks.run --only training``).

Families: EG3D, Mimic3D stage 1 (2D branch + 3D-aware stream), stage 2 (adds S^3D, the patch imitation
and D^3D), end to end, and EpiGRAF (patch-wise: scaled patches, hyper-modulated D). Each runs
``Trainer.train_step`` on a small procedural heads dataset (``mimic3d dataset synth``) written to a
temporary folder; after the warm-up steps it times one full
period of the lazy regularisers (the least common multiple of the phases' intervals, e.g. 16 steps
for R1 every 16 and density every 4) and reports the mean, so every phase is paid for in proportion.

CPU: the tiny presets (tiny-eg3d-heads; tiny-mimic3d-heads as is for end to end, and with the keys
that distinguish the stage presets for stage 1 and stage 2; tiny-epigraf-heads). CUDA adds the paper
presets at batch 4: eg3d-ffhq512, mimic3d-ffhq512-stage1, mimic3d-ffhq512-stage2, mimic3d-e2e
(FFHQ 256), epigraf-ffhq512. Every run
starts from random weights (speed does not depend on them; stage 2 does not need its stage-1 run),
with LPIPS untrained (no pretrained weights are read; the same network is evaluated), no metrics,
no sample grids or clips. ``--quick``: the tiny families cut to a few thousand parameters, batch 4,
every lazy interval 2.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import BenchSettings, measure_peak_memory, synchronize
from mimic3d.data.synth import synth_dataset
from mimic3d.training.config import TrainConfig
from mimic3d.training.loop import Trainer
from mimic3d.training.presets import SMOKE_OVERRIDES, load_config, smoke_overrides

# What the stage presets change relative to end to end: stage 1 trains the 2D branch only (no S^3D, no
# imitation, no D^3D); stage 2 resumes, so no blur, no GPC fade, no EMA ramp-up, faster ADA.
STAGE1 = ("generator.sr3d=false", "loss.imitation_weight=0", "loss.patch_gan=0", "patch_discriminator=null")
STAGE2 = (
    "schedule.blur_init_sigma=0",
    "schedule.gpc_fade_kimg=0",
    "schedule.ema_rampup=null",
    "augment.speed_kimg=100",
)
# Offline benchmarking: nothing downloaded or evaluated besides the training step itself.
BENCH_OVERRIDES = (
    "loss.lpips=untrained",
    "run.metrics=[]",
    "run.grid_size=0",
    "run.video_frames=0",
    "run.init_from=null",
    "run.init_required=false",
)
# --quick: the shared smoke sizes, with every lazy regulariser due within two steps.
QUICK_OVERRIDES = (
    *SMOKE_OVERRIDES,
    "loss.r1_interval=2",
    "loss.density_reg_interval=2",
    "loss.patch_r1_interval=2",
)
PAPER_BATCH = 4


@dataclass(frozen=True)
class TrainingCase:
    """A preset with the family's ``overrides``; ``quick`` puts the cut sizes of --quick before them."""

    family: str
    preset: str
    overrides: tuple[str, ...] = ()
    quick: bool = False

    def describe(self) -> str:
        keys = " ".join(("(--quick sizes)",) * self.quick + self.overrides)
        return f"{self.preset}{' + ' + keys if keys else ''}"


def training_cases(settings: BenchSettings) -> list[TrainingCase]:
    """The tiny families (every device), plus the paper presets at batch 4 on CUDA."""
    quick = settings.quick
    tiny = [
        TrainingCase("eg3d", "tiny-eg3d-heads", quick=quick),
        TrainingCase("mimic3d stage 1", "tiny-mimic3d-heads", STAGE1, quick),
        TrainingCase("mimic3d stage 2", "tiny-mimic3d-heads", STAGE2, quick),
        TrainingCase("mimic3d e2e", "tiny-mimic3d-heads", quick=quick),
        TrainingCase("epigraf", "tiny-epigraf-heads", quick=quick),
    ]
    if quick or settings.device.type != "cuda":
        return tiny
    batch = (f"run.batch_size={PAPER_BATCH}",)
    return tiny + [
        TrainingCase("eg3d", "eg3d-ffhq512", batch),
        TrainingCase("mimic3d stage 1", "mimic3d-ffhq512-stage1", batch),
        TrainingCase("mimic3d stage 2", "mimic3d-ffhq512-stage2", batch),
        TrainingCase("mimic3d e2e", "mimic3d-e2e", batch),
        TrainingCase("epigraf", "epigraf-ffhq512", batch),
    ]


def case_config(case: TrainingCase, data_path: Path | str, device: torch.device) -> TrainConfig:
    """The validated config of ``case`` on ``data_path`` with the benchmark's offline overrides."""
    tail = [*case.overrides, *BENCH_OVERRIDES, f"data.path={data_path}", f"run.device={device.type}"]
    if not case.quick:
        return load_config(case.preset, tail)[0]
    # The cut sizes go first: the family's keys decide which discriminators exist (patch_discriminator=null).
    cut = smoke_overrides(load_config(case.preset, tail)[0])
    quick = [*cut, *(key for key in QUICK_OVERRIDES if key not in SMOKE_OVERRIDES)]
    return load_config(case.preset, [*quick, *tail])[0]


def regularizer_period(trainer: Trainer) -> int:
    """Steps after which every phase has run its due number of times (lcm of the intervals)."""
    return math.lcm(*(phase.interval for phase in trainer.phases))


@dataclass
class StepTiming:
    """Mean ``seconds_per_step`` over ``steps`` steps of global batch ``batch``; ``phases``: name/interval."""

    seconds_per_step: float
    steps: int
    batch: int
    phases: str

    @property
    def sec_per_kimg(self) -> float:
        return self.seconds_per_step / self.batch * 1000


def time_training_steps(trainer: Trainer, warmup: int, device: torch.device) -> StepTiming:
    """Mean seconds of ``train_step`` over one regulariser period, after ``warmup`` steps."""
    for _ in range(warmup):
        trainer.train_step()
    steps = regularizer_period(trainer)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    synchronize(device)
    phases = ", ".join(f"{p.name}/{p.interval}" for p in trainer.phases)
    return StepTiming((time.perf_counter() - start) / steps, steps, trainer.config.run.batch_size, phases)


def _dataset(folder: Path, resolution: int, count: int, cache: dict[int, Path]) -> Path:
    if resolution not in cache:
        path = folder / f"heads{resolution}"
        synth_dataset(str(path), "heads", count, resolution, seed=0, workers=1, progress=False)
        cache[resolution] = path
    return cache[resolution]


def _case_rows(case: TrainingCase, config: TrainConfig, settings: BenchSettings, run_dir: Path) -> list[dict]:
    device = settings.device
    with measure_peak_memory(device) as memory:
        trainer = Trainer(config, run_dir, progress_bar=False)
        try:
            timing = time_training_steps(trainer, warmup=2 if device.type == "cuda" else 1, device=device)
        finally:
            trainer.monitor.close()
    del trainer  # before the next case's baseline
    g = config.generator
    shown = (
        f"patches {config.loss.patch_resolution}"
        if config.patch_wise
        else f"render {config.schedule.nrr_initial}"
    )
    size = f"{g.img_resolution}^2, {shown}, batch {timing.batch}"
    return [
        {
            "name": f"train {case.family}: {case.preset}, {size}",
            "value": timing.seconds_per_step,
            "unit": "s/step",
            "notes": f"mean of {timing.steps} steps (one period of {timing.phases}); {case.describe()}",
        },
        {
            "name": "  sec/kimg",
            "value": timing.sec_per_kimg,
            "unit": "s/kimg",
            "notes": "LPIPS untrained, no metrics, random init",
        },
        {
            "name": "  training images/s",
            "value": timing.batch / timing.seconds_per_step,
            "unit": "images/s",
            "notes": f"global batch {timing.batch} on one {device.type} device",
        },
        {
            "name": "  peak memory (Trainer built + steps)",
            "value": memory.above_baseline_mib,
            "unit": "MiB",
            "notes": (
                f"{memory.notes()}; networks, optimiser state, activations; {memory.peak_mib:,.0f} MiB total"
            ),
        },
    ]


def run(settings: BenchSettings) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mimic3d-bench-") as tmp:
        folder, datasets = Path(tmp), {}
        for index, case in enumerate(training_cases(settings)):
            shape = case_config(case, folder, settings.device)  # which resolution and how many images
            count = max(2 * shape.run.batch_size, 8)
            data = _dataset(folder, shape.generator.img_resolution, count, datasets)
            rows += _case_rows(
                case, case_config(case, data, settings.device), settings, folder / f"run{index}"
            )
    return rows
