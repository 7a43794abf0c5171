"""The EG3D / Mimic3D training objective, phase by phase, composed from ``mimic3d.losses``.

Phases (EG3D's names; the loop runs each every ``interval`` steps with ``gain = interval``):

- ``Gmain``: non-saturating loss of the dual discriminator on the 2D branch; with the 3D branch
  trained (Mimic3D stage 2 / end to end), plus ``imitation_weight`` x LPIPS between a
  ``patch_resolution`` window of the full-resolution 3D render and the same window of the
  stop-gradient 2D image, plus ``patch_gan`` x the patch discriminator's non-saturating loss.
- ``Greg``: density regulariser (L1 between raw sigmas at x and x + N(0, offset^2)).
- ``Dmain`` / ``Dreg``: logistic loss on fakes and reals / R1 on both D inputs (lazy).
- ``Dpatch_main`` / ``Dpatch_reg``: the same for D^3D on 3D patches against random crops of reals.

Official numerics kept: the D-input blur applies to ``image`` inside every D pass, and the real
``image_raw`` (the real image resized to the rendering resolution) is blurred once more before;
fakes' ``image_raw`` is not blurred. ADA transforms both D inputs identically and every patch.
R1 (``loss.r1_target``) is by default the official one: the gradient with respect to the tensors
D actually sees, after the blur and the augmentation (``discriminator_input``: EG3D's and Mimic3D's
``run_D`` write the blurred/augmented images back into the dict that R1 then differentiates);
``input`` differentiates with respect to the real images before both (StyleGAN2-ADA's definition).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mimic3d.losses import (
    LPIPS,
    blur_images,
    density_regularization,
    discriminator_fake_loss,
    discriminator_real_loss,
    generator_logistic_loss,
    imitation_loss,
    r1_loss,
    swap_conditioning,
)
from mimic3d.models.discriminator import resize_raw_image
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.training.augment import AdaptiveProbability, AugmentPipe
from mimic3d.training.config import TrainConfig
from mimic3d.training.patches import (
    PixelWindows,
    ScaledPatches,
    random_windows,
    sample_scaled_patches,
    score_patches,
)
from mimic3d.training.schedule import Progress

PHASES = ("Gmain", "Greg", "Dmain", "Dreg", "Dpatch_main", "Dpatch_reg")


@dataclass
class Chunk:
    """One chunk of a step: real images [b, 3, R, R] in [-1, 1] with cameras [b, 25], latents
    [b, z_dim] and rendering cameras [b, 25] for the fakes."""

    real_img: Tensor
    real_c: Tensor
    gen_z: Tensor
    gen_c: Tensor


@dataclass
class PhaseResult:
    """What a phase back-propagated (``objective``, a scalar before the gain) and its statistics."""

    objective: Tensor
    stats: dict[str, Tensor]


def discriminator_objective(fake_logits: Tensor, real_logits: Tensor) -> PhaseResult:
    """``Dmain``: logistic loss on fakes and reals (logits [N, 1] each), with EG3D's statistics."""
    loss_fake, loss_real = discriminator_fake_loss(fake_logits), discriminator_real_loss(real_logits)
    return PhaseResult(
        loss_fake.mean() + loss_real.mean(),
        {
            "Loss/scores/fake": fake_logits,
            "Loss/signs/fake": fake_logits.sign(),
            "Loss/scores/real": real_logits,
            "Loss/signs/real": real_logits.sign(),
            "Loss/D/loss": loss_fake + loss_real,
        },
    )


