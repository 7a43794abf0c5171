"""ADA augmentation: exact geometric transforms, colour invariants, dual-input consistency, p control."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from mimic3d.training.augment import AdaptiveProbability, AugmentConfig, AugmentPipe, ada_adjustment

# General geometric augmentations run the whole warp: 12-tap wavelet up-filter, bilinear resampling
# (4 taps) and 12-tap down-filter, on both axes.
WARP = {"terms": 12 * 12 + 4, "depth": 3}
# Colour augmentations: a composition of 4x4 colour matrices applied to each pixel.
COLOUR = {"terms": 4, "depth": 4}
ALL_OFF = {f.name: 0.0 for f in dataclasses.fields(AugmentConfig) if not f.name.endswith(("_max", "_std"))}


def only(name: str, **magnitudes: float) -> AugmentConfig:
    return AugmentConfig(**{**ALL_OFF, name: 1.0, **magnitudes})


def images(seed: int, n: int = 8, channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_p_zero_is_identity():
    x = images(0)
    assert torch.equal(AugmentPipe(p=0.0)(x, seeded(1)), x)


def test_deterministic_with_seeded_generator():
    pipe, x = AugmentPipe(p=0.8), images(1)
    assert torch.equal(pipe(x, seeded(5)), pipe(x, seeded(5)))
    assert not torch.allclose(pipe(x, seeded(5)), pipe(x, seeded(6)))


def test_xflip_flips_exactly_the_drawn_samples():
    x = images(2, n=16)
    out = AugmentPipe(only("xflip"), p=1.0)(x, seeded(3))
    flip = torch.floor(torch.rand(16, generator=seeded(3)) * 2).bool()  # the pipe's first draw
    assert 0 < flip.sum() < 16
    expected = torch.where(flip[:, None, None, None], x.flip(3), x)
    assert torch.equal(out, expected)  # pixel blitting moves pixels: exact by construction


def test_rotate90_turns_by_quarter_turns():
    x = images(3, n=16)
    out = AugmentPipe(only("rotate90"), p=1.0)(x, seeded(4))
    quarter_turns = torch.floor(torch.rand(16, generator=seeded(4)) * 4).long()
    assert len(set(quarter_turns.tolist())) == 4
    size = x.shape[-1]
    for i, k in enumerate(quarter_turns.tolist()):
        expected = x[i]
        # Output pixel (row r, col c) reads the input at (c, size-1-r) per quarter turn.
        rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        for _ in range(k):
            expected = expected[:, cols, size - 1 - rows]
        assert torch.equal(out[i], expected)


def test_integer_translation_moves_content_by_whole_pixels():
    size, max_frac = 16, 0.25
    x = images(4, n=8, size=size)
    out = AugmentPipe(only("xint", xint_max=max_frac), p=1.0)(x, seeded(7))
    shift = torch.round((torch.rand(8, 2, generator=seeded(7)) * 2 - 1) * max_frac * size).long()
    assert shift.abs().max() > 0
    for i, (tx, ty) in enumerate(shift.tolist()):
        # Content moves by (+tx, +ty); compare where the source pixel lies inside the image.
        ys = slice(max(ty, 0), size + min(ty, 0))
        xs = slice(max(tx, 0), size + min(tx, 0))
        src = x[i, :, max(-ty, 0) : size - max(ty, 0), max(-tx, 0) : size - max(tx, 0)]
        assert torch.equal(out[i, :, ys, xs], src)


def test_general_warp_preserves_constants():
    geometry_only = {**ALL_OFF, **{k: 1.0 for k in ["scale", "rotate", "aniso", "xfrac"]}}
    x = torch.full((4, 3, 16, 16), 0.7)
    out = AugmentPipe(AugmentConfig(**geometry_only), p=1.0)(x, seeded(20))
    assert_close(out, x, **WARP)


def test_isotropic_scale_enlarges_content_by_drawn_factor():
    size, sigma = 48, 3.0
    coords = torch.arange(size) - (size - 1) / 2
    blob = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma**2))
    x = blob.expand(6, 3, size, size).contiguous()
    out = AugmentPipe(only("scale"), p=1.0)(x, seeded(21))
    factor = torch.exp2(torch.randn(6, generator=seeded(21)) * 0.2)  # first draw: log2-normal scale
    radius2 = coords[:, None] ** 2 + coords[None, :] ** 2
    spread = ((out[:, 0] * radius2).sum(dim=(1, 2)) / out[:, 0].sum(dim=(1, 2))).sqrt()
    assert torch.allclose(spread / (2**0.5 * sigma), factor, rtol=0.02)


def test_non_square_images_with_quarter_turns():
    x = torch.randn(4, 3, 12, 20, generator=seeded(22))
    out = AugmentPipe(only("rotate90"), p=1.0)(x, seeded(23))
    assert out.shape == x.shape and torch.isfinite(out).all()


def luma(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1)


@pytest.mark.parametrize("name", ["hue", "saturation"])
def test_hue_and_saturation_keep_every_pixels_luma(name):
    x = images(5)
    out = AugmentPipe(only(name), p=1.0)(x, seeded(8))
    assert not torch.allclose(out, x, atol=1e-3)
    assert_close(luma(out), luma(x), **COLOUR)


def test_lumaflip_negates_luma_and_keeps_chroma():
    x = images(6, n=16)
    out = AugmentPipe(only("lumaflip"), p=1.0)(x, seeded(9))
    flipped = torch.floor(torch.rand(16, generator=seeded(9)) * 2).bool()
    assert 0 < flipped.sum() < 16
    sign = torch.where(flipped, -1.0, 1.0)[:, None, None]
    assert_close(luma(out), sign * luma(x), **COLOUR)
    assert_close(out - luma(out)[:, None], x - luma(x)[:, None], **COLOUR, scale=float(x.abs().max()))


def test_brightness_adds_and_contrast_scales_per_sample():
    x = images(7)
    bright = AugmentPipe(only("brightness"), p=1.0)(x, seeded(10)) - x
    offset = bright.flatten(1)[:, :1]
    assert_close(bright.flatten(1), offset.expand_as(bright.flatten(1)), **COLOUR, scale=float(x.abs().max()))
    assert offset.abs().min() > 0
    contrast = AugmentPipe(only("contrast"), p=1.0)(x, seeded(11))
    factor = (contrast * x).sum(dim=(1, 2, 3)) / x.square().sum(dim=(1, 2, 3))
    factor = factor[:, None]
    assert_close(contrast, x * factor[:, :, None, None], terms=x[0].numel())  # factor sums an image
    assert (factor > 0).all() and not torch.allclose(factor, torch.ones_like(factor))


def test_stacked_inputs_share_every_transform():
    x = images(8)
    out = AugmentPipe(p=1.0)(torch.cat([x, x], dim=1), seeded(12))
    assert not torch.allclose(out[:, :3], x, atol=1e-2)
    assert torch.equal(out[:, :3], out[:, 3:])


def test_augment_pair_transforms_image_and_raw_identically():
    pipe = AugmentPipe(p=1.0)
    image = images(9, size=32)
    same_image, same_raw = pipe.augment_pair(image, image.clone(), seeded(13))
    assert torch.equal(same_image, same_raw)
    # A raw image at lower resolution comes back at its own size, augmented like the image.
    raw = F.interpolate(image, size=(16, 16), mode="bilinear", antialias=True)
    out_image, out_raw = pipe.augment_pair(image, raw, seeded(13))
    assert out_raw.shape == raw.shape and torch.equal(out_image, same_image)
    downsampled = F.interpolate(out_image, size=(16, 16), mode="bilinear", antialias=True)
    unrelated = pipe.augment_pair(image, raw, seeded(14))[1]
    assert (out_raw - downsampled).abs().mean() < 0.5 * (unrelated - downsampled).abs().mean()


def test_augment_pair_at_p_zero_only_round_trips_raw_resolution():
    image, raw = images(10, size=32), images(11, size=16)
    out_image, out_raw = AugmentPipe(p=0.0).augment_pair(image, raw, seeded(0))
    assert torch.equal(out_image, image)
    round_trip = F.interpolate(
        F.interpolate(raw, size=(32, 32), mode="bilinear", antialias=True),
        size=(16, 16),
        mode="bilinear",
        antialias=True,
    )
    assert torch.equal(out_raw, round_trip)


def test_gradients_pass_through_for_r1():
    """R1 differentiates D(augment(x)) w.r.t. x, then back-propagates into D: needs double backward."""
    x = images(12, n=2, size=8).double().requires_grad_()
    weight = torch.randn(1, 3, 3, 3, dtype=torch.float64, generator=seeded(0)).requires_grad_()
    pipe = AugmentPipe(p=1.0)
    logits = F.conv2d(pipe(x, seeded(15)), weight).square().mean(dim=(1, 2, 3))
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0
    # The pipe is linear in x for fixed random draws: check it against finite differences.
    direction = torch.randn(x.shape, dtype=torch.float64, generator=seeded(1))
    (grad_lin,) = torch.autograd.grad((pipe(x, seeded(15)) * direction).sum(), x)
    with torch.no_grad():
        eps = 1e-3
        probe = torch.randn(x.shape, dtype=torch.float64, generator=seeded(2))
        numeric = ((pipe(x + eps * probe, seeded(15)) - pipe(x - eps * probe, seeded(15))) * direction).sum()
    assert torch.allclose((grad_lin * probe).sum(), numeric / (2 * eps), rtol=1e-8)


def test_bad_inputs():
    pipe = AugmentPipe()
    with pytest.raises(ValueError, match="multiple of 3"):
        pipe(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        pipe(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="AugmentConfig.rotate_max"):
        AugmentConfig(rotate_max=-1)
    with pytest.raises(ValueError, match="equal N"):
        pipe.augment_pair(torch.zeros(2, 3, 8, 8), torch.zeros(1, 3, 4, 4))


# ---------------------------------------------------------------------------------------------
# Adaptive p


def test_ada_adjustment_formula():
    assert ada_adjustment(0.9, 0.6, batch_size=32, interval=4, speed_kimg=500) == 32 * 4 / 500_000
    assert ada_adjustment(0.1, 0.6, batch_size=32, interval=4, speed_kimg=500) == -32 * 4 / 500_000
    assert ada_adjustment(0.6, 0.6, batch_size=32, interval=4, speed_kimg=500) == 0


def test_adaptive_p_rises_when_d_overfits_and_only_every_interval():
    pipe = AugmentPipe(p=0.0)
    ada = AdaptiveProbability(target=0.6, interval=4, speed_kimg=0.1)
    step = 8 * 4 / 100
    for i in range(1, 9):
        ada.observe(torch.full((8, 1), 2.0))  # D confident on every real: mean sign 1 > 0.6
        assert ada.step(pipe, batch_size=8) == (i % 4 == 0)
        assert pipe.p.item() == pytest.approx(step * (i // 4))


def test_adaptive_p_falls_and_is_clamped_at_zero():
    pipe = AugmentPipe(p=0.4)
    ada = AdaptiveProbability(target=0.6, interval=1, speed_kimg=0.1)
    # Mean sign 0 (half the reals judged fake) is below target: p decreases.
    ada.observe(torch.tensor([[1.0], [-1.0], [3.0], [-0.5]]))
    ada.step(pipe, batch_size=4)
    assert pipe.p.item() == pytest.approx(0.4 - 4 / 100)
    for _ in range(20):
        ada.observe(-torch.ones(4, 1))
        ada.step(pipe, batch_size=4)
    assert pipe.p.item() == 0.0


def test_adaptive_p_pools_statistics_and_round_trips_state():
    pipe = AugmentPipe(p=0.5)
    ada = AdaptiveProbability(interval=2, speed_kimg=1.0)
    ada.observe(torch.ones(4))
    ada.step(pipe, batch_size=4)
    restored = AdaptiveProbability(interval=2, speed_kimg=1.0)
    restored.load_state_dict(ada.state_dict())
    seen = []

    def pool_with_other_rank(stats: torch.Tensor) -> None:
        seen.append(stats.tolist())
        stats.add_(torch.tensor([-12.0, 12.0]))  # another rank: 12 reals, all judged fake

    restored.step(pipe, batch_size=4, all_reduce=pool_with_other_rank)
    # Pooled mean sign (4 - 12) / 16 is below target: p decreases.
    assert seen == [[4.0, 4.0]]
    assert pipe.p.item() == pytest.approx(0.5 - 4 * 2 / 1000)


def test_adaptive_p_rejects_bad_settings():
    with pytest.raises(ValueError, match="target"):
        AdaptiveProbability(target=1.5)
    with pytest.raises(ValueError, match="interval"):
        AdaptiveProbability(interval=0)
