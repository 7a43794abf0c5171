"""What an inversion minimises, and how its result is scored.

- ``ReconstructionLoss``: lpips_weight * LPIPS-VGG + l2_weight * pixel MSE against fixed targets, the
  loss of PTI's tuning (both weights 1 there); the targets' LPIPS features are computed once. Images
  larger than 256^2 are area-downsampled to 256^2 before LPIPS, as StyleGAN2's projector does (VGG
  was trained on 224^2 images).
- ``noise_regularization``: StyleGAN2's projector regulariser on the per-pixel noise maps (squared
  autocorrelation at one-pixel shifts, over a pyramid down to 8^2), with ``normalize_noise_`` run
  after each step.
- ``latent_distance``: squared distance of the latent to w_avg in units of W's spread (an optional
  prior that keeps the latent where the generator was trained).
- ``psnr``: the reported score, on images clipped to [-1, 1] (what a saved picture holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.losses.lpips import LPIPS

LPIPS_MAX_RESOLUTION = 256
NOISE_PYRAMID_MIN = 8


def lpips_input(images: Tensor) -> Tensor:
    """Images [N, 3, H, W] as LPIPS sees them: area-downsampled to 256^2 when larger."""
    if images.shape[-1] > LPIPS_MAX_RESOLUTION:
        images = F.interpolate(images, size=(LPIPS_MAX_RESOLUTION, LPIPS_MAX_RESOLUTION), mode="area")
    return images


@dataclass
class LossTerms:
    """Per-image loss terms [B]: the weighted total, LPIPS and pixel MSE."""

    total: Tensor
    lpips: Tensor
    l2: Tensor


class ReconstructionLoss:
    """lpips_weight * LPIPS + l2_weight * MSE between renders and targets [V, 3, H, W] in [-1, 1].

    ``lpips=None`` (or weight 0) leaves the pixel term alone. Call with renders [B, 3, H, W] and
    ``views`` [B] (the target each render is compared to; default: render i with target i).
    """

    def __init__(
        self, targets: Tensor, lpips: LPIPS | None, lpips_weight: float = 1.0, l2_weight: float = 1.0
    ) -> None:
        if lpips_weight < 0 or l2_weight < 0 or lpips_weight + l2_weight == 0:
            raise ValueError(
                f"lpips_weight, l2_weight: expected non-negative weights, not both 0; got "
                f"{lpips_weight}, {l2_weight}"
            )
        if lpips_weight > 0 and lpips is None:
            raise ValueError("lpips: an LPIPS network is needed for lpips_weight > 0")
        self.targets = targets.detach()
        self.lpips = lpips if lpips_weight > 0 else None
        self.lpips_weight, self.l2_weight = float(lpips_weight), float(l2_weight)
        self.target_features = None
        if self.lpips is not None:
            with torch.no_grad():
                self.target_features = self.lpips.features(lpips_input(self.targets))

    def terms(self, images: Tensor, views: Tensor | None = None) -> LossTerms:
        targets, features = self.targets, self.target_features
        if views is not None:
            targets = targets[views]
            features = None if features is None else [f[views] for f in features]
        elif images.shape[0] != targets.shape[0]:
            raise ValueError(f"images: {images.shape[0]} renders for {targets.shape[0]} targets; pass views")
        l2 = (images - targets).square().mean(dim=(1, 2, 3))
        zero = torch.zeros_like(l2)
        lpips = zero if self.lpips is None else self.lpips.distance_to(lpips_input(images), features)
        return LossTerms(self.lpips_weight * lpips + self.l2_weight * l2, lpips, l2)

    def __call__(self, images: Tensor, views: Tensor | None = None) -> Tensor:
        """The mean of the per-image totals (a scalar)."""
        return self.terms(images, views).total.mean()


def noise_regularization(noise_maps: list[Tensor]) -> Tensor:
    """StyleGAN2 projector's noise regulariser over maps [H, W]: sum over a pyramid (average-pooled by
    2 down to 8^2) of the squared mean products with the map shifted by one pixel along x and y."""
    total = noise_maps[0].new_zeros([]) if noise_maps else torch.zeros([])
    for noise in noise_maps:
        noise = noise[None, None]
        while True:
            total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean().square()
            total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean().square()
            if noise.shape[2] <= NOISE_PYRAMID_MIN:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return total


@torch.no_grad()
def normalize_noise_(noise_maps: list[Tensor]) -> None:
    """Zero mean and unit variance for every map, in place (the projector does this after each step)."""
    for noise in noise_maps:
        noise -= noise.mean()
        noise *= noise.square().mean().rsqrt()


def latent_distance(ws: Tensor, w_avg: Tensor, w_std: float) -> Tensor:
    """Mean over layers of |ws - w_avg|^2 / w_std^2 for ws [N, num_ws, w_dim], w_avg [1, 1, w_dim]:
    about 1 for a typical mapped sample, 0 at w_avg."""
    return (ws - w_avg).square().sum(dim=-1).mean() / (w_std * w_std)


def psnr(images: Tensor, targets: Tensor) -> Tensor:
    """PSNR in dB [N] of images against targets [N, 3, H, W], both clipped to [-1, 1] (peak-to-peak 2);
    the MSE is floored at 1e-20, so identical images score 206 dB."""
    mse = (images.clamp(-1, 1) - targets.clamp(-1, 1)).double().square().mean(dim=(1, 2, 3))
    return (10 * torch.log10(4 / mse.clamp(min=1e-20))).float()
