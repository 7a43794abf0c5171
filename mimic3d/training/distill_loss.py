"""NeRF-GAN distillation's objective, phase by phase, in the shared Trainer (Shahbazi et al. 2023, Eq. 1-3).

- ``Gmain``: the teacher renders targets for the chunk's latents and cameras without gradients (in
  chunks of ``distill.teacher_chunk``); the student renders from the teacher's ws and the same
  camera. Loss = ``feature_weight`` x SmoothL1(features) + ``lpips_lr_weight`` x LPIPS(LR images)
  + ``lpips_hr_weight`` x LPIPS(final images) + ``depth_weight`` x SmoothL1(depth / ray range),
  plus, from ``distill.adversarial_kimg`` on (stage 2), ``adversarial_weight`` x the dual
  discriminator's non-saturating loss on the student's images.
- ``Dmain`` / ``Dreg``: EG3D's, on the student's fakes against the dataset's reals (they run only
  in stage 2: their phases start at ``adversarial_kimg``, see ``optimization.build_phases``).

Teacher targets (``mimic3d.models.student.teacher_targets``) are rendered deterministically (no
jitter, constant noise): the student learns the image the tools show.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.losses import LPIPS, generator_logistic_loss, swap_conditioning
from mimic3d.metrics.correspondence import psnr
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.student import StudentGenerator, teacher_targets
from mimic3d.training.augment import AdaptiveProbability, AugmentPipe
from mimic3d.training.config import TrainConfig
from mimic3d.training.loss import Chunk, PhaseResult, TriplaneGANLoss
from mimic3d.training.schedule import Progress

DISTILL_PHASES = ("Gmain", "Dmain", "Dreg")
LPIPS_MIN_SIZE = 16  # four 2x poolings in VGG16's first taps
# Loss term -> the DistillConfig field weighting it (the reconstruction terms; adversarial apart).
TERM_WEIGHTS = {
    "features": "feature_weight",
    "lpips_lr": "lpips_lr_weight",
    "lpips_hr": "lpips_hr_weight",
    "depth": "depth_weight",
}


def reconstruction_terms(
    student: dict[str, Tensor],
    target: dict[str, Tensor],
    lpips: LPIPS | None,
    ray_range: tuple[float, float],
    perceptual: tuple[str, ...] = ("lpips_lr", "lpips_hr"),
) -> dict[str, Tensor]:
    """Per-sample [N] distances between the student's outputs and the teacher's targets (both dicts
    with ``feature_image``, ``image_raw``, ``image_depth``, ``image``; see ``teacher_targets``) for
    each term of ``TERM_WEIGHTS``; the LPIPS terms only those named in ``perceptual``, with an
    ``lpips`` network.

    Depths are compared after mapping the teacher's ray range to [-1, 1], so the term is O(1)
    whatever the scene's scale.
    """
    start, end = ray_range
    mid, half = (start + end) / 2, (end - start) / 2

    def smooth_l1(a: Tensor, b: Tensor) -> Tensor:
        return F.smooth_l1_loss(a, b, reduction="none").mean(dim=(1, 2, 3))

    terms = {
        "features": smooth_l1(student["feature_image"], target["feature_image"]),
        "depth": smooth_l1((student["image_depth"] - mid) / half, (target["image_depth"] - mid) / half),
    }
    images = {"lpips_lr": "image_raw", "lpips_hr": "image"}
    for name in perceptual if lpips is not None else ():
        terms[name] = lpips(student[images[name]], target[images[name]])
    return terms


class DistillLoss(TriplaneGANLoss):
    """Accumulates one phase's gradients for one chunk; ``G`` is the student, ``teacher`` stays frozen."""

    def __init__(
        self,
        config: TrainConfig,
        G: StudentGenerator,
        teacher: TriplaneGenerator,
        D: nn.Module,
        augment_pipe: AugmentPipe | None = None,
        ada: AdaptiveProbability | None = None,
        lpips: LPIPS | None = None,
    ) -> None:
        if not config.distilling:
            raise ValueError("DistillLoss trains distillation configs (a distill section)")
        distill = config.distill
        if lpips is None and (distill.lpips_lr_weight > 0 or distill.lpips_hr_weight > 0):
            raise ValueError("distill.lpips_lr_weight, distill.lpips_hr_weight > 0 need an LPIPS network")
        resolution = G.config.neural_rendering_resolution
        if distill.lpips_lr_weight > 0 and resolution < LPIPS_MIN_SIZE:
            raise ValueError(
                f"distill.lpips_lr_weight: LPIPS needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE}, "
                f"the student's low-resolution image is {resolution}x{resolution}; set it to 0"
            )
        super().__init__(config, G, D, None, augment_pipe, ada, lpips)
        self.teacher = teacher
        rendering = teacher.config.rendering
        self.ray_range = (rendering.ray_start, rendering.ray_end)

    def handlers(self) -> dict[str, Callable[[Chunk, Progress], PhaseResult]]:
        return {
            "Gmain": self._distill_main,
            "Dmain": self._discriminator_main,
            "Dreg": self._discriminator_r1,
        }

    def adversarial_active(self, progress: Progress) -> bool:
        """Stage 2: the adversarial term is on from ``distill.adversarial_kimg``."""
        start = self.config.distill.adversarial_nimg
        return start is not None and progress.cur_nimg >= start

    def targets(self, ws: Tensor, c: Tensor) -> dict[str, Tensor]:
        """The teacher's targets for the student's branch, in ``distill.teacher_chunk`` chunks."""
        student = self.G.config
        return teacher_targets(
            self.teacher,
            ws,
            c,
            student.teacher_branch,
            student.neural_rendering_resolution,
            self.config.distill.teacher_chunk,
        )

    def _distill_main(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        distill = self.config.distill
        c_cond = swap_conditioning(chunk.gen_c, progress.swap_prob)
        with torch.no_grad():
            ws = self.teacher.mapping(chunk.gen_z, c_cond)
        target = self.targets(ws, chunk.gen_c)
        out = self.G.synthesis(ws, chunk.gen_c, noise_mode=self.config.loss.noise_mode)
        perceptual = tuple(t for t in ("lpips_lr", "lpips_hr") if getattr(distill, TERM_WEIGHTS[t]) > 0)
        terms = reconstruction_terms(out, target, self.lpips, self.ray_range, perceptual)
        objective = torch.zeros([], device=ws.device)
        stats: dict[str, Tensor] = {}
        for name, value in terms.items():
            stats[f"Loss/G/{name}"] = value
            weight = getattr(distill, TERM_WEIGHTS[name])
            if weight > 0:
                objective = objective + weight * value.mean()
        if self.adversarial_active(progress):
            logits = self.run_D(out, chunk.gen_c, progress.blur_sigma)
            adversarial = generator_logistic_loss(logits)
            objective = objective + distill.adversarial_weight * adversarial.mean()
            stats.update(
                {"Loss/scores/fake": logits, "Loss/signs/fake": logits.sign(), "Loss/G/loss": adversarial}
            )
        stats["Loss/G/total"] = objective
        stats["Distill/psnr"] = psnr(out["image"].detach(), target["image"]).float()
        return PhaseResult(objective, stats)
