"""Discriminators of image patches: Mimic3D's plain D^3D and EpiGRAF's scale/location-aware one.

``PatchDiscriminator`` is Mimic3D's D^3D: a StyleGAN2 resnet discriminator on 64x64 patches,
unconditional in the reference code (official ``SingleDiscriminator``; same parameter names).

``HyperModulatedPatchDiscriminator`` is EpiGRAF's: a patch of scale s (its side over the image
side) at offset (ox, oy) (its top-left corner, in image-side units) is encoded as
(s, ox, oy) * 1000 -> per scalar 10 log-spaced Fourier frequencies (sin, cos) plus a learned
1001 x 256 embedding of the rounded value = 3 * 276 = 828 dims. A 2-layer mapping turns that code
into h (512-d); in every block the input of the second convolution is multiplied per sample and
channel by 1 + tanh(affine(h)). The code also joins the projection conditioning, optionally with
Fourier features of the camera's yaw and pitch under element-wise dropout. Parameter names follow
EpiGRAF's ``Discriminator`` (``scalar_enc``, ``hyper_mod_mapping``, ``head_mapping``, ``b{res}``);
EpiGRAF also builds a ``fromrgb`` layer and a ``resample_filter`` in blocks that never use them,
which we omit (drop those keys when loading an EpiGRAF state dict).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mimic3d.models.patch_encoding import CameraConditionedMapping, ScalarEncoder
from mimic3d.nn import Conv2dLayer, Discriminator, DiscriminatorEpilogue, FullyConnectedLayer, MappingNetwork
from mimic3d.nn.layers import block_format
from mimic3d.nn.synthesis import ARCHITECTURES
from mimic3d.runtime import on_host


def _check_power_of_two(name: str, value: int, minimum: int) -> None:
    if value < minimum or value & (value - 1):
        raise ValueError(f"{name}: expected a power of two >= {minimum}, got {value}")


def _check_common(config: Any) -> None:
    for name in ("img_channels", "channel_base", "channel_max", "mapping_layers"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: expected a positive integer, got {getattr(config, name)}")
    for name in ("c_dim", "num_fp16_res", "mbstd_num_channels"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {getattr(config, name)}")
    if config.conv_clamp is not None and config.conv_clamp <= 0:
        raise ValueError(f"conv_clamp: expected None or a positive number, got {config.conv_clamp}")
    if config.mbstd_group_size is not None and config.mbstd_group_size < 1:
        raise ValueError(
            f"mbstd_group_size: expected None or a positive integer, got {config.mbstd_group_size}"
        )


# ----------------------------------------------------------------------------- plain (Mimic3D)


@dataclass
class PatchDiscriminatorConfig:
    """Architecture of a ``PatchDiscriminator`` (defaults: Mimic3D's D^3D on 64x64 patches)."""

    patch_resolution: int = 64
    img_channels: int = 3
    c_dim: int = 0
    architecture: str = "resnet"
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    mapping_layers: int = 8
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        _check_power_of_two("patch_resolution", self.patch_resolution, 8)
        _check_common(self)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {ARCHITECTURES}, got {self.architecture!r}")


class PatchDiscriminator(Discriminator):
    """``D(patch [N, C, r, r], c [N, c_dim] or None) -> logits [N, 1]``."""

    def __init__(self, config: PatchDiscriminatorConfig) -> None:
        config.validate()
        super().__init__(
            c_dim=config.c_dim,
            img_resolution=config.patch_resolution,
            img_channels=config.img_channels,
            architecture=config.architecture,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_fp16_res=config.num_fp16_res,
            conv_clamp=config.conv_clamp,
            mapping_kwargs={"num_layers": config.mapping_layers},
            epilogue_kwargs={
                "mbstd_group_size": config.mbstd_group_size,
                "mbstd_num_channels": config.mbstd_num_channels,
            },
        )
        self.config = config


# ----------------------------------------------------------------------------- hyper-modulated (EpiGRAF)


@dataclass
class HyperModulatedPatchDiscriminatorConfig:
    """Architecture of a ``HyperModulatedPatchDiscriminator`` (defaults: EpiGRAF at 512, 64x64 patches).

    The blocks are laid out as for a full ``img_resolution`` discriminator (channel counts by that
    resolution), the first log2(img_resolution / patch_resolution) of them without downsampling,
    so that a patch passes through as many blocks as a full image would. ``hyper_mod=False`` keeps
    the patch code in the projection conditioning but drops the per-block modulation.
    """

    img_resolution: int = 512
    patch_resolution: int = 64
    img_channels: int = 3
    c_dim: int = 0
    channel_base: int = 16384
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    cmap_dim: int | None = None
    hyper_mod: bool = True
    hyper_mod_dim: int = 512
    mapping_layers: int = 2
    patch_multiplier: float = 1000.0
    patch_embed_dim: int = 256
    camera_cond: bool = False
    camera_cond_drop_p: float = 0.5
    camera_cond_noise_std: float = 0.0
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_additional_start_blocks(self) -> int:
        """Blocks that keep the patch resolution (no downsampling) before the usual pyramid."""
        return int(math.log2(self.img_resolution // self.patch_resolution))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        _check_power_of_two("patch_resolution", self.patch_resolution, 8)
        _check_power_of_two("img_resolution", self.img_resolution, self.patch_resolution)
        _check_common(self)
        for name in ("hyper_mod_dim", "patch_multiplier"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name}: expected a number >= 1, got {getattr(self, name)}")
        if self.patch_embed_dim < 0:
            raise ValueError(f"patch_embed_dim: expected a non-negative integer, got {self.patch_embed_dim}")
        if self.cmap_dim is not None and self.cmap_dim < 1:
            raise ValueError(f"cmap_dim: expected None or a positive integer, got {self.cmap_dim}")
        if not 0 <= self.camera_cond_drop_p < 1:
            raise ValueError(
                f"camera_cond_drop_p: expected a probability in [0, 1), got {self.camera_cond_drop_p}"
            )
        if not self.camera_cond_noise_std >= 0:
            raise ValueError(
                f"camera_cond_noise_std: expected a non-negative number, got {self.camera_cond_noise_std}"
            )


_HYPER_PRESETS: dict[str, HyperModulatedPatchDiscriminatorConfig] = {
    "epigraf-ffhq512": HyperModulatedPatchDiscriminatorConfig(camera_cond=True),
    "epigraf-ffhq256": HyperModulatedPatchDiscriminatorConfig(img_resolution=256, camera_cond=True),
    "epigraf-512": HyperModulatedPatchDiscriminatorConfig(),
    "epigraf-256": HyperModulatedPatchDiscriminatorConfig(img_resolution=256),
    "tiny": HyperModulatedPatchDiscriminatorConfig(
        img_resolution=32,
        patch_resolution=16,
        channel_base=256,
        channel_max=32,
        num_fp16_res=0,
        conv_clamp=None,
        hyper_mod_dim=16,
        patch_embed_dim=8,
        mbstd_group_size=2,
    ),
}
_PLAIN_PRESETS: dict[str, PatchDiscriminatorConfig] = {
    "mimic3d": PatchDiscriminatorConfig(),
    "tiny": PatchDiscriminatorConfig(
        patch_resolution=16,
        channel_base=256,
        channel_max=32,
        num_fp16_res=0,
        conv_clamp=None,
        mbstd_group_size=2,
    ),
}
PRESET_NAMES = tuple(_PLAIN_PRESETS)
HYPER_PRESET_NAMES = tuple(_HYPER_PRESETS)


def patch_discriminator_preset(name: str, **overrides: Any) -> PatchDiscriminatorConfig:
    """Plain patch discriminator configs: ``mimic3d`` (D^3D, 64x64) and ``tiny`` (16x16, for tests)."""
    if name not in _PLAIN_PRESETS:
        raise ValueError(f"preset: unknown name {name!r}; expected one of {list(PRESET_NAMES)}")
    config = copy.deepcopy(_PLAIN_PRESETS[name])
    return dataclasses.replace(config, **overrides) if overrides else config


def hyper_patch_discriminator_preset(name: str, **overrides: Any) -> HyperModulatedPatchDiscriminatorConfig:
    """EpiGRAF configs: ``epigraf-ffhq{512,256}`` (camera-conditioned, as for FFHQ and Cats),
    ``epigraf-{512,256}`` (patch code only) and ``tiny`` (16x16 patches of 32x32 images, for tests)."""
    if name not in _HYPER_PRESETS:
        raise ValueError(f"preset: unknown name {name!r}; expected one of {list(HYPER_PRESET_NAMES)}")
    config = copy.deepcopy(_HYPER_PRESETS[name])
    return dataclasses.replace(config, **overrides) if overrides else config


class HyperModulatedConv2d(Conv2dLayer):
    """Conv2dLayer whose input is scaled per sample and channel by 1 + tanh(affine(h)) first.

    x [N, in_channels, H, W], h [N, hyper_dim] -> [N, out_channels, H', W']. The affine starts at
    zero bias, so the modulation starts near 1.
    """

    def __init__(self, in_channels: int, out_channels: int, hyper_dim: int, **conv_kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, **conv_kwargs)
        self.affine = FullyConnectedLayer(hyper_dim, in_channels, bias_init=0)

    def forward(self, x: Tensor, h: Tensor, gain: float = 1.0) -> Tensor:
        modulation = 1.0 + self.affine(h).tanh()  # [N, in_channels]
        x = (x * modulation[:, :, None, None]).to(x.dtype)
        return super().forward(x, gain=gain)


class HyperModulatedDiscriminatorBlock(nn.Module):
    """Resnet block: [fromrgb 1x1] -> conv0 3x3 -> conv1 3x3 (hyper-modulated input) down ``down``,
    plus a 1x1 skip (no bias), both scaled by sqrt(0.5).

    x [N, in_channels, S, S] (None for the first block, which reads img [N, img_channels, S, S]),
    h [N, hyper_dim] -> [N, out_channels, S / down, S / down].
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        resolution: int,
        down: int,
        hyper_dim: int | None,
        conv_clamp: float | None,
        use_fp16: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.use_fp16 = use_fp16
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, kernel_size=1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp
        )
        conv1 = dict(kernel_size=3, activation="lrelu", down=down, conv_clamp=conv_clamp)
        self.conv1 = (
            HyperModulatedConv2d(tmp_channels, out_channels, hyper_dim, **conv1)
            if hyper_dim
            else Conv2dLayer(tmp_channels, out_channels, **conv1)
        )
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=down)

    def forward(self, x: Tensor | None, img: Tensor, h: Tensor | None, force_fp32: bool = False) -> Tensor:
        dtype, memory_format = block_format(self.use_fp16, False, force_fp32, img.device)
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0:
            y = self.fromrgb(img.to(dtype=dtype, memory_format=memory_format))
            x = x + y if x is not None else y
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        if isinstance(self.conv1, HyperModulatedConv2d):
            x = self.conv1(x, h, gain=math.sqrt(0.5))
        else:
            x = self.conv1(x, gain=math.sqrt(0.5))
        return y.add_(x)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}"


class HyperModulatedPatchDiscriminator(nn.Module):
    """EpiGRAF's scale/location-aware patch discriminator.

    ``D(patch [N, C, r, r], scale [N], offset [N, 2], c [N, c_dim] or None, camera_angles [N, 2|3]
    or None) -> logits [N, 1]``. ``scale`` in (0, 1] is the patch side over the image side,
    ``offset`` in [0, 1 - scale] its top-left corner (x, y) in the same units; ``camera_angles``
    (yaw, pitch[, roll]) are required when ``config.camera_cond``.
    """

    def __init__(self, config: HyperModulatedPatchDiscriminatorConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.block_resolutions = [2**i for i in range(int(math.log2(config.img_resolution)), 2, -1)]
        channels = {
            res: min(config.channel_base // res, config.channel_max) for res in self.block_resolutions + [4]
        }
        cmap_dim = channels[4] if config.cmap_dim is None else config.cmap_dim
        fp16_resolution = max(2 ** (int(math.log2(config.img_resolution)) + 1 - config.num_fp16_res), 8)

        self.scalar_enc = ScalarEncoder(
            num_scalars=3, multiplier=config.patch_multiplier, embed_dim=config.patch_embed_dim
        )
        mapping = dict(num_layers=config.mapping_layers, num_ws=None, w_avg_beta=None)
        if config.hyper_mod:
            self.hyper_mod_mapping = MappingNetwork(
                z_dim=0, c_dim=self.scalar_enc.dim, w_dim=config.hyper_mod_dim, **mapping
            )
        for index, res in enumerate(self.block_resolutions):
            block = HyperModulatedDiscriminatorBlock(
                in_channels=0 if index == 0 else channels[res],
                tmp_channels=channels[res],
                out_channels=channels[res // 2],
                img_channels=config.img_channels,
                resolution=res,
                down=1 if index < config.num_additional_start_blocks else 2,
                hyper_dim=config.hyper_mod_dim if config.hyper_mod else None,
                conv_clamp=config.conv_clamp,
                use_fp16=res >= fp16_resolution,
            )
            setattr(self, f"b{res}", block)
        head_dim = config.c_dim + self.scalar_enc.dim
        if config.camera_cond:
            self.head_mapping = CameraConditionedMapping(
                head_dim,
                cmap_dim,
                config.mapping_layers,
                config.camera_cond_drop_p,
                config.camera_cond_noise_std,
            )
        else:
            self.head_mapping = MappingNetwork(z_dim=0, c_dim=head_dim, w_dim=cmap_dim, **mapping)
        self.b4 = DiscriminatorEpilogue(
            channels[4],
            cmap_dim=cmap_dim,
            resolution=4,
            img_channels=config.img_channels,
            mbstd_group_size=config.mbstd_group_size,
            mbstd_num_channels=config.mbstd_num_channels,
            conv_clamp=config.conv_clamp,
        )

    def encode_patch(self, scale: Tensor, offset: Tensor) -> Tensor:
        """scale [N], offset [N, 2] -> the patch code [N, 3 * (20 + patch_embed_dim)] (828 by default)."""
        return self.scalar_enc(torch.cat([scale.reshape(-1, 1), offset], dim=1))

    def forward(
        self,
        patch: Tensor,
        scale: Tensor,
        offset: Tensor,
        c: Tensor | None = None,
        camera_angles: Tensor | None = None,
        force_fp32: bool = False,
    ) -> Tensor:
        """Logits [N, 1] for patches [N, C, r, r] cut at (scale [N], offset [N, 2])."""
        self._check_inputs(patch, scale, offset, c, camera_angles)
        code = self.encode_patch(scale, offset)
        h = self.hyper_mod_mapping(None, code) if self.config.hyper_mod else None
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, patch, h, force_fp32=force_fp32)
        head_c = torch.cat([c.float(), code], dim=1) if self.config.c_dim > 0 else code
        if self.config.camera_cond:
            cmap = self.head_mapping(head_c, camera_angles)
        else:
            cmap = self.head_mapping(None, head_c)
        return self.b4(x, None, cmap)

    def _check_inputs(
        self, patch: Tensor, scale: Tensor, offset: Tensor, c: Tensor | None, camera_angles: Tensor | None
    ) -> None:
        r, channels = self.config.patch_resolution, self.config.img_channels
        if patch.ndim != 4 or tuple(patch.shape[1:]) != (channels, r, r):
            raise ValueError(
                f"HyperModulatedPatchDiscriminator: patch must be [N, {channels}, {r}, {r}], "
                f"got {list(patch.shape)}"
            )
        n = patch.shape[0]
        if scale.numel() != n or tuple(offset.shape) != (n, 2):
            raise ValueError(
                f"HyperModulatedPatchDiscriminator: scale must be [{n}] and offset [{n}, 2], "
                f"got {list(scale.shape)} and {list(offset.shape)}"
            )
        # The learned embedding has one row per 1/multiplier step of [0, 1]; values outside have none.
        # Checked on the CPU only (``on_host``): on a GPU the check would stall every training step.
        in_range = ((scale > 0) & (scale <= 1)).all() & ((offset >= 0) & (offset <= 1)).all()
        if on_host(scale, offset) and not bool(in_range):
            raise ValueError(
                "HyperModulatedPatchDiscriminator: scale must lie in (0, 1] and offset in [0, 1]"
            )
        if self.config.c_dim > 0 and (c is None or tuple(c.shape) != (n, self.config.c_dim)):
            raise ValueError(
                f"HyperModulatedPatchDiscriminator: c must be [{n}, {self.config.c_dim}], "
                f"got {None if c is None else list(c.shape)}"
            )
        if self.config.camera_cond and (
            camera_angles is None
            or camera_angles.ndim != 2
            or camera_angles.shape[0] != n
            or camera_angles.shape[1] not in (2, 3)
        ):
            raise ValueError(
                f"HyperModulatedPatchDiscriminator: camera_angles must be [{n}, 2 or 3] (yaw, pitch"
                f"[, roll]) when camera_cond is set, got "
                f"{None if camera_angles is None else list(camera_angles.shape)}"
            )
