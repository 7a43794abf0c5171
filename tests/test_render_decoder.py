"""The tri-plane decoder MLP (EG3D's OSGDecoder layout)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from mimic3d.render import TriplaneDecoder
from mimic3d.render.decoder import ClampedSoftplus


def test_parameter_names_and_shapes_match_eg3d() -> None:
    shapes = {name: tuple(p.shape) for name, p in TriplaneDecoder().named_parameters()}
    assert shapes == {
        "net.0.weight": (64, 32),
        "net.0.bias": (64,),
        "net.2.weight": (33, 64),
        "net.2.bias": (33,),
    }


def test_forward_is_equalised_fc_softplus_fc_with_widened_sigmoid() -> None:
    torch.manual_seed(0)
    decoder = TriplaneDecoder(n_features=6, hidden_dim=5, output_dim=3, lr_multiplier=0.5)
    with torch.no_grad():
        for p in decoder.parameters():
            p.normal_()
    x = torch.randn(2, 7, 6)
    state = dict(decoder.named_parameters())
    hidden = F.softplus(x @ (state["net.0.weight"] * 0.5 / math.sqrt(6)).T + state["net.0.bias"] * 0.5)
    out = hidden @ (state["net.2.weight"] * 0.5 / math.sqrt(5)).T + state["net.2.bias"] * 0.5
    colour, sigma = decoder(x)
    # Two FCs (6 and 5 inputs), computed by other kernels (addmm) than the explicit products.
    assert_close(sigma, out[..., :1], terms=11)
    assert_close(colour, torch.sigmoid(out[..., 1:]) * 1.002 - 0.001, terms=11)
    assert colour.min() >= -0.001 and colour.max() <= 1.001
    assert_close(decoder.density(x), sigma, terms=11)


def test_wrong_feature_width_raises_value_error() -> None:
    decoder = TriplaneDecoder(n_features=8)
    with pytest.raises(ValueError, match="features"):
        decoder(torch.zeros(3, 7))
    with pytest.raises(ValueError, match="features"):
        decoder.density(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="hidden_dim"):
        TriplaneDecoder(hidden_dim=0)


def test_clamped_softplus_matches_softplus_and_its_gradient() -> None:
    x = torch.linspace(-2000, 2000, 40001, dtype=torch.float64)
    expected = F.softplus(x)
    with torch.no_grad():
        assert (ClampedSoftplus()(x.clone()) - expected).abs().max() <= 2.1e-9
    x.requires_grad_(True)
    ClampedSoftplus()(x).sum().backward()
    assert (x.grad - torch.sigmoid(x.detach())).abs().max() <= 2.1e-9
    # In inference the decoder clamps its own hidden activations in place; with autograd it must not.
    y = torch.full((3,), -50.0, requires_grad=True)
    ClampedSoftplus()(y * 1)
    assert torch.equal(y.detach(), torch.full((3,), -50.0))


def test_decoding_fewer_colour_channels_equals_the_first_channels() -> None:
    torch.manual_seed(1)
    decoder = TriplaneDecoder(n_features=6, hidden_dim=5, output_dim=4)
    x = torch.randn(2, 9, 6)
    colour, sigma = decoder(x)
    rgb, sigma3 = decoder(x, colour_channels=3)
    # Fewer output rows are another matrix shape for the last layer: rounding of its 5-term sums.
    assert_close(rgb, colour[..., :3], terms=11)
    assert_close(sigma3, sigma, terms=11)
    assert_close(decoder.density(x), sigma, terms=11)
    with pytest.raises(ValueError, match="colour_channels"):
        decoder(x, colour_channels=5)
