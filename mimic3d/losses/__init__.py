"""Losses, regularisers and schedules of EG3D and Mimic3D, and the LPIPS perceptual distance."""

from mimic3d.losses.blur import blur_images, blur_kernel
from mimic3d.losses.conditioning import swap_conditioning
from mimic3d.losses.gan import (
    density_regularization,
    discriminator_fake_loss,
    discriminator_real_loss,
    generator_logistic_loss,
    r1_loss,
    r1_penalty,
)
from mimic3d.losses.imitation import imitation_loss
from mimic3d.losses.lpips import LPIPS, build_lpips
from mimic3d.losses.schedules import (
    batch_scaled_kimg,
    blur_sigma,
    ema_beta,
    gpc_swap_prob,
    lazy_regularization,
    linear_schedule,
    neural_rendering_resolution,
)

__all__ = [
    "LPIPS",
    "batch_scaled_kimg",
    "blur_images",
    "blur_kernel",
    "blur_sigma",
    "build_lpips",
    "density_regularization",
    "discriminator_fake_loss",
    "discriminator_real_loss",
    "ema_beta",
    "generator_logistic_loss",
    "gpc_swap_prob",
    "imitation_loss",
    "lazy_regularization",
    "linear_schedule",
    "neural_rendering_resolution",
    "r1_loss",
    "r1_penalty",
    "swap_conditioning",
]
