"""GAN losses and regularisers against closed forms: logistic loss, R1, density regulariser, GPC, blur."""

from __future__ import annotations

import math

import pytest
import torch
from numerics import assert_close

from mimic3d.losses import (
    blur_images,
    blur_kernel,
    density_regularization,
    discriminator_fake_loss,
    discriminator_real_loss,
    generator_logistic_loss,
    r1_loss,
    r1_penalty,
    swap_conditioning,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_logistic_losses_are_negative_log_likelihoods():
    logits = torch.tensor([[-3.0], [0.0], [0.5], [4.0]])
    sigmoid = torch.sigmoid(logits)
    # Elementwise: softplus against log of sigmoid, a few ulp apart.
    assert_close(generator_logistic_loss(logits), -torch.log(sigmoid))
    assert_close(discriminator_real_loss(logits), -torch.log(sigmoid))
    assert_close(discriminator_fake_loss(logits), -torch.log(1 - sigmoid))
    assert generator_logistic_loss(torch.zeros(1)).item() == pytest.approx(math.log(2))


def test_logistic_losses_are_stable_for_large_logits():
    big = torch.tensor([-200.0, 200.0])
    assert_close(generator_logistic_loss(big), torch.tensor([200.0, 0.0]))
    assert_close(discriminator_fake_loss(big), torch.tensor([0.0, 200.0]))
    big.requires_grad_()
    generator_logistic_loss(big).sum().backward()
    assert_close(big.grad, torch.tensor([-1.0, 0.0]))


def test_r1_of_linear_dual_discriminator_is_closed_form():
    """D(image, raw) = <a, image> + <b, raw>: grads are a and b, so R1 = gamma/2 (|a|^2 + |b|^2)."""
    a = torch.randn(3, 8, 8, generator=seeded(0)).requires_grad_()
    b = torch.randn(3, 4, 4, generator=seeded(1)).requires_grad_()
    image = torch.randn(5, 3, 8, 8, generator=seeded(2)).requires_grad_()
    raw = torch.randn(5, 3, 4, 4, generator=seeded(3)).requires_grad_()
    logits = (image * a).sum(dim=(1, 2, 3)) + (raw * b).sum(dim=(1, 2, 3))
    gamma = 5.0
    loss = r1_loss(logits[:, None], [image, raw], gamma)
    expected = gamma / 2 * (a.square().sum() + b.square().sum())
    assert loss.shape == (5,)
    # Sums of squares over the 192 + 48 entries of a and b.
    assert_close(loss, expected.detach().expand(5), terms=240)
    # The penalty is differentiable w.r.t. D's weights: d/da (gamma/2 |a|^2) = gamma a, per sample.
    loss.sum().backward()
    assert_close(a.grad, 5 * gamma * a.detach(), terms=5)  # summed over the 5 samples
    assert_close(b.grad, 5 * gamma * b.detach(), terms=5)


def test_r1_of_quadratic_discriminator_depends_on_sample():
    """D(x) = sum(w x^2): grad 2 w x, penalty sum(4 w^2 x^2) per sample."""
    w = torch.randn(2, 4, 4, generator=seeded(4))
    x = torch.randn(3, 2, 4, 4, generator=seeded(5)).requires_grad_()
    penalty = r1_penalty((w * x.square()).sum(dim=(1, 2, 3)), [x])
    expected = (4 * w.square() * x.detach().square()).sum(dim=(1, 2, 3))
    assert_close(penalty, expected, terms=32)


def test_r1_rejects_inputs_without_grad():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="input 0 does not require grad"):
        r1_penalty(x.sum(dim=1), [x])
    with pytest.raises(ValueError, match="at least one"):
        r1_penalty(x.sum(dim=1), [])


