"""Training schedules at known points of training (EG3D's formulas)."""

from __future__ import annotations

import pytest

from mimic3d.losses import (
    batch_scaled_kimg,
    blur_sigma,
    ema_beta,
    gpc_swap_prob,
    lazy_regularization,
    neural_rendering_resolution,
)


def test_blur_sigma_fades_linearly_to_zero():
    assert blur_sigma(0) == 10
    assert blur_sigma(50) == pytest.approx(7.5)
    assert blur_sigma(100) == pytest.approx(5)
    assert blur_sigma(200) == 0
    assert blur_sigma(1000) == 0
    assert blur_sigma(0, fade_kimg=0) == 0
    # EG3D scales the fade with the batch: 200 kimg at batch 32 is 25 kimg at batch 4.
    fade = batch_scaled_kimg(200, batch_size=4)
    assert fade == 25
    assert blur_sigma(12.5, fade_kimg=fade) == pytest.approx(5)


def test_batch_scaled_kimg_rejects_bad_batch():
    with pytest.raises(ValueError, match="batch_size"):
        batch_scaled_kimg(10, 0)


def test_gpc_swap_probability_fades_from_one():
    assert gpc_swap_prob(0, 0.5) == 1
    assert gpc_swap_prob(500, 0.5) == pytest.approx(0.75)
    assert gpc_swap_prob(250, 0.8) == pytest.approx(0.95)
    assert gpc_swap_prob(1000, 0.5) == pytest.approx(0.5)
    assert gpc_swap_prob(5000, 0.5) == pytest.approx(0.5)
    assert gpc_swap_prob(0, 0.5, fade_kimg=0) == 0.5
    assert gpc_swap_prob(100, None) is None
    with pytest.raises(ValueError, match="final_prob"):
        gpc_swap_prob(0, 1.5)


def test_neural_rendering_resolution_fade():
    assert neural_rendering_resolution(300, 64, None) == 64
    assert neural_rendering_resolution(0, 64, 128, 1000) == 64
    assert neural_rendering_resolution(500, 64, 128, 1000) == 96
    assert neural_rendering_resolution(1000, 64, 128, 1000) == 128
    assert neural_rendering_resolution(4000, 64, 128, 1000) == 128
    # 64 + 64 * kimg / 1000 hits x.5 at kimg = 7.8125 (64.5) and 23.4375 (65.5): ties go to even.
    assert neural_rendering_resolution(7.8125, 64, 128, 1000) == 64
    assert neural_rendering_resolution(23.4375, 64, 128, 1000) == 66


def test_ema_beta_half_life_and_rampup():
    # Default half-life 10 kimg at batch 32: after 10k images the old weights weigh one half.
    beta = ema_beta(cur_nimg=10_000_000, batch_size=32)
    assert beta == pytest.approx(0.5 ** (32 / 10_000))
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    # Same half-life in images at another batch size (ema_kimg scales with batch).
    beta4 = ema_beta(cur_nimg=10_000_000, batch_size=4)
    assert beta4 == pytest.approx(0.5 ** (4 / 1250))
    # Ramp-up caps the half-life at 5% of the images seen: 1000 images -> 50-image half-life.
    assert ema_beta(cur_nimg=1000, batch_size=32) == pytest.approx(0.5 ** (32 / 50))
    assert ema_beta(cur_nimg=0, batch_size=32) == 0
    assert ema_beta(cur_nimg=0, batch_size=32, rampup=None) == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_beta(cur_nimg=10**9, batch_size=8, ema_kimg=20) == pytest.approx(0.5 ** (8 / 20_000))


def test_lazy_regularization_scaling():
    lr, betas = lazy_regularization(0.002, (0.0, 0.99), interval=16)
    assert lr == pytest.approx(0.002 * 16 / 17)
    assert betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    lr, betas = lazy_regularization(0.0025, (0.0, 0.99), interval=4)
    assert lr == pytest.approx(0.0025 * 0.8)
    assert betas == pytest.approx((0.0, 0.99**0.8))
    assert lazy_regularization(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))
    with pytest.raises(ValueError, match="interval"):
        lazy_regularization(0.002, (0.0, 0.99), 0)
