"""Every scheduled quantity of a run at a given number of images shown, from its config."""

from __future__ import annotations

from dataclasses import dataclass

from mimic3d.losses import blur_sigma, ema_beta, gpc_swap_prob, linear_schedule, neural_rendering_resolution
from mimic3d.training.config import TrainConfig
from mimic3d.training.patches import ScaleSchedule, scale_schedule


@dataclass(frozen=True)
class Progress:
    """Schedule values for one training step (``cur_nimg`` images shown before it)."""

    cur_nimg: int
    blur_sigma: float
    swap_prob: float | None
    neural_rendering_resolution: int
    ema_beta: float
    patch_scales: ScaleSchedule | None = None  # scaled patches' distribution, when configured
    density_noise_std: float = 0.0

    @property
    def cur_kimg(self) -> float:
        return self.cur_nimg / 1000


def progress_at(config: TrainConfig, cur_nimg: int) -> Progress:
    """Blur sigma, pose-swap probability, rendering resolution, EMA decay, the scaled patches' scale
    distribution and the density-noise std at ``cur_nimg``.

    Durations "at batch 32" (blur fade, EMA half-life) are scaled to the run's batch first.
    """
    sched, kimg, patches = config.schedule, cur_nimg / 1000, config.patches
    scales = None
    if patches.scaled:
        scales = scale_schedule(
            patches.distribution,
            kimg,
            config.min_patch_scale,
            patches.max_scale,
            patches.anneal_kimg,
            patches.beta_start,
            patches.beta_end,
            patches.alpha,
            patches.discrete_support,
        )
    return Progress(
        cur_nimg=cur_nimg,
        blur_sigma=blur_sigma(kimg, sched.blur_init_sigma, config.blur_fade_kimg),
        swap_prob=gpc_swap_prob(kimg, sched.gpc_prob, sched.gpc_fade_kimg),
        neural_rendering_resolution=neural_rendering_resolution(
            kimg, sched.nrr_initial, sched.nrr_final, sched.nrr_fade_kimg
        ),
        ema_beta=ema_beta(cur_nimg, config.run.batch_size, config.ema_kimg, sched.ema_rampup),
        patch_scales=scales,
        density_noise_std=linear_schedule(kimg, sched.density_noise_init, 0.0, sched.density_noise_kimg),
    )
