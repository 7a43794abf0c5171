"""Equalised-learning-rate layers and the fused bias + activation of StyleGAN2/EG3D.

Weights are stored as ``randn / lr_multiplier`` and scaled at run time by
``lr_multiplier / sqrt(fan_in)`` so that Adam sees unit-scale parameters whatever the
layer's fan-in (Karras et al., "equalised learning rate").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.nn.resample import conv2d_resample, setup_filter


@dataclass(frozen=True)
class Activation:
    func: Callable[[Tensor, float], Tensor]
    default_alpha: float
    default_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, alpha: x, 0.0, 1.0),
    "relu": Activation(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, alpha: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0),
    "softplus": Activation(lambda x, alpha: F.softplus(x), 0.0, 1.0),
    "elu": Activation(lambda x, alpha: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, alpha: F.selu(x), 0.0, 1.0),
    "swish": Activation(lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def activation_spec(name: str) -> Activation:
    """The ``ACTIVATIONS`` entry called ``name``; ValueError naming the choices if there is none."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def random_conv_weight(out_channels: int, in_channels: int, kernel_size: int, channels_last: bool) -> Tensor:
    """Unit-normal conv weight [out_channels, in_channels, k, k] (equalised LR scales it at run time),
    stored channels-last when asked, as the official fp16 layers do."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
    return weight.to(memory_format=memory_format)


def bias_act(
    x: Tensor,
    b: Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> Tensor:
    """Add a bias along ``dim``, apply ``act``, multiply by ``gain``, clamp to [-clamp, clamp].

    Matches EG3D's ``bias_act`` (default gain sqrt(2) for relu/lrelu). For the piecewise-linear
    activations (linear, relu, lrelu) it is memory-lean like the official CUDA op: one fused
    function that keeps only its output for the backward pass (which the next layer keeps anyway),
    instead of the intermediate sums and pre-clamp products; twice differentiable (R1).
    """
    spec = activation_spec(act)
    if clamp is not None and clamp < 0:
        raise ValueError(f"bias_act: clamp must be None or >= 0, got {clamp}")
    alpha = float(alpha if alpha is not None else spec.default_alpha)
    gain = float(gain if gain is not None else spec.default_gain)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"bias_act: bias of shape {list(b.shape)} does not match x dim {dim} of {list(x.shape)}"
            )
        b = b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    # Without a backward pass (inference, and exporters' tracing, which cannot record a Python
    # autograd function) the plain ops below keep nothing either and compute the same values.
    needs_backward = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    fused = needs_backward and not torch.jit.is_tracing()
    if fused and act in _PIECEWISE_LINEAR and (act != "linear" or clamp is not None):
        if b is None:
            b = x.new_zeros([])
        return _PiecewiseLinearBiasAct.apply(x, b, act, alpha, gain, clamp)
    if b is not None:
        x = x + b
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


_PIECEWISE_LINEAR = ("linear", "relu", "lrelu")


def _slope(y: Tensor, act: str, alpha: float, gain: float, clamp: float | None) -> Tensor | float:
    """d output / d (x + b) of a piecewise-linear bias_act, read off its output y (same sign as its
    input for gain > 0); 0 where the output was clamped (as the official op)."""
    if act == "linear":
        slope: Tensor | float = gain
    else:
        slope = torch.where(y > 0, gain, alpha * gain if act == "lrelu" else 0.0).to(y.dtype)
    if clamp is not None:
        slope = torch.where(y.abs() < clamp, slope, 0.0).to(y.dtype)
    return slope


class _PiecewiseLinearBiasAct(torch.autograd.Function):
    """y = clamp(act(x + b) * gain); saves y only. x [...], b with x's dimensions (size 1 but along
    the bias axis), or a zero scalar without bias."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, b: Tensor, act: str, alpha: float, gain: float, clamp: float | None
    ) -> Tensor:
        y = x + b  # a fresh tensor: the rest runs in place
        if act == "lrelu":
            F.leaky_relu_(y, alpha)
        elif act == "relu":
            y.relu_()
        if gain != 1:
            y.mul_(gain)
        if clamp is not None:
            y.clamp_(-clamp, clamp)
        ctx.save_for_backward(y)
        ctx.settings = (act, alpha, gain, clamp, b.shape, b.requires_grad)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        act, alpha, gain, clamp, bias_shape, bias_grad = ctx.settings
        # Differentiable in grad (double backward for R1); the slope is piecewise constant in y.
        grad_x = grad * _slope(y, act, alpha, gain, clamp)
        if torch.is_grad_enabled():
            # Under create_graph, keep the input and bias in the graph of this gradient with their zero
            # second derivative, as autograd's composition does: R1 then gives biases zero gradients
            # (the official reference path) rather than none.
            grad_x = grad_x + y * 0
        grad_b = None
        if bias_grad:  # b has x's number of dimensions, size 1 except along the bias axis
            reduce = [i for i, size in enumerate(bias_shape) if size == 1]
            grad_b = grad_x.sum(dim=reduce, keepdim=True)
        return grad_x, grad_b, None, None, None, None


class FullyConnectedLayer(nn.Module):
    """Equalised-LR linear layer: ``act(x @ (w * lr/sqrt(in)).T + b * lr)``.

    Shapes: x [..., in_features] -> [..., out_features].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            # addmm is one fused kernel; EG3D takes the same path, which matters for bit-parity.
            return torch.addmm(b.unsqueeze(0), x.reshape(-1, x.shape[-1]), w.t()).reshape(
                *x.shape[:-1], self.out_features
            )
        return bias_act(x.matmul(w.t()), b, dim=x.ndim - 1, act=self.activation)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"
        )


class Conv2dLayer(nn.Module):
    """Equalised-LR 2-D convolution with optional FIR up/downsampling, bias, activation and clamp.

    Shapes: x [N, in_channels, H, W] -> [N, out_channels, H*up/down, W*up/down] ("same" padding).
    ``trainable=False`` stores weight and bias as buffers (Freeze-D), as the official layer does.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        self.act_gain = activation_spec(activation).default_gain
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

        weight = random_conv_weight(out_channels, in_channels, kernel_size, channels_last)
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_value) if bias_value is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_value)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        """``gain`` scales the activation output and the clamp together (resnet blocks pass sqrt(0.5))."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=self.up == 1,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"activation={self.activation}, up={self.up}, down={self.down}"
        )


def block_format(
    use_fp16: bool, channels_last: bool, force_fp32: bool, device: torch.device
) -> tuple[torch.dtype, torch.memory_format]:
    """Activation dtype and memory format of a StyleGAN2 block.

    float16 (and channels_last, if asked) only on CUDA: the official blocks force float32 on any
    other device, so CPU runs of fp16-configured checkpoints compute in float32 like they do (in
    the default dtype, so float64 tests run in float64).
    """
    half = use_fp16 and not force_fp32 and device.type == "cuda"
    dtype = torch.float16 if half else torch.get_default_dtype()
    memory_format = torch.channels_last if channels_last and half else torch.contiguous_format
    return dtype, memory_format
