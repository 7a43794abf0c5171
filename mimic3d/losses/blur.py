"""Blur of discriminator inputs early in training (EG3D), faded out by ``schedules.blur_sigma``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mimic3d.nn.resample import filter2d


def blur_kernel(sigma: float, device: torch.device | str | None = None) -> Tensor | None:
    """EG3D's separable blur taps [2k + 1], k = floor(3 sigma), or None when k = 0.

    The taps are 2^-(x / sigma)^2 normalised to unit sum: ``sigma`` is the half-width at half
    maximum, i.e. a Gaussian of standard deviation sigma / sqrt(2 ln 2) ~ 0.85 sigma.
    """
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"blur sigma must be a finite number >= 0, got {sigma}")
    half = math.floor(sigma * 3)
    if half <= 0:
        return None
    taps = torch.arange(-half, half + 1, device=device, dtype=torch.get_default_dtype())
    taps = taps.div(sigma).square().neg().exp2()
    return taps / taps.sum()


def blur_images(images: Tensor, sigma: float) -> Tensor:
    """images [N, C, H, W] blurred with ``blur_kernel(sigma)`` (zero padding, same size)."""
    taps = blur_kernel(sigma, device=images.device)
    return images if taps is None else filter2d(images, taps)
