"""EG3D's dual discriminator: judges the final image and the raw neural render together.

The raw render (``image_raw``, e.g. 64x64) is resized to the final resolution with antialiased
bilinear interpolation and stacked with the final image into 6 channels, so that the generator
cannot make the two disagree. Scores are conditioned on the 25-d camera label through an 8-layer
mapping network (projection discriminator). Parameter names equal the official
``DualDiscriminator``'s, so its state dicts load unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.nn import Discriminator, setup_filter
from mimic3d.nn.synthesis import ARCHITECTURES


@dataclass
class DualDiscriminatorConfig:
    """Architecture of a ``DualDiscriminator`` (defaults: EG3D FFHQ 512).

    ``img_channels`` counts the channels of one image (the network sees twice as many).
    ``disc_c_noise`` adds Gaussian noise of that many per-batch standard deviations to the camera
    labels in training mode (EG3D's pose-conditioning regulariser). ``num_fp16_res`` marks the
    highest resolutions for float16, honoured on CUDA only; ``conv_clamp`` clamps conv outputs
    (EG3D uses 256 whenever fp16 blocks exist).
    """

    img_resolution: int = 512
    img_channels: int = 3
    c_dim: int = 25
    architecture: str = "resnet"
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    cmap_dim: int | None = None
    mapping_layers: int = 8
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    disc_c_noise: float = 0.0
    freeze_layers: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if self.img_resolution < 8 or self.img_resolution & (self.img_resolution - 1):
            raise ValueError(f"img_resolution: expected a power of two >= 8, got {self.img_resolution}")
        for name in ("img_channels", "channel_base", "channel_max", "mapping_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        for name in ("c_dim", "num_fp16_res", "mbstd_num_channels", "freeze_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a non-negative integer, got {getattr(self, name)}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.conv_clamp is not None and self.conv_clamp <= 0:
            raise ValueError(f"conv_clamp: expected None or a positive number, got {self.conv_clamp}")
        if self.cmap_dim is not None and self.cmap_dim < 1:
            raise ValueError(f"cmap_dim: expected None or a positive integer, got {self.cmap_dim}")
        if self.mbstd_group_size is not None and self.mbstd_group_size < 1:
            raise ValueError(
                f"mbstd_group_size: expected None or a positive integer, got {self.mbstd_group_size}"
            )
        if not self.disc_c_noise >= 0:
            raise ValueError(f"disc_c_noise: expected a non-negative number, got {self.disc_c_noise}")


_PRESETS: dict[str, DualDiscriminatorConfig] = {
    "eg3d-ffhq512": DualDiscriminatorConfig(),
    "eg3d-ffhq256": DualDiscriminatorConfig(img_resolution=256),
    "eg3d-afhq512": DualDiscriminatorConfig(),
    "eg3d-shapenet128": DualDiscriminatorConfig(img_resolution=128),
    "tiny": DualDiscriminatorConfig(
        img_resolution=32,
        channel_base=256,
        channel_max=32,
        num_fp16_res=0,
        conv_clamp=None,
        mbstd_group_size=2,
    ),
}
PRESET_NAMES = tuple(_PRESETS)


def dual_discriminator_preset(name: str, **overrides: Any) -> DualDiscriminatorConfig:
    """A fresh copy of a named configuration with optional field overrides.

    Names: eg3d-{ffhq512, ffhq256, afhq512, shapenet128} (the official training setups; Mimic3D's
    2D-branch discriminator is the same network) and ``tiny`` (32x32, for tests).
    """
    if name not in _PRESETS:
        raise ValueError(f"preset: unknown name {name!r}; expected one of {list(PRESET_NAMES)}")
    config = copy.deepcopy(_PRESETS[name])
    return dataclasses.replace(config, **overrides) if overrides else config


def resize_raw_image(image_raw: Tensor, size: int) -> Tensor:
    """[N, C, r, r] -> [N, C, size, size], bilinear with antialiasing (EG3D's ``filtered_resizing``)."""
    if image_raw.shape[-1] == size and image_raw.shape[-2] == size:
        return image_raw
    return F.interpolate(image_raw, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class DualDiscriminator(Discriminator):
    """Camera-conditioned StyleGAN2 discriminator on cat(image, resized image_raw).

    ``D({"image": [N, C, R, R], "image_raw": [N, C, r, r]}, c [N, c_dim]) -> logits [N, 1]``
    (any other keys of the dict, e.g. ``image_depth``, are ignored).
    """

    def __init__(self, config: DualDiscriminatorConfig) -> None:
        config.validate()
        super().__init__(
            c_dim=config.c_dim,
            img_resolution=config.img_resolution,
            img_channels=2 * config.img_channels,
            architecture=config.architecture,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_fp16_res=config.num_fp16_res,
            conv_clamp=config.conv_clamp,
            cmap_dim=config.cmap_dim,
            block_kwargs={"freeze_layers": config.freeze_layers},
            mapping_kwargs={"num_layers": config.mapping_layers},
            epilogue_kwargs={
                "mbstd_group_size": config.mbstd_group_size,
                "mbstd_num_channels": config.mbstd_num_channels,
            },
        )
        self.config = config
        # Unused by the antialiased resize; kept so that official state dicts load key for key.
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def forward(self, images: Mapping[str, Tensor], c: Tensor | None, force_fp32: bool = False) -> Tensor:
        """Logits [N, 1]. ``images`` needs "image" [N, C, R, R] and "image_raw" [N, C, r, r]."""
        channels, resolution = self.config.img_channels, self.config.img_resolution
        for key in ("image", "image_raw"):
            if key not in images:
                raise ValueError(
                    f"DualDiscriminator: images needs the key {key!r}, got keys {sorted(images)}"
                )
            value = images[key]
            if value.ndim != 4 or value.shape[1] != channels or value.shape[-1] != value.shape[-2]:
                raise ValueError(
                    f"DualDiscriminator: {key} must be [N, {channels}, H, H], got {list(value.shape)}"
                )
        image, image_raw = images["image"], images["image_raw"]
        if image.shape[-1] != resolution or image_raw.shape[0] != image.shape[0]:
            raise ValueError(
                f"DualDiscriminator: image must be [N, {channels}, {resolution}, {resolution}] and "
                f"image_raw share its batch, got {list(image.shape)} and {list(image_raw.shape)}"
            )
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or tuple(c.shape) != (image.shape[0], self.c_dim):
                raise ValueError(
                    f"DualDiscriminator: c must be [{image.shape[0]}, {self.c_dim}], "
                    f"got {None if c is None else list(c.shape)}"
                )
            if self.training and self.config.disc_c_noise > 0:
                if c.shape[0] < 2:
                    raise ValueError(
                        "DualDiscriminator: disc_c_noise scales by the batch's label std; "
                        "it needs a batch of at least 2"
                    )
                c = c + torch.randn_like(c) * c.std(0) * self.config.disc_c_noise
        stacked = torch.cat([image, resize_raw_image(image_raw, resolution)], dim=1)
        return super().forward(stacked, c, force_fp32=force_fp32)
