"""Similarity of corresponding images (PSNR, SSIM) and correspondence PSNR between two generators.

Images are in [-1, 1] (the generators' output range); both scores are computed as for [0, 1]
images, x -> (x + 1) / 2, so numbers compare with papers that report them on 8-bit or [0, 1] images:
PSNR = 10 log10(1 / MSE), SSIM with data range 1.

SSIM follows Wang et al. (2004) as pytorch-msssim does (and scikit-image with gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1): an 11x11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, population (biased) local statistics, only windows that lie fully inside the
image ("valid" filtering), the SSIM map averaged over positions and channels.

Correspondence PSNR (NeRF-GAN distillation: Shahbazi et al. 2023, "NeRF-GAN Distillation for
Memory-Efficient 3D-Aware Generation with Convolutions") measures how closely a student
reproduces its teacher: both generators get the same (z, c), and the per-image PSNR between their
images is averaged over the samples (the paper used 1k images: 28.49 FFHQ, 28.10 AFHQ, 33.02
ShapeNet). Identical generators give +inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.metrics.runner import GenerateFn, LabelSampler, latent_dim

# Errors of [-1, 1] images measured as if they were [0, 1]: differences halve.
_TO_UNIT_RANGE = 0.5


def _check_image_pair(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    for name, x in zip(names, (a, b)):
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected an image tensor [N, C, H, W], got {shape}")
    if a.shape != b.shape:
        raise ValueError(f"{names[1]}: expected the shape of {names[0]} {list(a.shape)}, got {list(b.shape)}")


def _masked_mean(error: Tensor, mask: Tensor | None) -> Tensor:
    """Per-image mean of error [N, C, H, W] over the pixels of mask [N, 1, H, W] -> [N]."""
    if mask is None:
        return error.mean(dim=(1, 2, 3))
    n, channels, height, width = error.shape
    if mask.ndim != 4 or tuple(mask.shape) != (n, 1, height, width):
        raise ValueError(f"mask: expected shape [{n}, 1, {height}, {width}], got {list(mask.shape)}")
    weight = mask.to(error.dtype)
    return (error * weight).sum(dim=(1, 2, 3)) / (weight.sum(dim=(1, 2, 3)) * channels)


def masked_mse(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image mean squared error of [-1, 1] images on the [0, 1] scale: [N, C, H, W] -> [N] (float64).

    ``mask`` [N, 1, H, W] (bool or 0/1 weights) restricts the mean to its pixels; an image with an
    empty mask gives NaN.
    """
    _check_image_pair(a, b, ("a", "b"))
    return _masked_mean(((a.double() - b.double()) * _TO_UNIT_RANGE).square(), mask)


def masked_l1(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image mean absolute error of [-1, 1] images on the [0, 1] scale -> [N] (see ``masked_mse``)."""
    _check_image_pair(a, b, ("a", "b"))
    return _masked_mean((a.double() - b.double()).abs() * _TO_UNIT_RANGE, mask)


def mse_to_psnr(mse: Tensor) -> Tensor:
    """PSNR in dB of [0, 1]-scale mean squared errors (0 gives +inf)."""
    return -10 * torch.log10(mse)


def psnr(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image PSNR (dB) of [-1, 1] images [N, C, H, W] on the [0, 1] scale -> [N] (float64).

    ``mask`` [N, 1, H, W]: only its pixels count (see ``masked_mse``). Identical images give +inf.
    """
    return mse_to_psnr(masked_mse(a, b, mask))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """Normalised 1D Gaussian [size] (float64) centred on the middle tap; SSIM's window: its outer product."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"window_size: expected a positive odd int, got {size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma: expected a positive number, got {sigma!r}")
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-offsets.square() / (2 * sigma**2))
    return window / window.sum()


def ssim(
    a: Tensor, b: Tensor, window_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
) -> Tensor:
    """Per-image SSIM of [-1, 1] images [N, C, H, W] on the [0, 1] scale -> [N] (float64).

    Identical images give exactly 1; images smaller than the window raise ValueError.
    """
    _check_image_pair(a, b, ("a", "b"))
    if min(a.shape[-2:]) < window_size:
        raise ValueError(
            f"a: images of {a.shape[-2]}x{a.shape[-1]} are smaller than the {window_size}-pixel SSIM window"
        )
    window = gaussian_window(window_size, sigma).to(a.device)
    channels = a.shape[1]
    rows = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)

    def local_mean(x: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x, rows, groups=channels), cols, groups=channels)

    x = (a.double() + 1) / 2
    y = (b.double() + 1) / 2
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x.square()
    var_y = local_mean(y * y) - mu_y.square()
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = k1**2, k2**2
    luminance = (2 * mu_x * mu_y + c1) / (mu_x.square() + mu_y.square() + c1)
    structure = (2 * cov + c2) / (var_x + var_y + c2)
    return (luminance * structure).mean(dim=(1, 2, 3))


@dataclass
class CorrespondenceResult:
    """Correspondence PSNR of generator B against generator A (the reference) over ``num_images``."""

    psnr_per_image: Tensor  # [num_images] float64, +inf where the images are identical
    psnr_mean: float  # mean of the per-image PSNRs (+inf if any is +inf)
    psnr_of_mean_mse: float  # PSNR of the MSE averaged over all images (robust to identical pairs)

    def as_dict(self) -> dict[str, float | int]:
        return {"psnr": self.psnr_mean, "psnr_of_mean_mse": self.psnr_of_mean_mse,
                "num_images": int(self.psnr_per_image.numel())}


def correspondence_psnr(
    generate_a: GenerateFn,
    generate_b: GenerateFn,
    labels: LabelSampler,
    num_images: int = 1000,
    z_dim: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> CorrespondenceResult:
    """Mean PSNR between ``generate_a(z, c)`` and ``generate_b(z, c)`` on the same z ~ N(0, I) and c.

    ``generate_*``: (z [N, z_dim], c [N, 25]) -> images [N, 3, H, W] in [-1, 1] (choose the branch,
    truncation and noise mode in the callables; use deterministic rendering, ``perturb=False``, so
    that the number measures the models, not the sampler); ``labels.sample(n, generator, device)``
    draws the cameras (``mimic3d.data.DatasetCameraSampler``). Both images must have the same size:
    resize outside if the student renders at another resolution. ``z_dim`` defaults to the
    callables' ``z_dim`` attribute (``mimic3d.metrics.runner.latent_dim``).
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images: expected a positive int, got {num_images!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    z_dim = latent_dim(z_dim, generate_a, generate_b)
    rng = torch.Generator().manual_seed(seed)
    errors: list[Tensor] = []
    done = 0
    while done < num_images:
        n = min(batch_size, num_images - done)
        z = torch.randn(n, z_dim, generator=rng).to(device)
        c = labels.sample(n, generator=rng, device=device)
        with torch.no_grad():
            image_a, image_b = generate_a(z, c), generate_b(z, c)
        _check_image_pair(image_a, image_b, ("generate_a(z, c)", "generate_b(z, c)"))
        errors.append(masked_mse(image_a, image_b).cpu())
        done += n
    mse = torch.cat(errors)
    per_image = mse_to_psnr(mse)
    return CorrespondenceResult(per_image, float(per_image.mean()), float(mse_to_psnr(mse.mean())))
