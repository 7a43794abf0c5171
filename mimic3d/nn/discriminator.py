"""StyleGAN2 discriminator (resnet by default) with label-conditioned projection output."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mimic3d.nn.layers import Conv2dLayer, FullyConnectedLayer, block_format
from mimic3d.nn.mapping import MappingNetwork
from mimic3d.nn.resample import downsample2d, setup_filter
from mimic3d.nn.synthesis import ARCHITECTURES


class DiscriminatorBlock(nn.Module):
    """One resolution level: [fromrgb 1x1] -> conv0 3x3 -> conv1 3x3 down 2 (+ resnet skip).

    Shapes: x [N, in_channels, R, R] (None for the first block, which reads img through
    ``fromrgb``), img [N, img_channels, R, R] -> (x [N, out_channels, R/2, R/2], img or None).
    ``resnet`` sums a 1x1 down-2 skip (no bias) and the main path, each scaled by sqrt(0.5).
    The first ``freeze_layers`` layers (counted over the whole discriminator) are stored as buffers.
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ) -> None:
        super().__init__()
        if in_channels not in (0, tmp_channels):
            raise ValueError(
                f"DiscriminatorBlock: in_channels must be 0 or tmp_channels={tmp_channels}, got {in_channels}"
            )
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def next_trainable() -> bool:
            trainable = self.first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return trainable

        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, kernel_size=1, trainable=next_trainable(), **common
            )
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, kernel_size=3, trainable=next_trainable(), **common
        )
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            down=2,
            trainable=next_trainable(),
            resample_filter=resample_filter,
            **common,
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                down=2,
                trainable=next_trainable(),
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self, x: Tensor | None, img: Tensor | None, force_fp32: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        reference = x if x is not None else img
        if reference is None:
            raise ValueError(f"DiscriminatorBlock b{self.resolution}: needs x or img, got neither")
        dtype, memory_format = block_format(self.use_fp16, self.channels_last, force_fp32, reference.device)
        if x is not None:
            if tuple(x.shape[1:]) != (self.in_channels, self.resolution, self.resolution):
                raise ValueError(
                    f"DiscriminatorBlock b{self.resolution}: x must be [N, {self.in_channels}, "
                    f"{self.resolution}, {self.resolution}], got {list(x.shape)}"
                )
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0 or self.architecture == "skip":
            if img is None or tuple(img.shape[1:]) != (self.img_channels, self.resolution, self.resolution):
                raise ValueError(
                    f"DiscriminatorBlock b{self.resolution}: img must be [N, {self.img_channels}, "
                    f"{self.resolution}, {self.resolution}], got {None if img is None else list(img.shape)}"
                )
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None

        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}"


class MinibatchStdLayer(nn.Module):
    """Append the mean (over channels and pixels) of the per-group standard deviation as features.

    x [N, C, H, W] -> [N, C + num_channels, H, W]. Samples are grouped as n = i mod (N / G), i.e.
    sample i shares its group with i + N/G, i + 2N/G, ...; N must be divisible by the group size G.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        if n % g != 0 or c % f != 0:
            raise ValueError(
                f"MinibatchStdLayer: batch {n} must be divisible by group size {g} and "
                f"channels {c} by num_channels {f}"
            )
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [n, F, c, H, W]
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)  # [n, F, 1, 1]
        y = y.repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch-std -> conv 3x3 -> FC -> out; projection onto cmap when conditioned.

    Shapes: x [N, in_channels, R, R], cmap [N, cmap_dim] -> score [N, 1] =
    sum(out * cmap) / sqrt(cmap_dim) (or the plain output when ``cmap_dim == 0``). Always the default dtype
    (float32; float64 in float64 tests), never float16.
    """

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = (
            MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels)
            if mbstd_num_channels > 0
            else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            kernel_size=3,
            activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None, force_fp32: bool = False) -> Tensor:
        """``force_fp32`` is accepted for call compatibility; the epilogue never runs in float16."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, self.resolution, self.resolution):
            raise ValueError(
                f"DiscriminatorEpilogue: x must be [N, {self.in_channels}, {self.resolution}, "
                f"{self.resolution}], got {list(x.shape)}"
            )
        dtype = torch.get_default_dtype()
        x = x.to(dtype=dtype, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=dtype, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            if cmap is None or tuple(cmap.shape) != (x.shape[0], self.cmap_dim):
                raise ValueError(
                    f"DiscriminatorEpilogue: cmap must be [{x.shape[0]}, {self.cmap_dim}], got "
                    f"{None if cmap is None else list(cmap.shape)}"
                )
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}"


class Discriminator(nn.Module):
    """Blocks b{R}, ..., b8, then the 4x4 epilogue b4; img [N, img_channels, R, R], c [N, c_dim] -> [N, 1].

    Conditioned (``c_dim > 0``) through ``mapping``, an 8-layer MappingNetwork from c to cmap
    (no z, no w_avg). Channels ``min(channel_base // res, channel_max)``; the ``num_fp16_res``
    highest resolutions are marked fp16 with ``conv_clamp`` (only honoured on CUDA).
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 4,
        conv_clamp: float | None = 256,
        cmap_dim: int | None = None,
        block_kwargs: dict | None = None,
        mapping_kwargs: dict | None = None,
        epilogue_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0

        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=res >= fp16_resolution,
                **(block_kwargs or {}),
                **common,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {})
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}), **common
        )

    def forward(self, img: Tensor, c: Tensor | None, update_emas: bool = False, **block_kwargs) -> Tensor:
        """``update_emas`` is accepted for call compatibility; ``block_kwargs``: force_fp32."""
        if img.ndim != 4 or tuple(img.shape[1:]) != (
            self.img_channels,
            self.img_resolution,
            self.img_resolution,
        ):
            raise ValueError(
                f"Discriminator: img must be [N, {self.img_channels}, {self.img_resolution}, "
                f"{self.img_resolution}], got {list(img.shape)}"
            )
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def extra_repr(self) -> str:
        return f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}"
