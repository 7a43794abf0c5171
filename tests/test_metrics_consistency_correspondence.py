"""PSNR, SSIM (against a slow per-window reference) and generator correspondence PSNR."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from mimic3d.camera import PRESETS, sample_labels
from mimic3d.data.dataset import DatasetCameraSampler
from mimic3d.metrics.correspondence import correspondence_psnr, gaussian_window, masked_l1, psnr, ssim
from mimic3d.models import TriplaneGenerator, generator_preset


def _slow_ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """SSIM of two [C, H, W] images in [0, 1] straight from Wang et al.: every window, every channel."""
    offsets = np.arange(size) - (size - 1) / 2
    g = np.exp(-(offsets**2) / (2 * sigma**2))
    weights = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for channel in range(a.shape[0]):
        for top in range(a.shape[1] - size + 1):
            for left in range(a.shape[2] - size + 1):
                x = a[channel, top : top + size, left : left + size]
                y = b[channel, top : top + size, left : left + size]
                mx, my = (weights * x).sum(), (weights * y).sum()
                vx, vy = (weights * (x - mx) ** 2).sum(), (weights * (y - my) ** 2).sum()
                cov = (weights * (x - mx) * (y - my)).sum()
                values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_psnr_and_l1_on_known_errors():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[0] += 0.25  # 0.125 on the [0, 1] scale: MSE 1/64 -> 10 log10(64) dB
    scores = psnr(a, b)
    assert scores[0].item() == pytest.approx(10 * math.log10(64), abs=1e-9)
    assert scores[1].item() == math.inf
    assert masked_l1(a, b)[0].item() == pytest.approx(0.125, abs=1e-12)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, :4] = True
    b[:, :, 4:] += 1.0  # outside the mask: must not count
    assert psnr(a, b, mask)[0].item() == pytest.approx(10 * math.log10(64), abs=1e-9)
    assert math.isnan(psnr(a, b, torch.zeros_like(mask))[0].item())


def test_ssim_is_one_for_identical_images_and_matches_the_slow_reference():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 16, 14, generator=generator) * 2 - 1
    assert torch.equal(ssim(a, a), torch.ones(2, dtype=torch.float64))
    b = (a + 0.3 * torch.randn(a.shape, generator=generator)).clamp(-1, 1)
    fast = ssim(a, b)
    for i in range(2):
        slow = _slow_ssim(((a[i].double() + 1) / 2).numpy(), ((b[i].double() + 1) / 2).numpy())
        assert fast[i].item() == pytest.approx(slow, abs=1e-10)
    assert 0 < fast.min() < 0.9
    assert torch.allclose(ssim(b, a), fast)
    assert gaussian_window().sum().item() == pytest.approx(1.0)


def test_bad_inputs_are_named():
    a = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="b: expected the shape"):
        psnr(a, torch.zeros(1, 3, 16, 8))
    with pytest.raises(ValueError, match="a: expected an image tensor"):
        psnr(torch.zeros(3, 16, 16), a)
    with pytest.raises(ValueError, match="mask"):
        psnr(a, a, torch.ones(1, 3, 16, 16))
    with pytest.raises(ValueError, match="SSIM window"):
        ssim(a[..., :8, :8], a[..., :8, :8])
    with pytest.raises(ValueError, match="window_size"):
        ssim(a, a, window_size=4)
    with pytest.raises(ValueError, match="num_images"):
        correspondence_psnr(lambda z, c: z, lambda z, c: z, None, num_images=0)


@pytest.fixture(scope="module")
def teacher() -> TriplaneGenerator:
    torch.manual_seed(0)
    return TriplaneGenerator(generator_preset("tiny-eg3d")).eval()


def _generate(G: TriplaneGenerator):
    return lambda z, c: G(z, c, perturb=False)["image"]


def test_correspondence_psnr_of_generators(teacher):
    labels = DatasetCameraSampler(sample_labels(PRESETS["ffhq"], 8, torch.Generator().manual_seed(1)))
    kwargs = dict(labels=labels, num_images=3, z_dim=teacher.z_dim, batch_size=3, seed=3)
    same = correspondence_psnr(_generate(teacher), _generate(copy.deepcopy(teacher)), **kwargs)
    assert bool(torch.isinf(same.psnr_per_image).all()) and same.psnr_mean == math.inf
    scores = []
    for scale in (0.02, 0.2):
        student = copy.deepcopy(teacher)
        with torch.no_grad():
            student.decoder.net[2].bias.add_(scale)
        result = correspondence_psnr(_generate(teacher), _generate(student), **kwargs)
        assert result.psnr_per_image.shape == (3,)
        assert math.isfinite(result.psnr_mean) and math.isfinite(result.psnr_of_mean_mse)
        scores.append(result.psnr_mean)
    assert scores[0] > scores[1]
    assert set(result.as_dict()) == {"psnr", "psnr_of_mean_mse", "num_images"}
    with pytest.raises(ValueError, match="generate_b"):
        correspondence_psnr(_generate(teacher), lambda z, c: _generate(teacher)(z, c)[..., :8], **kwargs)
