"""EpiGRAF's background model: a small style-modulated MLP over NeRF++ points outside the unit sphere.

The Megascans models pair the tri-plane foreground with this field (EpiGRAF's ``INR`` with
``bg_model.type: sphere``): a point (x', y', z', 1/r) (unit direction and inverse distance, see
``mimic3d.render.epigraf_march.sphere_background_points``) is encoded by log-spaced Fourier features
and run through ``num_blocks`` skip blocks of modulated fully connected layers, giving RGB + raw
density. It has its own ws: the generator's mapping network broadcasts ``num_ws`` more of them.

Module names follow the official ``bg_model`` (``blocks.{i}.conv0``, ``conv1``, ``to_out`` with
``weight``, ``bias``, ``affine.*``), so official state dicts load after the prefix is renamed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mimic3d.nn.layers import FullyConnectedLayer, bias_act
from mimic3d.render.field import Field
from mimic3d.render.triplane import to_plane_frame

COORD_DIM = 4  # (x', y', z') on the unit sphere and the inverse distance 1/r
OUTPUT_DIM = 4  # RGB + raw density


@dataclass
class BackgroundConfig:
    """Widths and encoding of the background MLP (EpiGRAF's ``bg_model`` settings).

    Block i has ``min(channel_base // 2 ** (i + 2), channel_max)`` channels; coordinates are scaled
    by ``posenc_period`` and encoded with ceil(log2(posenc_period)) octaves of sin/cos.
    """

    channel_base: int = 32768
    channel_max: int = 128
    num_blocks: int = 2
    posenc_period: float = 64.0

    def __post_init__(self) -> None:
        for name in ("channel_base", "channel_max", "num_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"background.{name}: expected a positive int, got {value!r}")
        if not (math.isfinite(self.posenc_period) and self.posenc_period > 1):
            raise ValueError(f"background.posenc_period: expected a number > 1, got {self.posenc_period}")

    def block_channels(self) -> list[int]:
        return [min(self.channel_base // 2 ** (i + 2), self.channel_max) for i in range(self.num_blocks)]


def fourier_frequencies(period: float) -> Tensor:
    """EpiGRAF's log-spaced frequencies pi * 2^k / T for k < log2(T), T = 2^ceil(log2(period))."""
    resolution = 2 ** math.ceil(math.log2(period))
    count = math.ceil(math.log2(resolution))
    return (2.0 ** torch.arange(count)).float() * math.pi / resolution


class FourierFeatures(nn.Module):
    """x [..., D] -> [..., D * 2K]: per coordinate sin then cos of (x * period) times each frequency."""

    def __init__(self, period: float) -> None:
        super().__init__()
        self.period = float(period)
        # Derived from the config, so not saved with the weights.
        self.register_buffer("frequencies", fourier_frequencies(period), persistent=False)

    @property
    def num_features(self) -> int:
        return 2 * self.frequencies.numel()

    def forward(self, x: Tensor) -> Tensor:
        phase = (x * self.period)[..., None] * self.frequencies.to(x.dtype)
        return torch.cat([phase.sin(), phase.cos()], -1).flatten(-2)


class ModulatedLinear(nn.Module):
    """Style-modulated, demodulated linear layer + bias + lrelu (EpiGRAF's INR ``SynthesisLayer``).

    x [N, P, in], w [N, w_dim] -> [N, P, out]. The raw unit-normal weight needs no equalised-LR gain:
    demodulation normalises each output row.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w)  # [N, in]
        demod = ((self.weight[None] * styles[:, None, :]).square().sum(-1) + 1e-8).rsqrt()  # [N, out]
        x = ((x * styles[:, None, :]) @ self.weight.t()) * demod[:, None, :]
        return bias_act(x, self.bias, dim=2, act="lrelu")


class OutputLinear(nn.Module):
    """Modulated linear output layer without demodulation (EpiGRAF's ``SynthesisOutputLayer``)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        return (x * styles[:, None, :]) @ self.weight.t() + self.bias


class BackgroundBlock(nn.Module):
    """[Fourier features (first block) or conv0] -> conv1 -> to_out; ws [N, num_layers + 1, w_dim]."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, period: float) -> None:
        super().__init__()
        if in_channels == 0:
            self.encoder = FourierFeatures(period)
            in_channels = COORD_DIM * self.encoder.num_features
        else:
            self.encoder = None
            self.conv0 = ModulatedLinear(in_channels, out_channels, w_dim)
        self.conv1 = ModulatedLinear(
            in_channels if self.encoder is not None else out_channels, out_channels, w_dim
        )
        self.to_out = OutputLinear(out_channels, OUTPUT_DIM, w_dim)
        self.num_layers = 1 if self.encoder is not None else 2

    def forward(self, x: Tensor, ws: Tensor) -> tuple[Tensor, Tensor]:
        if self.encoder is not None:
            x = self.conv1(self.encoder(x), ws[:, 0])
        else:
            x = self.conv1(self.conv0(x, ws[:, 0]), ws[:, 1])
        return x, self.to_out(x, ws[:, self.num_layers])


class SphereBackground(nn.Module):
    """points [N, P, 4] (EpiGRAF's frame), ws [N, num_ws, w_dim] -> (colour [N, P, 3], raw sigma [N, P, 1]).

    Blocks share ws like StyleGAN's: block i reads its layers' ws and the next one for its output.
    """

    def __init__(self, config: BackgroundConfig, w_dim: int) -> None:
        super().__init__()
        channels = config.block_channels()
        self.blocks = nn.ModuleList(
            BackgroundBlock(channels[i - 1] if i else 0, channels[i], w_dim, config.posenc_period)
            for i in range(config.num_blocks)
        )
        self.w_dim = w_dim
        self.num_ws = sum(block.num_layers for block in self.blocks) + 1

    def forward(self, points: Tensor, ws: Tensor) -> tuple[Tensor, Tensor]:
        if points.ndim != 3 or points.shape[-1] != COORD_DIM:
            raise ValueError(f"points: expected shape [N, P, {COORD_DIM}], got {list(points.shape)}")
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim) or ws.shape[0] != points.shape[0]:
            raise ValueError(
                f"ws: expected shape [{points.shape[0]}, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
            )
        x, out, w_idx = points, None, 0
        for block in self.blocks:
            x, y = block(x, ws[:, w_idx : w_idx + block.num_layers + 1])
            out = y if out is None else out + y
            w_idx += block.num_layers
        return out[..., :3], out[..., 3:]


def background_field(background: SphereBackground, ws: Tensor, convention: str) -> Field:
    """``background`` with its ws as a render field of NeRF++ points [..., 4] given in our world
    frame: their first three coordinates are turned into the tri-plane frame of ``convention``, the
    frame the background was trained in, before it is queried."""

    def field(points: Tensor) -> tuple[Tensor, Tensor]:
        framed = torch.cat([to_plane_frame(points[..., :3], convention), points[..., 3:]], -1)
        return background(framed, ws)

    return field