class TriplaneGANLoss:
    """Accumulates the gradients of one phase for one chunk (EG3D's ``accumulate_gradients``)."""

    def __init__(
        self,
        config: TrainConfig,
        G: TriplaneGenerator,
        D: nn.Module,
        D_patch: nn.Module | None = None,
        augment_pipe: AugmentPipe | None = None,
        ada: AdaptiveProbability | None = None,
        lpips: LPIPS | None = None,
    ) -> None:
        loss = config.loss
        if loss.imitation_weight > 0 and lpips is None:
            raise ValueError("loss.imitation_weight > 0 needs an LPIPS network")
        if loss.patch_gan > 0 and D_patch is None:
            raise ValueError("loss.patch_gan > 0 needs a patch discriminator")
        self.config, self.G, self.D, self.D_patch = config, G, D, D_patch
        self.augment_pipe, self.ada, self.lpips = augment_pipe, ada, lpips

    def handlers(self) -> dict[str, Callable[[Chunk, Progress], PhaseResult]]:
        """Phase name -> its forward pass (a subclass's phase set overrides this)."""
        return {
            "Gmain": self._generator_main,
            "Greg": self._generator_density,
            "Dmain": self._discriminator_main,
            "Dreg": self._discriminator_r1,
            "Dpatch_main": self._patch_main,
            "Dpatch_reg": self._patch_r1,
        }

    def accumulate(self, phase: str, chunk: Chunk, gain: float, progress: Progress) -> PhaseResult:
        """Forward and backward of ``phase``: gradients of ``objective * gain`` land in .grad."""
        handlers = self.handlers()
        if phase not in handlers:
            raise ValueError(f"phase: expected one of {tuple(handlers)}, got {phase!r}")
        result = handlers[phase](chunk, progress)
        result.objective.mul(gain).backward()
        return PhaseResult(result.objective.detach(), {k: v.detach() for k, v in result.stats.items()})

    # ------------------------------------------------------------------ D passes

    def discriminator_inputs(self, images: Mapping[str, Tensor], sigma: float) -> dict[str, Tensor]:
        """What the dual discriminator sees: ``image`` blurred, then both inputs augmented alike."""
        image, image_raw = blur_images(images["image"], sigma), images["image_raw"]
        if self.augment_pipe is not None:
            image, image_raw = self.augment_pipe.augment_pair(image, image_raw)
        return {"image": image, "image_raw": image_raw}

    def patch_discriminator_input(self, patches: Tensor, sigma: float) -> Tensor:
        """What D^3D sees of patches [N, 3, p, p]: blurred, then augmented."""
        patches = blur_images(patches, sigma)
        return patches if self.augment_pipe is None else self.augment_pipe(patches)

    def run_D(self, images: Mapping[str, Tensor], c: Tensor, sigma: float) -> Tensor:
        """Blur ``image``, augment both inputs alike, score with the dual discriminator -> [N, 1]."""
        return self.D(self.discriminator_inputs(images, sigma), c)

    def run_D_patch(
        self, patches: Tensor, where: PixelWindows | ScaledPatches, c: Tensor, sigma: float
    ) -> Tensor:
        """Blur, augment and score patches [N, 3, p, p] cut at ``where`` (cameras c) with D^3D -> [N, 1]."""
        return score_patches(self.D_patch, self.patch_discriminator_input(patches, sigma), where, c)

    def place_patches(
        self, batch: int, resolution: int, progress: Progress, device: torch.device
    ) -> PixelWindows | ScaledPatches:
        """Where a pass's patches sit: Mimic3D's pixel windows, or scaled patches (``patches``)."""
        size = self.config.loss.patch_resolution
        if progress.patch_scales is None:
            top, left = random_windows(batch, resolution, size, device)
            return PixelWindows(top, left, size, resolution)
        group = self.config.patch_d_config.mbstd_group_size if self.D_patch is not None else 1
        grid = self.G.config.rendering.pixel_grid
        return sample_scaled_patches(progress.patch_scales, batch, size, group or 1, device, grid)

    def real_pair(self, real_img: Tensor, progress: Progress) -> dict[str, Tensor]:
        """Real D inputs: the image and its blurred resize to the rendering resolution."""
        raw = resize_raw_image(real_img, progress.neural_rendering_resolution)
        return {"image": real_img, "image_raw": blur_images(raw, progress.blur_sigma)}

    # ------------------------------------------------------------------ G passes

    def _mapping(self, chunk: Chunk, progress: Progress, per_sample: bool = True, update_emas: bool = False):
        c_cond = swap_conditioning(chunk.gen_c, progress.swap_prob, per_sample=per_sample)
        return self.G.mapping(chunk.gen_z, c_cond, update_emas=update_emas)

    def _render_2d(self, ws: Tensor, c: Tensor, progress: Progress, planes=None) -> dict[str, Tensor]:
        return self.G.synthesis(
            ws,
            c,
            branch="2d",
            noise_mode=self.config.loss.noise_mode,
            neural_rendering_resolution=progress.neural_rendering_resolution,
            planes=planes,
        )

    def _patch_3d(
        self, ws: Tensor, c: Tensor, planes, progress: Progress
    ) -> tuple[Tensor, PixelWindows | ScaledPatches]:
        """The 3D branch's patch [N, 3, p, p] at fresh random placements, and where it sits."""
        noise_mode = self.config.loss.noise_mode
        where = self.place_patches(ws.shape[0], self.G.img_resolution, progress, ws.device)
        if isinstance(where, PixelWindows):
            patch = self.G.render_patch(ws, c, where.top, where.left, where.size, noise_mode, planes=planes)
            return patch["image"], where
        patch = self.G.render_scaled_patch(
            ws, c, where.scale, where.offset, where.resolution, noise_mode, planes=planes
        )
        return patch["image"], where

    def _generator_main(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        loss_cfg = self.config.loss
        ws = self._mapping(chunk, progress)
        planes = self.G.planes(
            ws, noise_mode=loss_cfg.noise_mode, residual=self.G.config.sr3d and loss_cfg.trains_3d_branch
        )
        fake = self._render_2d(ws, chunk.gen_c, progress, planes)
        logits = self.run_D(fake, chunk.gen_c, progress.blur_sigma)
        adversarial = generator_logistic_loss(logits)
        objective = adversarial.mean()
        stats = {"Loss/scores/fake": logits, "Loss/signs/fake": logits.sign(), "Loss/G/loss": adversarial}
        if loss_cfg.trains_3d_branch:
            patch, where = self._patch_3d(ws, chunk.gen_c, planes, progress)
            if loss_cfg.imitation_weight > 0 or loss_cfg.imitation_l1 > 0:
                teacher = where.crop(fake["image"].detach())
            if loss_cfg.imitation_weight > 0:
                imitation = imitation_loss(self.lpips, patch, teacher)
                objective = objective + imitation.mean() * loss_cfg.imitation_weight
                stats["Loss/G/imitation"] = imitation
            if loss_cfg.imitation_l1 > 0:
                pixel = (patch - teacher).abs().mean(dim=[1, 2, 3])
                objective = objective + pixel.mean() * loss_cfg.imitation_l1
                stats["Loss/G/imitation_l1"] = pixel
            if loss_cfg.patch_gan > 0:
                patch_logits = self.run_D_patch(patch, where, chunk.gen_c, progress.blur_sigma)
                patch_loss = generator_logistic_loss(patch_logits) * loss_cfg.patch_gan
                objective = objective + patch_loss.mean()
                stats.update({"Loss/scores/patch_fake": patch_logits, "Loss/G/patch": patch_loss})
        stats["Loss/G/total"] = objective
        return PhaseResult(objective, stats)

    def _generator_density(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        loss_cfg = self.config.loss
        ws = self._mapping(chunk, progress, per_sample=False)

        def sigma(points: Tensor, latents: Tensor) -> Tensor:
            return self.G.sample_density(points, latents, noise_mode=loss_cfg.noise_mode)

        tv = density_regularization(sigma, ws, loss_cfg.density_reg_points, loss_cfg.density_reg_offset)
        objective = tv * loss_cfg.density_reg
        return PhaseResult(objective, {"Loss/G/reg": objective})

    # ------------------------------------------------------------------ D phases

    def _discriminator_main(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        with torch.no_grad():
            ws = self._mapping(chunk, progress, update_emas=True)
            fake = self._render_2d(ws, chunk.gen_c, progress)
        fake_logits = self.run_D(fake, chunk.gen_c, progress.blur_sigma)
        real_logits = self.run_D(self.real_pair(chunk.real_img, progress), chunk.real_c, progress.blur_sigma)
        if self.ada is not None:
            self.ada.observe(real_logits)
        return discriminator_objective(fake_logits, real_logits)

    def _discriminator_r1(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        real = self.real_pair(chunk.real_img, progress)
        leaves = {key: value.detach().requires_grad_(True) for key, value in real.items()}
        seen = self.discriminator_inputs(leaves, progress.blur_sigma)
        logits = self.D(seen, chunk.real_c)
        if self.ada is not None:
            self.ada.observe(logits)
        targets = seen if self.config.loss.r1_target == "discriminator_input" else leaves
        penalty = r1_loss(logits, [targets["image"], targets["image_raw"]], self.config.loss.r1_gamma)
        return PhaseResult(
            penalty.mean(),
            {"Loss/scores/real": logits, "Loss/signs/real": logits.sign(), "Loss/D/reg": penalty},
        )

    def _patch_main(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        # Real patches first, then the fakes' (Mimic3D's order of draws).
        real_img = chunk.real_img
        real_where = self.place_patches(real_img.shape[0], real_img.shape[-1], progress, real_img.device)
        real = real_where.crop(real_img)
        with torch.no_grad():
            ws = self._mapping(chunk, progress)
            planes = self.G.planes(ws, noise_mode=self.config.loss.noise_mode)
            fake, fake_where = self._patch_3d(ws, chunk.gen_c, planes, progress)
        fake_logits = self.run_D_patch(fake, fake_where, chunk.gen_c, progress.blur_sigma)
        real_logits = self.run_D_patch(real, real_where, chunk.real_c, progress.blur_sigma)
        loss_fake, loss_real = discriminator_fake_loss(fake_logits), discriminator_real_loss(real_logits)
        return PhaseResult(
            loss_fake.mean() + loss_real.mean(),
            {
                "Loss/scores/patch_fake": fake_logits,
                "Loss/scores/patch_real": real_logits,
                "Loss/D_patch/loss": loss_fake + loss_real,
            },
        )

    def _patch_r1(self, chunk: Chunk, progress: Progress) -> PhaseResult:
        real_img = chunk.real_img
        where = self.place_patches(real_img.shape[0], real_img.shape[-1], progress, real_img.device)
        real = where.crop(real_img).detach().requires_grad_(True)
        seen = self.patch_discriminator_input(real, progress.blur_sigma)
        logits = score_patches(self.D_patch, seen, where, chunk.real_c)
        target = seen if self.config.loss.r1_target == "discriminator_input" else real
        penalty = r1_loss(logits, [target], self.config.loss.patch_r1_gamma)
        return PhaseResult(penalty.mean(), {"Loss/scores/patch_real": logits, "Loss/D_patch/reg": penalty})
