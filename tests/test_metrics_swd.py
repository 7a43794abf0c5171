"""Sliced Wasserstein distance on Laplacian-pyramid patches (ProGAN's metric)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from numerics import assert_close

from mimic3d.metrics.swd import (
    PatchDescriptors,
    laplacian_pyramid,
    normalize_descriptors,
    pyr_up,
    pyramid_resolutions,
    sample_patches,
    sliced_wasserstein,
    sliced_wasserstein_distance,
)

BINOMIAL = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0


def scipy_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """Reference with scipy.ndimage ('mirror' borders), as cv2.pyrDown / cv2.pyrUp."""
    kernel = BINOMIAL[None, None]
    pyramid = [images.astype(np.float64)]
    for _ in range(1, levels):
        down = scipy.ndimage.convolve(pyramid[-1], kernel, mode="mirror")[:, :, ::2, ::2]
        up = np.zeros_like(pyramid[-1])
        up[:, :, ::2, ::2] = down
        pyramid[-1] = pyramid[-1] - scipy.ndimage.convolve(up, kernel * 4, mode="mirror")
        pyramid.append(down)
    return pyramid


def textures(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 [n, 3, size, size]: a stationary random field (binomially smoothed Gaussian noise)."""
    noise = torch.randn(n, 3, size + 4, size + 4, generator=torch.Generator().manual_seed(seed))
    kernel = torch.tensor(BINOMIAL, dtype=torch.float32)
    field = F.conv2d(noise, kernel.expand(3, 1, 5, 5), groups=3)  # std about 0.27
    return (field * 120 + 128).clamp(0, 255).to(torch.uint8)


def batches(images: torch.Tensor, size: int = 16):
    return [images[i:i + size] for i in range(0, images.shape[0], size)]


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = 3
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = torch.outer(k, k) / k.sum() ** 2
    padded = F.pad(images.float(), (radius,) * 4, mode="reflect")
    out = F.conv2d(padded, k.expand(3, 1, -1, -1), groups=3)
    return out.round().clamp(0, 255).to(torch.uint8)


def add_noise(images: torch.Tensor, std: float) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(9)) * std
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def test_pyramid_matches_scipy_reference_and_reconstructs():
    images = textures(3, size=32)
    ours = laplacian_pyramid(images, 3)
    reference = scipy_pyramid(images.numpy(), 3)
    assert [level.shape[-1] for level in ours] == [32, 16, 8]
    for mine, theirs in zip(ours, reference):
        # 5x5 Gaussian taps, blurred down and up again, on a 0..255 scale.
        assert_close(mine, theirs, terms=25, depth=2, scale=255.0)
    rebuilt = ours[-1]
    for level in ours[-2::-1]:
        rebuilt = pyr_up(rebuilt) + level
    assert_close(rebuilt, images.float(), terms=25, depth=6, scale=255.0)  # three levels of down + up


def test_patches_and_descriptors():
    level = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).reshape(2, 3, 10, 10)
    patches = sample_patches(level, 7, 5, torch.Generator().manual_seed(0))
    assert patches.shape == (10, 3, 7, 7)
    for k in range(10):  # every patch is a contiguous 7x7 window of its own image
        image = level[k // 5]
        top, left = divmod(int(patches[k, 0, 0, 0] - image[0, 0, 0]), 10)
        torch.testing.assert_close(patches[k], image[:, top:top + 7, left:left + 7])
    desc = normalize_descriptors(torch.randn(50, 3, 7, 7) * 5 + 2)
    per_channel = desc.reshape(50, 3, 49)
    # Normalised with a mean and a std over 50 x 49 values, checked with the same reductions.
    assert_close(per_channel.mean(dim=(0, 2)), torch.zeros(3), terms=50 * 49, depth=2, scale=1.0)
    assert_close(per_channel.std(dim=(0, 2), unbiased=False), torch.ones(3), terms=50 * 49, depth=2)


def test_sliced_wasserstein_of_shifted_gaussians():
    # 1-D projections of N(0, I) and N(d, I) differ by a shift <u, d>; E|<u, d>| for random unit u in
    # R^k is |d| * Gamma(k/2) / (sqrt(pi) Gamma((k+1)/2)), about 0.798 |d| / sqrt(k) for large k.
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(20000, 2, generator=gen)
    shift = torch.tensor([3.0, 0.0])
    b = torch.randn(20000, 2, generator=gen) + shift
    value = sliced_wasserstein(a, b, num_repeats=8, dirs_per_repeat=256, generator=gen)
    assert value == pytest.approx(3.0 * 2 / np.pi, rel=0.05)  # k = 2: E|cos| = 2 / pi
    assert sliced_wasserstein(a, a, 2, 16, gen) == 0


def test_swd_is_zero_for_the_same_set_and_grows_with_blur_and_noise():
    images, other = textures(32), textures(32, seed=1)
    data = batches(images)
    self_distance = sliced_wasserstein_distance(data, data, seed=0)
    assert set(self_distance) == {"swd_x1e3_32", "swd_x1e3_16", "swd_x1e3_avg"}
    assert all(value == 0 for value in self_distance.values())
    # Same images, same patch positions: the distance grows with the strength of the blur.
    mild, strong = (sliced_wasserstein_distance(data, batches(blur(images, s)), seed=0) for s in (0.7, 1.5))
    assert 0 < mild["swd_x1e3_avg"] < strong["swd_x1e3_avg"]
    # An independent sample of the same texture is closer than a blurred or a noisy sample.
    fresh = sliced_wasserstein_distance(data, batches(other), seed=0)
    blurred = sliced_wasserstein_distance(data, batches(blur(other, 1.5)), seed=0)
    noisy = sliced_wasserstein_distance(data, batches(add_noise(other, 32)), seed=0)
    for key in ("swd_x1e3_32", "swd_x1e3_avg"):
        assert fresh[key] < min(blurred[key], noisy[key])


def test_swd_input_errors():
    with pytest.raises(ValueError, match="at least 16 px"):
        pyramid_resolutions(8)
    assert pyramid_resolutions(256) == [256, 128, 64, 32, 16]
    collection = PatchDescriptors()
    with pytest.raises(ValueError, match="uint8"):
        collection.add(torch.zeros(2, 3, 32, 32))
    collection.add(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected 32 px"):
        collection.add(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="real images are 32 px but generated ones 16 px"):
        sliced_wasserstein_distance([torch.zeros(1, 3, 32, 32, dtype=torch.uint8)],
                                    [torch.zeros(1, 3, 16, 16, dtype=torch.uint8)])
