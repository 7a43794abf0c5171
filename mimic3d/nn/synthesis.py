"""StyleGAN2 synthesis network (skip architecture by default): ws -> image."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mimic3d.nn.layers import Conv2dLayer, block_format
from mimic3d.nn.modulated import SynthesisLayer, ToRGBLayer
from mimic3d.nn.resample import setup_filter, upsample2d

ARCHITECTURES = ("orig", "skip", "resnet")


class SynthesisBlock(nn.Module):
    """One resolution level: [const or 2x-upsampling conv0] -> conv1 -> ToRGB.

    Shapes: x [N, in_channels, R/up, R/up] (None for the first block, which starts from the
    learned ``const`` [out_channels, R, R]), img [N, img_channels, R/up, R/up] or None,
    ws [N, num_conv + num_torgb, w_dim] -> (x [N, out_channels, R, R], img [N, img_channels, R, R]).
    The ``skip`` architecture adds ToRGB(x) to the FIR-upsampled running image.

    ``up=1`` gives the variant EG3D's super-resolution uses at its input resolution
    (``SynthesisBlockNoUp``): conv0 keeps the size and the incoming image is not upsampled.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = 256,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        fused_modconv_default: bool | str = True,
        up: int = 2,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if up not in (1, 2):
            raise ValueError(f"SynthesisBlock: up must be 1 or 2, got {up}")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.up = up
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=up,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels,
                img_channels,
                w_dim=w_dim,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=up,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        update_emas: bool = False,
        noise_mode: str = "random",
    ) -> tuple[Tensor, Tensor | None]:
        """``update_emas`` is accepted for call compatibility; a block has no running averages."""
        num_ws = self.num_conv + self.num_torgb
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (num_ws, self.w_dim):
            raise ValueError(
                f"SynthesisBlock b{self.resolution}: ws must be [N, {num_ws}, {self.w_dim}], "
                f"got {list(ws.shape)}"
            )
        w_iter = iter(ws.unbind(dim=1))
        dtype, memory_format = block_format(self.use_fp16, self.channels_last, force_fp32, ws.device)
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training
        layer_kwargs = dict(fused_modconv=fused_modconv, noise_mode=noise_mode)

        in_resolution = self.resolution // self.up
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), **layer_kwargs)
        else:
            if x is None or tuple(x.shape[1:]) != (self.in_channels, in_resolution, in_resolution):
                raise ValueError(
                    f"SynthesisBlock b{self.resolution}: x must be [N, {self.in_channels}, "
                    f"{in_resolution}, {in_resolution}], got {None if x is None else list(x.shape)}"
                )
            x = x.to(dtype=dtype, memory_format=memory_format)
            if self.architecture == "resnet":
                y = self.skip(x, gain=math.sqrt(0.5))
                x = self.conv0(x, next(w_iter), **layer_kwargs)
                x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **layer_kwargs)
                x = y.add_(x)
            else:
                x = self.conv0(x, next(w_iter), **layer_kwargs)
                x = self.conv1(x, next(w_iter), **layer_kwargs)

        if img is not None:
            if tuple(img.shape[1:]) != (self.img_channels, in_resolution, in_resolution):
                raise ValueError(
                    f"SynthesisBlock b{self.resolution}: img must be [N, {self.img_channels}, "
                    f"{in_resolution}, {in_resolution}], got {list(img.shape)}"
                )
            if self.up > 1:
                img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.get_default_dtype(), memory_format=torch.contiguous_format)
            if img is None:
                img = y
            else:
                # In place only on the freshly upsampled image, never on the caller's tensor.
                img = img.add_(y) if self.up > 1 else img + y
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, up={self.up}"


class SynthesisNetwork(nn.Module):
    """Blocks b4, b8, ..., b{img_resolution}; ws [N, num_ws, w_dim] -> img [N, img_channels, R, R].

    Channels per block: ``min(channel_base // res, channel_max)``; the ``num_fp16_res`` highest
    resolutions are marked fp16 (only honoured on CUDA). Consecutive blocks share one w: block
    b{r} reads ws[num_conv of earlier blocks : + num_conv + num_torgb].
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 4,
        **block_kwargs,
    ) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: Tensor, **block_kwargs) -> Tensor:
        """``block_kwargs``: force_fp32, fused_modconv, update_emas, noise_mode (see SynthesisBlock)."""
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(
                f"SynthesisNetwork: ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
            )
        ws = ws.to(torch.get_default_dtype())
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), **block_kwargs)
            w_idx += block.num_conv
        return img

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}"
        )
