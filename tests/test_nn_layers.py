"""bias_act, equalised-learning-rate FC/conv layers and the fp16 policy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from mimic3d.nn import Conv2dLayer, FullyConnectedLayer, bias_act, block_format


def test_bias_act_lrelu_default_gain_and_clamp():
    x = torch.tensor([[-2.0, -0.5, 0.5, 3.0]])
    b = torch.tensor([0.0, 1.0, -1.0, 0.0])
    y = bias_act(x, b, dim=1, act="lrelu")
    pre = x + b
    expected = torch.where(pre > 0, pre, 0.2 * pre) * math.sqrt(2)
    torch.testing.assert_close(y, expected)
    clamped = bias_act(x, b, dim=1, act="lrelu", gain=2.0, clamp=1.0)
    torch.testing.assert_close(clamped, (torch.where(pre > 0, pre, 0.2 * pre) * 2).clamp(-1, 1))
    assert clamped.abs().max().item() == 1.0


def test_bias_act_linear_default_gain_is_one_and_bias_dim():
    x = torch.randn(2, 3, 4)
    b = torch.randn(4)
    torch.testing.assert_close(bias_act(x, b, dim=2), x + b)
    torch.testing.assert_close(bias_act(x, act="relu", gain=1.0), F.relu(x))
    torch.testing.assert_close(bias_act(x, act="swish"), torch.sigmoid(x) * x * math.sqrt(2))


def test_bias_act_rejects_bad_input():
    with pytest.raises(ValueError, match="activation"):
        bias_act(torch.zeros(2), act="gelu-ish")
    with pytest.raises(ValueError, match="clamp"):
        bias_act(torch.zeros(2), clamp=-1.0)
    with pytest.raises(ValueError, match="bias"):
        bias_act(torch.zeros(2, 3), torch.zeros(4))


def test_fully_connected_equalised_learning_rate():
    torch.manual_seed(0)
    lr_mul = 0.01
    layer = FullyConnectedLayer(256, 128, lr_multiplier=lr_mul, bias_init=0.5)
    # Stored weights have std 1/lr_mul so that the optimiser step size is scaled by lr_mul.
    assert layer.weight.std().item() == pytest.approx(1 / lr_mul, rel=0.05)
    x = torch.randn(5, 256)
    w_eff = layer.weight * lr_mul / math.sqrt(256)
    assert_close(layer(x), x @ w_eff.t() + 0.5 * lr_mul, terms=256)  # one FC over 256 inputs
    # Effective weights have std 1/sqrt(fan_in): unit-variance inputs give unit-variance outputs.
    assert (x @ w_eff.t()).std().item() == pytest.approx(1.0, rel=0.1)


def test_fully_connected_activation_and_leading_dims():
    torch.manual_seed(1)
    layer = FullyConnectedLayer(8, 4, activation="lrelu")
    x = torch.randn(2, 3, 8)
    pre = x @ (layer.weight / math.sqrt(8)).t() + layer.bias
    torch.testing.assert_close(layer(x), F.leaky_relu(pre, 0.2) * math.sqrt(2))


def test_conv2d_layer_matches_explicit_conv_with_gain_and_clamp():
    torch.manual_seed(2)
    layer = Conv2dLayer(4, 6, kernel_size=3, activation="lrelu", conv_clamp=0.3)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 4, 7, 7)
    gain = 1 / math.sqrt(4 * 3 * 3)
    assert layer.weight_gain == pytest.approx(gain)
    pre = F.conv2d(x, layer.weight * gain, layer.bias, padding=1)
    expected = (F.leaky_relu(pre, 0.2) * math.sqrt(2) * 0.5).clamp(-0.15, 0.15)
    assert_close(layer(x, gain=0.5), expected, terms=36)  # a 3x3 convolution over 4 channels


def test_conv2d_layer_resampling_shapes_and_frozen_layers():
    x = torch.randn(1, 3, 8, 8)
    assert Conv2dLayer(3, 5, 3, down=2)(x).shape == (1, 5, 4, 4)
    assert Conv2dLayer(3, 5, 3, up=2)(x).shape == (1, 5, 16, 16)
    assert Conv2dLayer(3, 5, 1, bias=False, down=2)(x).shape == (1, 5, 4, 4)
    frozen = Conv2dLayer(3, 5, 3, trainable=False)
    assert list(frozen.parameters()) == []
    assert set(frozen.state_dict()) == {"weight", "bias", "resample_filter"}
    assert set(Conv2dLayer(3, 5, 1, bias=False).state_dict()) == {"weight", "resample_filter"}
    with pytest.raises(ValueError, match="activation"):
        Conv2dLayer(3, 5, 3, activation="nope")


def test_block_format_uses_fp16_only_on_cuda():
    cpu = torch.device("cpu")
    assert block_format(True, True, False, cpu) == (torch.float32, torch.contiguous_format)
    cuda = torch.device("cuda")
    assert block_format(True, True, False, cuda) == (torch.float16, torch.channels_last)
    assert block_format(True, False, False, cuda) == (torch.float16, torch.contiguous_format)
    assert block_format(True, True, True, cuda) == (torch.float32, torch.contiguous_format)
    assert block_format(False, False, False, cuda) == (torch.float32, torch.contiguous_format)
