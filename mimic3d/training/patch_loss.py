"""EpiGRAF's patch-wise objective, phase by phase (its ``StyleGAN2Loss`` with patch training on).

Every discriminator input is an r x r scaled patch (``mimic3d.training.patches``): fakes are rendered
through the patch's rays only, reals are bilinear crops at exactly the same points. Each pass draws
its own patch parameters (one per minibatch-std group), so real and fake patches are independent
draws from the current scale distribution (``Progress.patch_scales``).

- ``Gmain``: non-saturating loss of the hyper-modulated D on fake patches.
- ``Dmain``: logistic loss on fake and real patches.
- ``Dreg``: R1 on real patches (lazy, every ``loss.r1_interval`` steps). EpiGRAF's code takes it
  with respect to the cropped patch before blur and augmentation (``loss.r1_target=input``, its
  presets); ``discriminator_input`` takes it on the patch D sees, after both, as EG3D does.

A D pass blurs the patch (the early-training fade), augments it (ADA; the patch parameters stay
those of the crop) and scores it with its scale, offset and, with ``camera_cond``, the camera's yaw
and pitch. There is no generator regulariser (EpiGRAF has none).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mimic3d.losses import (
    blur_images,
    generator_logistic_loss,
    r1_loss,
    swap_conditioning,
)
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.training.augment import AdaptiveProbability, AugmentPipe
from mimic3d.training.config import TrainConfig
from mimic3d.training.loss import Chunk, PhaseResult, discriminator_objective
from mimic3d.training.patches import (
    ScaledPatches,
    sample_scaled_patches,
    score_patches,
)
from mimic3d.training.schedule import Progress

PATCH_WISE_PHASES = ("Gmain", "Dmain", "Dreg")


class PatchGANLoss:
    """Accumulates the gradients of one phase for one chunk, as ``TriplaneGANLoss`` does."""

    def __init__(
        self,
        config: TrainConfig,
        G: TriplaneGenerator,
        D: nn.Module,
        augment_pipe: AugmentPipe | None = None,
        ada: AdaptiveProbability | None = None,
    ) -> None:
        if not config.patch_wise:
            raise ValueError("PatchGANLoss trains patch-wise configs (discriminator: null)")
        self.config, self.G, self.D = config, G, D
        self.augment_pipe, self.ada = augment_pipe, ada
        self.group_size = config.hyper_discriminator.mbstd_group_size or 1

    def accumulate(self, phase: str, chunk: Chunk, gain: float, progress: Progress) -> PhaseResult:
        """Forward and backward of ``phase``: gradients of ``objective * gain`` land in .grad."""
        handlers = {
            "Gmain": self._generator_main,
            "Dmain": self._discriminator_main,
            "Dreg": self._discriminator_r1,
        }
        if phase not in handlers:
            raise ValueError(f"phase: patch-wise training has phases {PATCH_WISE_PHASES}, got {phase!r}")
        result = handlers[phase](chunk, progress)
        result.objective.mul(gain).backward()
        return PhaseResult(result.objective.detach(), {k: v.detach() for k, v in result.stats.items()})

    # ------------------------------------------------------------------ pieces

    def draw(self, batch: int, progress: Progress, device: torch.device) -> ScaledPatches:
        """Patch parameters for one pass (fresh draws every call)."""
        size, grid = self.config.loss.patch_resolution, self.G.config.rendering.pixel_grid
        return sample_scaled_patches(progress.patch_scales, batch, size, self.group_size, device, grid)

    def discriminator_input(self, patches: Tensor, sigma: float) -> Tensor:
        """What D sees of patches [N, 3, r, r]: blurred, then augmented."""
        patches = blur_images(patches, sigma)
        return patches if self.augment_pipe is None else self.augment_pipe(patches)

    def run_D(self, patches: Tensor, where: ScaledPatches, c: Tensor, sigma: float) -> Tensor:
        """Blur, augment and score patches [N, 3, r, r] cut at ``where`` -> logits [N, 1]."""
        return score_patches(self.D, self.discriminator_input(patches, sigma), where, c)

    def fake_patches(
        self, chunk: Chunk, progress: Progress, update_emas: bool = False
    ) -> tuple[Tensor, ScaledPatches]:
        """Rendered patches [N, 3, r, r] of the chunk's latents at fresh patch parameters."""
        c_cond = swap_conditioning(chunk.gen_c, progress.swap_prob)
        ws = self.G.mapping(chunk.gen_z, c_cond, update_emas=update_emas)
        where = self.draw(ws.shape[0], progress, ws.device)
        patch = self.G.render_scaled_patch(
            ws, chunk.gen_c, where.scale, where.offset, where.resolution, self.config.loss.noise_mode
        )
        return patch["image"], where

    # ------------------------------------------------------------------ phases

    def _generator_main(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        fake, where = self.fake_patches(chunk, progress)
        logits = self.run_D(fake, where, chunk.gen_c, progress.blur_sigma)
        loss = generator_logistic_loss(logits)
        stats = {
            "Loss/scores/fake": logits,
            "Loss/signs/fake": logits.sign(),
            "Loss/G/loss": loss,
            "Loss/G/total": loss,
            "Patches/fake_scale": where.scale,
        }
        return PhaseResult(loss.mean(), stats)

    def _discriminator_main(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        with torch.no_grad():
            fake, fake_where = self.fake_patches(chunk, progress, update_emas=True)
        fake_logits = self.run_D(fake, fake_where, chunk.gen_c, progress.blur_sigma)
        real_where = self.draw(chunk.real_img.shape[0], progress, chunk.real_img.device)
        real = real_where.crop(chunk.real_img)
        real_logits = self.run_D(real, real_where, chunk.real_c, progress.blur_sigma)
        if self.ada is not None:
            self.ada.observe(real_logits)
        result = discriminator_objective(fake_logits, real_logits)
        result.stats["Patches/real_scale"] = real_where.scale
        return result

    def _discriminator_r1(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        where = self.draw(chunk.real_img.shape[0], progress, chunk.real_img.device)
        real = where.crop(chunk.real_img).detach().requires_grad_(True)
        seen = self.discriminator_input(real, progress.blur_sigma)
        logits = score_patches(self.D, seen, where, chunk.real_c)
        if self.ada is not None:
            self.ada.observe(logits)
        target = seen if self.config.loss.r1_target == "discriminator_input" else real
        penalty = r1_loss(logits, [target], self.config.loss.r1_gamma)
        return PhaseResult(
            penalty.mean(),
            {"Loss/scores/real": logits, "Loss/signs/real": logits.sign(), "Loss/D/reg": penalty},
        )
