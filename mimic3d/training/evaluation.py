"""Metrics at snapshots: ``run.metrics`` protocols on G_ema, per trained branch, shared by all processes.

Results are appended to ``<run>/metric-<name>.jsonl`` (with the branch and kimg in each record) by
``mimic3d.metrics.report_metric``; the returned values also go to TensorBoard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mimic3d.metrics import FeatureExtractor, compute_metric, get_protocol, load_inception, report_metric
from mimic3d.tools.rendering import render_settings

if TYPE_CHECKING:
    from mimic3d.training.loop import Trainer


def branch_generator(G, branch: str):
    """``generate(z, c) -> images`` of one branch, deterministic rendering, no gradients."""

    def generate(z: Tensor, c: Tensor) -> Tensor:
        with torch.no_grad(), render_settings(G):
            return G(z, c, branch=branch, noise_mode="const")["image"]

    return generate


def load_feature_extractor(metrics: list[str], device: torch.device) -> FeatureExtractor | None:
    """The Inception detector when a configured metric needs it (FID/KID), loaded once at start so
    that a missing file stops the run before training rather than at the first snapshot."""
    if all(get_protocol(name).kind == "swd" for name in metrics):
        return None
    return load_inception(device=device, option=None)  # training reads the cache folder only


def evaluate_metrics(trainer: Trainer, branches: tuple[str, ...]) -> dict[str, float]:
    """{"<metric>/<branch>/<result>": value} for every configured metric and branch."""
    config = trainer.config
    values: dict[str, float] = {}
    for name in config.run.metrics:
        for branch in branches:
            result = compute_metric(
                name,
                branch_generator(trainer.nets.G_ema, branch),
                trainer.labels,
                trainer.dataset,
                trainer.feature_extractor,
                z_dim=config.generator.z_dim,
                seed=config.run.seed,
                device=trainer.process.device,
                dataset_path=config.data.path,
                metadata={"branch": branch, "kimg": trainer.cur_nimg / 1000, "run": str(trainer.run_dir)},
            )
            report_metric(result, trainer.run_dir)
            for key, value in result.results.items():
                values[f"{key}/{branch}"] = float(value)
    if config.distilling and config.distill.eval_images > 0:
        values.update(correspondence(trainer))
    return values


def correspondence(trainer: Trainer) -> dict[str, float]:
    """Distillation: correspondence PSNR of G_ema (the student) against the teacher on
    ``distill.eval_images`` fixed (z, c) pairs (``mimic3d.metrics.distillation``)."""
    from mimic3d.metrics.correspondence import correspondence_psnr
    from mimic3d.metrics.distillation import branch_images

    config, teacher = trainer.config, trainer.teacher
    result = correspondence_psnr(
        branch_images(teacher, trainer.nets.G_ema.config.teacher_branch),
        branch_images(trainer.nets.G_ema, "2d"),
        trainer.labels,
        num_images=config.distill.eval_images,
        z_dim=teacher.z_dim,
        batch_size=config.distill.teacher_chunk,
        seed=config.run.seed,
        device=trainer.process.device,
    )
    return {"correspondence_psnr/2d": result.psnr_mean}
