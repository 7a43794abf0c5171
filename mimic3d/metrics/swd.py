"""Sliced Wasserstein distance on Laplacian-pyramid patches (ProGAN's SWD metric), weight-free.

Procedure of Karras et al. 2018 (``metrics/sliced_wasserstein.py`` of progressive_growing_of_gans):

1. Each uint8 image is split into a Laplacian pyramid (5x5 binomial filter, reflected borders,
   as ``cv2.pyrDown``/``pyrUp``), one level per resolution from the full one down to 16 px; the
   last level is the low-pass residual.
2. From every level of every image, 128 random 7x7 patches (all channels) are taken as descriptors.
3. Each set's descriptors of a level are normalised per channel by that set's own mean and std.
4. The distance of a level is the mean, over 4 repeats of 128 random unit directions (512
   projections in all), of the mean absolute difference between the sorted projections of the two
   sets. Results are reported x1e3 per level and averaged.

Random choices use seeded ``torch.Generator`` objects (ProGAN used NumPy's global state), so
numbers are reproducible run to run but not draw-for-draw identical to ProGAN's; the real and
generated sets draw patch positions from equally seeded generators.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.metrics.distributed import gather_rows

_BINOMIAL_5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


@dataclass(frozen=True)
class SWDConfig:
    """ProGAN's settings.

    Attributes:
        patch_size: side of the square descriptors (odd).
        patches_per_image: descriptors drawn from each image at each level.
        num_repeats: independent sets of projection directions, averaged.
        dirs_per_repeat: random directions per set (ProGAN: 4 x 128 = 512 projections).
        min_resolution: the coarsest pyramid level.
    """

    patch_size: int = 7
    patches_per_image: int = 128
    num_repeats: int = 4
    dirs_per_repeat: int = 128
    min_resolution: int = 16


def pyramid_resolutions(resolution: int, min_resolution: int = 16) -> list[int]:
    """Level sizes from ``resolution`` halving while >= ``min_resolution`` (256 -> [256, 128, 64, 32, 16])."""
    if resolution < min_resolution:
        raise ValueError(f"images are {resolution} px; SWD needs at least {min_resolution} px")
    sizes = []
    while resolution >= min_resolution:
        sizes.append(resolution)
        resolution //= 2
    return sizes


def _blur(x: Tensor, gain: float) -> Tensor:
    """5x5 binomial filter with reflected borders (scipy.ndimage 'mirror'), per channel; x [N, C, H, W]."""
    kernel = (torch.outer(_BINOMIAL_5, _BINOMIAL_5) * gain).to(x)
    channels = x.shape[1]
    weight = kernel.expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), weight, groups=channels)


def pyr_down(x: Tensor) -> Tensor:
    """Blur then keep every second pixel (cv2.pyrDown): [N, C, H, W] -> [N, C, H/2, W/2]."""
    return _blur(x, 1.0)[:, :, ::2, ::2]


def pyr_up(x: Tensor) -> Tensor:
    """Zero-insert then blur with gain 4 (cv2.pyrUp): [N, C, H, W] -> [N, C, 2H, 2W]."""
    n, c, h, w = x.shape
    up = torch.zeros(n, c, 2 * h, 2 * w, dtype=x.dtype, device=x.device)
    up[:, :, ::2, ::2] = x
    return _blur(up, 4.0)


def laplacian_pyramid(images: Tensor, num_levels: int) -> list[Tensor]:
    """Band-pass levels of images [N, C, H, W], finest first; the last one is the low-pass residual."""
    levels = [images.float()]
    for _ in range(1, num_levels):
        coarser = pyr_down(levels[-1])
        levels[-1] = levels[-1] - pyr_up(coarser)
        levels.append(coarser)
    return levels


def sample_patches(level: Tensor, patch_size: int, per_image: int,
                   generator: torch.Generator | None = None) -> Tensor:
    """Random patches [N * per_image, C, p, p] of level [N, C, H, W], centres >= p//2 from the border."""
    n, c, h, w = level.shape
    half = patch_size // 2
    if h < patch_size or w < patch_size:
        raise ValueError(f"pyramid level of {w}x{h} px is smaller than the {patch_size}x{patch_size} patches")
    ys = torch.randint(half, h - half, (n, per_image), generator=generator)
    xs = torch.randint(half, w - half, (n, per_image), generator=generator)
    offsets = torch.arange(-half, half + 1)
    rows = (ys[..., None] + offsets)[..., :, None].expand(-1, -1, patch_size, patch_size)
    cols = (xs[..., None] + offsets)[..., None, :].expand(-1, -1, patch_size, patch_size)
    image = torch.arange(n)[:, None, None, None].expand_as(rows)
    patches = level.cpu()[image, :, rows, cols]  # [N, per_image, p, p, C]
    return patches.permute(0, 1, 4, 2, 3).reshape(n * per_image, c, patch_size, patch_size)