def linear_density(points: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """sigma(p) = <k_n, p> with a per-sample direction k_n = ws[:, :3]: [N, P, 1]."""
    return (points * ws[:, None, :3]).sum(dim=-1, keepdim=True)


def test_density_regularizer_matches_expectation_of_linear_field():
    """sigma(x) - sigma(x + e) = -<k, e> ~ N(0, |k|^2 std^2): E|.| = |k| std sqrt(2 / pi)."""
    ws = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0], [6.0, 0.0, 0.0], [0.0, 0.0, 1.5]])
    std = 0.004
    loss = density_regularization(linear_density, ws, num_points=20000, offset_std=std, generator=seeded(6))
    expected = ws.norm(dim=1).mean() * std * math.sqrt(2 / math.pi)
    assert loss.item() == pytest.approx(expected.item(), rel=0.02)


def test_density_regularizer_samples_and_gradients():
    calls = []

    def recording_density(points, ws):
        calls.append(points)
        return linear_density(points, ws)

    ws = torch.randn(2, 3, generator=seeded(7)).requires_grad_()
    loss = density_regularization(recording_density, ws, num_points=50, offset_std=0.01, generator=seeded(8))
    (points,) = calls
    assert points.shape == (2, 100, 3)
    base, perturbed = points[:, :50], points[:, 50:]
    assert base.abs().max() <= 1 and (perturbed - base).abs().max() < 0.1
    expected = (linear_density(base, ws) - linear_density(perturbed, ws)).abs().mean()
    assert_close(loss, expected, terms=100)  # a mean over 2 x 50 points
    loss.backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    constant = density_regularization(lambda p, w: torch.ones(p.shape[:2] + (1,)), ws, num_points=10)
    assert constant.item() == 0


def test_density_regularizer_checks_output_shape():
    with pytest.raises(ValueError, match=r"\[N, 2P, ...\]"):
        density_regularization(lambda p, w: p[:, :5], torch.zeros(2, 3), num_points=10)


def test_swap_conditioning_rolls_selected_rows():
    c = torch.arange(6.0)[:, None].expand(6, 25)
    assert torch.equal(swap_conditioning(c, 0.0), c)
    assert torch.equal(swap_conditioning(c, 1.0), torch.roll(c, 1, dims=0))
    assert torch.equal(swap_conditioning(c, None), torch.zeros_like(c))
    swapped = swap_conditioning(c, 0.5, generator=seeded(9))
    chosen = torch.rand(6, 1, generator=seeded(9)) < 0.5
    assert 0 < chosen.sum() < 6
    assert torch.equal(swapped, torch.where(chosen, torch.roll(c, 1, dims=0), c))
    whole = swap_conditioning(c, 0.5, generator=seeded(10), per_sample=False)
    assert torch.equal(whole, c) or torch.equal(whole, torch.roll(c, 1, dims=0))


def test_blur_kernel_shape_and_half_width():
    sigma = 2.0
    taps = blur_kernel(sigma)
    assert taps.shape == (2 * 6 + 1,)
    assert_close(taps.sum(), torch.tensor(1.0), terms=13)  # 13 normalised taps
    assert_close(taps, taps.flip(0))  # mirrored offsets may fall in the SIMD body and its scalar tail
    center = taps.shape[0] // 2
    assert (taps[center + 2] / taps[center]).item() == pytest.approx(0.5)  # 2^-(x/sigma)^2 at x = sigma
    assert blur_kernel(0.3) is None
    with pytest.raises(ValueError, match="blur sigma"):
        blur_kernel(-1.0)


def test_blur_images_is_separable_filter_and_identity_when_faded():
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10] = 1.0
    sigma = 1.5
    taps = blur_kernel(sigma)
    half = taps.shape[0] // 2
    out = blur_images(x, sigma)
    window = out[0, 0, 10 - half : 10 + half + 1, 10 - half : 10 + half + 1]
    # Two 13-tap passes over an impulse, and the sum of the 21 x 21 output.
    assert_close(window, torch.outer(taps, taps), terms=13, depth=2)
    assert_close(out.sum(), torch.tensor(1.0), terms=21 * 21)
    assert blur_images(x, 0.0) is x
