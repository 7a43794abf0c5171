"""EG3D's 2D super-resolution: the low-resolution neural render -> the final image.

Two StyleGAN2 skip blocks driven by the generator's last w only. The raw RGB (first three feature
channels) is the skip path: each block adds its ToRGB output to the (FIR-upsampled) running image.
Inputs of another size are first resized to the module's input resolution, bilinearly with
antialiasing as in EG3D.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.models.config import SUPERRESOLUTION_INPUT_DIVISOR
from mimic3d.nn.resample import setup_filter
from mimic3d.nn.synthesis import SynthesisBlock


class SuperResolution(nn.Module):
    """EG3D's ``SuperresolutionHybrid{2X,4X,8X,8XDC}`` (module names ``block0``, ``block1``).

    ``kind`` "hybrid2x"/"hybrid4x": block0 keeps the input resolution (img/2), block1 doubles it;
    "hybrid8x"/"hybrid8xdc": both blocks double it (input img/4). Shapes: rgb [N, 3, r, r],
    features [N, in_channels, r, r], ws [N, num_ws, w_dim] -> image [N, 3, img, img].
    """

    def __init__(
        self,
        kind: str,
        in_channels: int,
        img_resolution: int,
        channels: tuple[int, int],
        w_dim: int,
        antialias: bool = True,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        noise_mode: str = "none",
    ) -> None:
        super().__init__()
        if kind not in SUPERRESOLUTION_INPUT_DIVISOR:
            raise ValueError(
                f"superresolution: expected one of {list(SUPERRESOLUTION_INPUT_DIVISOR)}, got {kind!r}"
            )
        self.kind = kind
        self.input_resolution = img_resolution // SUPERRESOLUTION_INPUT_DIVISOR[kind]
        self.antialias = antialias
        self.noise_mode = noise_mode
        first_up = 2 if SUPERRESOLUTION_INPUT_DIVISOR[kind] == 4 else 1
        block = dict(
            w_dim=w_dim,
            img_channels=3,
            conv_clamp=conv_clamp,
            use_fp16=use_fp16,
            fused_modconv_default="inference_only",
        )
        self.block0 = SynthesisBlock(
            in_channels,
            channels[0],
            resolution=self.input_resolution * first_up,
            is_last=False,
            up=first_up,
            **block,
        )
        self.block1 = SynthesisBlock(
            channels[0], channels[1], resolution=img_resolution, is_last=True, **block
        )
        if kind != "hybrid8xdc":
            # Unused; the official 2X/4X/8X modules register it, so their state dicts carry it.
            self.register_buffer("resample_filter", setup_filter((1, 3, 3, 1)))

    def forward(self, rgb: Tensor, features: Tensor, ws: Tensor, fused_modconv: bool | None = None) -> Tensor:
        w = ws[:, -1:].expand(-1, 3, -1)
        if features.shape[-1] != self.input_resolution:
            size = (self.input_resolution, self.input_resolution)
            features = F.interpolate(
                features, size=size, mode="bilinear", align_corners=False, antialias=self.antialias
            )
            rgb = F.interpolate(
                rgb, size=size, mode="bilinear", align_corners=False, antialias=self.antialias
            )
        x, img = self.block0(features, rgb, w, noise_mode=self.noise_mode, fused_modconv=fused_modconv)
        _, img = self.block1(x, img, w, noise_mode=self.noise_mode, fused_modconv=fused_modconv)
        return img