def normalize_descriptors(patches: Tensor) -> Tensor:
    """Per-channel standardisation over all patches and pixels, flattened: [M, C, p, p] -> [M, C*p*p]."""
    mean = patches.mean(dim=(0, 2, 3), keepdim=True)
    std = patches.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return ((patches - mean) / std).reshape(patches.shape[0], -1)


def sliced_wasserstein(a: Tensor, b: Tensor, num_repeats: int, dirs_per_repeat: int,
                       generator: torch.Generator | None = None) -> float:
    """Mean |sorted projection difference| of descriptor sets a, b [M, K] over random unit directions."""
    if a.shape != b.shape:
        raise ValueError(f"descriptor sets must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    results = []
    for _ in range(num_repeats):
        dirs = torch.randn(dirs_per_repeat, a.shape[1], generator=generator)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        # [directions, M] rows sorted by NumPy: its SIMD sort is an order of magnitude faster on CPU.
        proj_a = np.sort((dirs @ a.T).numpy(), axis=1)
        proj_b = np.sort((dirs @ b.T).numpy(), axis=1)
        results.append(np.abs(proj_a - proj_b).mean(dtype=np.float64))
    return float(np.mean(results))


class PatchDescriptors:
    """Collects the raw pyramid patches of a stream of uint8 image batches [B, C, R, R]."""

    def __init__(self, config: SWDConfig = SWDConfig(), generator: torch.Generator | None = None) -> None:
        self.config = config
        self.generator = generator
        self.resolution: int | None = None
        self.levels: list[list[Tensor]] = []

    @property
    def num_images(self) -> int:
        return sum(p.shape[0] for p in self.levels[0]) // self.config.patches_per_image if self.levels else 0

    def add(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images: expected uint8 [B, C, R, R], got {images.dtype} {list(images.shape)}")
        if self.resolution is None:
            self.resolution = images.shape[2]
            sizes = pyramid_resolutions(self.resolution, self.config.min_resolution)
            self.levels = [[] for _ in sizes]
        elif images.shape[2] != self.resolution:
            raise ValueError(f"images: expected {self.resolution} px like the earlier batches, "
                             f"got {images.shape[2]}")
        for store, level in zip(self.levels, laplacian_pyramid(images, len(self.levels))):
            store.append(sample_patches(level, self.config.patch_size, self.config.patches_per_image,
                                        self.generator))

    def merge_ranks(self) -> None:
        """Gather the patches of all distributed ranks (no-op in a single process)."""
        self.levels = [[gather_rows(torch.cat(store))] for store in self.levels]

    def descriptors(self) -> list[Tensor]:
        """Normalised descriptors [M, C*p*p] per level, finest first."""
        return [normalize_descriptors(torch.cat(store)) for store in self.levels]


def swd_from_descriptors(real: PatchDescriptors, fake: PatchDescriptors, seed: int = 0) -> dict[str, float]:
    """``{"swd_x1e3_<res>": ..., "swd_x1e3_avg": ...}`` between two collections of the same resolution.

    The larger collection is cut (first rows) to the smaller one's size, since SWD compares sorted
    projections one to one.
    """
    if real.resolution is None or fake.resolution is None:
        raise ValueError("SWD: both image sets must contain at least one image")
    if real.resolution != fake.resolution:
        raise ValueError(f"SWD: real images are {real.resolution} px but generated ones {fake.resolution} px")
    generator = torch.Generator().manual_seed(seed)
    results = {}
    sizes = pyramid_resolutions(real.resolution, real.config.min_resolution)
    for size, desc_real, desc_fake in zip(sizes, real.descriptors(), fake.descriptors()):
        count = min(desc_real.shape[0], desc_fake.shape[0])
        distance = sliced_wasserstein(desc_real[:count], desc_fake[:count], real.config.num_repeats,
                                      real.config.dirs_per_repeat, generator)
        results[f"swd_x1e3_{size}"] = distance * 1e3
    results["swd_x1e3_avg"] = sum(results.values()) / len(results)
    return results


def sliced_wasserstein_distance(real_batches: Iterable[Tensor], fake_batches: Iterable[Tensor],
                                config: SWDConfig = SWDConfig(), seed: int = 0) -> dict[str, float]:
    """SWD (x1e3 per level and average) between two streams of uint8 image batches [B, C, R, R].

    Both streams draw patch positions from generators with the same seed, so that a set compared
    with itself gives exactly 0 and perturbations are compared at the same places.
    """
    real = PatchDescriptors(config, torch.Generator().manual_seed(seed))
    fake = PatchDescriptors(config, torch.Generator().manual_seed(seed))
    for batch in real_batches:
        real.add(batch)
    for batch in fake_batches:
        fake.add(batch)
    return swd_from_descriptors(real, fake, seed)
