"""Modulated convolution (fused vs per-sample), demodulation statistics, noise modes, ToRGB."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from mimic3d.nn import SynthesisLayer, ToRGBLayer, modulated_conv2d, setup_filter


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("with_noise", [True, False])
def test_fused_and_per_sample_modulated_conv_agree(up, demodulate, with_noise):
    torch.manual_seed(0)
    x = torch.randn(3, 8, 6, 6)
    weight = torch.randn(5, 8, 3, 3)
    styles = torch.randn(3, 8)
    noise = torch.randn(3, 1, 6 * up, 6 * up) if with_noise else None
    kwargs = dict(
        up=up,
        padding=1,
        resample_filter=setup_filter([1, 3, 3, 1]),
        demodulate=demodulate,
        flip_weight=up == 1,
    )
    fused = modulated_conv2d(x, weight, styles, noise=noise, fused_modconv=True, **kwargs)
    per_sample = modulated_conv2d(x, weight, styles, noise=noise, fused_modconv=False, **kwargs)
    assert fused.shape == (3, 5, 6 * up, 6 * up)
    # A 3x3 convolution over 8 channels (then the 4x4 up-filter), demodulation sums over 72 weights.
    assert_close(fused, per_sample, terms=72, depth=3)


def test_modulated_conv_equals_explicit_per_sample_weights():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 5, 5)
    weight = torch.randn(6, 4, 3, 3)
    styles = torch.randn(2, 4)
    out = modulated_conv2d(x, weight, styles, padding=1)
    for i in range(2):
        w_i = weight * styles[i].reshape(1, 4, 1, 1)
        w_i = w_i / torch.sqrt(w_i.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        assert_close(out[i : i + 1], F.conv2d(x[i : i + 1], w_i, padding=1), terms=36, depth=2)


def test_demodulation_gives_unit_variance_outputs():
    torch.manual_seed(2)
    x = torch.randn(4, 64, 16, 16)
    weight = torch.randn(32, 64, 3, 3)
    styles = torch.randn(4, 64) * 3 + 1  # large, uneven styles must not change the output scale
    out = modulated_conv2d(x, weight, styles, padding=1)
    inner = out[:, :, 1:-1, 1:-1]  # away from the zero padding
    assert inner.std().item() == pytest.approx(1.0, abs=0.05)
    per_channel = inner.std(dim=[0, 2, 3])
    assert per_channel.min().item() > 0.85 and per_channel.max().item() < 1.15
    plain = modulated_conv2d(x, weight, styles, padding=1, demodulate=False)
    assert plain[:, :, 1:-1, 1:-1].std().item() > 10  # without demodulation the styles set the scale


def test_modulated_conv_rejects_bad_shapes():
    with pytest.raises(ValueError, match="styles"):
        modulated_conv2d(torch.zeros(2, 4, 5, 5), torch.zeros(3, 4, 3, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="x must be"):
        modulated_conv2d(torch.zeros(2, 3, 5, 5), torch.zeros(3, 4, 3, 3), torch.zeros(2, 4))


def make_linear_layer() -> SynthesisLayer:
    torch.manual_seed(3)
    layer = SynthesisLayer(4, 6, w_dim=8, resolution=8, activation="linear")
    with torch.no_grad():
        layer.noise_strength.fill_(0.7)
    return layer


def test_noise_modes():
    layer = make_linear_layer()
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 8)
    none = layer(x, w, noise_mode="none")
    const = layer(x, w, noise_mode="const")
    torch.testing.assert_close(const, layer(x, w, noise_mode="const"))  # const is reproducible
    # Differences of two outputs carry the outputs' rounding (a 3x3 conv over 4 channels), at their scale.
    conv = dict(terms=36, depth=2, scale=float(none.detach().abs().max()))
    assert_close(const - none, (layer.noise_const * 0.7).expand_as(none), **conv)
    # "none" is the noiseless modulated conv + bias (the layer may order the additions differently).
    expected = modulated_conv2d(x, layer.weight, layer.affine(w), padding=1) + layer.bias.reshape(1, -1, 1, 1)
    assert_close(none, expected, **conv)
    first, second = layer(x, w), layer(x, w)
    assert not torch.allclose(first, second)  # random draws fresh noise
    diff = first - none  # one noise image per sample, shared by all channels
    assert_close(diff, diff[:, :1].expand_as(diff), **conv)
    torch.manual_seed(7)
    seeded = layer(x, w)
    torch.manual_seed(7)
    torch.testing.assert_close(layer(x, w), seeded)
    with pytest.raises(ValueError, match="noise_mode"):
        layer(x, w, noise_mode="fixed")
    with pytest.raises(ValueError, match=r"\[N, 4, 8, 8\]"):
        layer(torch.zeros(2, 4, 4, 4), w)


def test_noise_starts_disabled_and_can_be_removed():
    layer = SynthesisLayer(4, 6, w_dim=8, resolution=8)
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 8)
    torch.testing.assert_close(layer(x, w, noise_mode="random"), layer(x, w, noise_mode="none"))
    quiet = SynthesisLayer(4, 6, w_dim=8, resolution=8, use_noise=False)
    assert "noise_const" not in quiet.state_dict() and "noise_strength" not in quiet.state_dict()


def test_synthesis_layer_upsamples_and_affine_starts_at_one():
    layer = SynthesisLayer(4, 6, w_dim=8, resolution=16, up=2)
    assert layer(torch.randn(2, 4, 8, 8), torch.randn(2, 8)).shape == (2, 6, 16, 16)
    torch.testing.assert_close(layer.affine.bias, torch.ones(4))
    assert layer.resample_filter.shape == (4, 4)


def test_torgb_is_unnormalised_1x1_modulated_conv():
    torch.manual_seed(4)
    layer = ToRGBLayer(16, 3, w_dim=8, conv_clamp=0.5)
    with torch.no_grad():
        layer.bias.normal_()
    x, w = torch.randn(2, 16, 5, 5), torch.randn(2, 8)
    styles = layer.affine(w) / math.sqrt(16)
    weight = layer.weight[:, :, 0, 0]  # [3, 16]
    expected = torch.einsum("oi,ni,nihw->nohw", weight, styles, x) + layer.bias.reshape(1, 3, 1, 1)
    out = layer(x, w)
    # 16 input channels, and the affine styles over w_dim = 8.
    assert_close(out, expected.clamp(-0.5, 0.5), terms=16, depth=2)
    assert_close(layer(x, w, fused_modconv=False), out, terms=16, depth=2)


@pytest.mark.parametrize("fused", [True, False])
def test_float16_prenormalisation_avoids_overflow(fused):
    torch.manual_seed(5)
    x, weight = torch.randn(2, 16, 8, 8), torch.randn(8, 16, 3, 3)
    styles = torch.randn(2, 16) * 1e4  # x * styles alone would overflow float16 sums
    reference = modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused)
    half = modulated_conv2d(x.half(), weight, styles, padding=1, fused_modconv=fused)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    # float16 results: its eps (9.8e-4) instead of float32's.
    assert_close(half.float(), reference, terms=144, dtype=torch.float16)
