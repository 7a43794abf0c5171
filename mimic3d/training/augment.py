"""Adaptive discriminator augmentation (StyleGAN2-ADA), the 'bgc' subset used for AFHQ by EG3D.

Every discriminator input (real and fake) passes through ``AugmentPipe``: pixel blitting (x-flip,
90-degree rotation, integer translation), general geometry (isotropic scale, rotation, anisotropic
scale, fractional translation) and colour (brightness, contrast, luma flip, hue, saturation). Each
transform fires per sample with probability ``multiplier * p``; ``AdaptiveProbability`` moves ``p``
so that the discriminator's mean sign on reals tracks a target (0.6).

Probabilities, magnitudes and the order and shapes of the random draws are the official ones, so
a seeded run draws the same transforms. A sample that received any general geometric transform
is warped exactly as in the official code (all its geometric transforms composed into one inverse
matrix; reflect padding, 2x sym6 upsampling, bilinear resampling, downsampling). A sample that
received only pixel blitting (x-flip, quarter turns, integer translation; borders reflected) has
its pixels moved exactly instead: the official warp is not exact for these because sym6 is not
symmetric (its "flip" of white noise is off by up to ~0.5, of smooth images by up to ~0.1), nor
an exact identity (p = 0 changes pixels by ~1e-5 there; here p = 0 returns the input).

EG3D's dual discriminator needs image and image_raw transformed identically: ``augment_pair``
upsamples image_raw to the image size, augments the 6-channel stack (colour matrices act on each
RGB triple), and resizes image_raw back, exactly as EG3D does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.nn.resample import downsample2d, setup_filter, upsample2d
from mimic3d.runtime import device_constant, expected_sync

# Low-pass filter of the sym6 wavelet: its up/down pair is (near) perfect reconstruction.
# fmt: off
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)
# fmt: on


@dataclass
class AugmentConfig:
    """Per-transform probability multipliers and magnitudes; defaults are ADA's 'bgc' preset."""

    xflip: float = 1.0
    rotate90: float = 1.0
    xint: float = 1.0
    xint_max: float = 0.125  # integer translation range, fraction of the image size
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    xfrac: float = 1.0
    scale_std: float = 0.2  # log2 std of isotropic scaling
    rotate_max: float = 1.0  # rotation range, 1 = full circle
    aniso_std: float = 0.2  # log2 std of anisotropic scaling
    xfrac_std: float = 0.125  # std of fractional translation, fraction of the image size
    brightness: float = 1.0
    contrast: float = 1.0
    lumaflip: float = 1.0
    hue: float = 1.0
    saturation: float = 1.0
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # log2 std
    hue_max: float = 1.0  # hue rotation range, 1 = full circle
    saturation_std: float = 1.0  # log2 std

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"AugmentConfig.{field.name} must be a finite number >= 0, got {value!r}")
        if self.xint_max > 0.5:
            raise ValueError(f"AugmentConfig.xint_max must be <= 0.5 (half the image), got {self.xint_max}")


def _matrix(rows: Sequence[Sequence[Tensor | float]], batch: int, device: torch.device) -> Tensor:
    """Rows of per-sample scalars (tensors [N] or Python numbers) -> [N, R, K] (default dtype)."""
    elements = [
        e.reshape(batch) if isinstance(e, Tensor) else torch.full([batch], float(e), device=device)
        for row in rows
        for e in row
    ]
    return torch.stack(elements, dim=-1).reshape(batch, len(rows), len(rows[0]))


def _translate2d(tx: Tensor | float, ty: Tensor | float, batch: int, device: torch.device) -> Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], batch, device)


def _scale2d(sx: Tensor | float, sy: Tensor | float, batch: int, device: torch.device) -> Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], batch, device)


def _rotate2d(theta: Tensor, batch: int, device: torch.device) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, torch.sin(-theta), 0], [s, c, 0], [0, 0, 1]], batch, device)


def _translate3d(t: Tensor, batch: int, device: torch.device) -> Tensor:
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], batch, device)


def _scale3d(s: Tensor, batch: int, device: torch.device) -> Tensor:
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], batch, device)


def _rotate3d(v: Tensor, theta: Tensor, batch: int, device: torch.device) -> Tensor:
    """Rotation by theta [N] about the unit axis v [4] (homogeneous, last entry 0)."""
    vx, vy, vz = v[0], v[1], v[2]
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix(
        [
            [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
            [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
            [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
            [0, 0, 0, 1],
        ],
        batch,
        device,
    )


class AugmentPipe(nn.Module):
    """ADA pipeline: images [N, C, H, W] (C = 1 or a multiple of 3) -> augmented, same shape.

    Buffer ``p`` is the overall probability (saved with the model, moved by AdaptiveProbability);
    ``Hz_geom`` the sym6 filter. Both names match the official module.
    """

    def __init__(self, config: AugmentConfig | None = None, p: float = 0.0) -> None:
        super().__init__()
        self.config = config or AugmentConfig()
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("Hz_geom", setup_filter(list(SYM6)))

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe expects images [N, C, H, W], got {list(images.shape)}")
        channels = images.shape[1]
        if channels != 1 and channels % 3 != 0:
            raise ValueError(f"AugmentPipe expects 1 or a multiple of 3 channels, got {channels}")
        if generator is not None and generator.device.type != images.device.type:
            raise ValueError(
                f"generator on {generator.device} but images on {images.device}; they must match"
            )
        draw = _Draws(images.shape[0], images.device, generator)
        geometry = self._sample_geometry(draw, images.shape[3], images.shape[2])
        out = _blit(images, geometry)
        # The general warp's batch (the samples it applies to) and padding depend on the draws: the
        # host needs them, as in the official pipeline.
        with expected_sync("ADA: samples and padding of the general warp"):
            resampled = geometry.resampled.nonzero().flatten()
            if resampled.numel() > 0:
                warped = self._warp(images[resampled], geometry.g_inv[resampled])
        if resampled.numel() > 0:
            out = out.index_copy(0, resampled, warped)
        color = self._sample_color(draw, channels)
        return out if color is None else _apply_color(out, color)

    def augment_pair(
        self, image: Tensor, image_raw: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Same transform for EG3D's two D inputs: image [N, 3, H, W], image_raw [N, 3, h, w].

        As in EG3D's loss, image_raw is resized to H x W and back even when nothing is applied, so
        at p = 0 image comes back unchanged and image_raw as that (slightly blurring) round trip.
        """
        if image.ndim != 4 or image_raw.ndim != 4 or image.shape[0] != image_raw.shape[0]:
            raise ValueError(
                f"augment_pair expects image [N, C, H, W] and image_raw [N, C, h, w] with equal N, "
                f"got {list(image.shape)} and {list(image_raw.shape)}"
            )
        raw_up = F.interpolate(image_raw, size=image.shape[2:], mode="bilinear", antialias=True)
        stacked = self(torch.cat([image, raw_up], dim=1), generator)
        channels = image.shape[1]
        raw = F.interpolate(stacked[:, channels:], size=image_raw.shape[2:], mode="bilinear", antialias=True)
        return stacked[:, :channels], raw

    def _sample_geometry(self, draw: _Draws, width: int, height: int) -> _Geometry:
        """Draw every geometric transform; G_inv composes them exactly as the official code."""
        cfg, p, n, dev = self.config, self.p, draw.batch, draw.device
        g_inv = torch.eye(3, device=dev).expand(n, 3, 3)
        zeros = torch.zeros(n, device=dev)
        flip, turns, shift = zeros, zeros, torch.zeros(n, 2, device=dev)
        if cfg.xflip > 0:
            flip = torch.floor(draw.rand([n]) * 2)
            flip = torch.where(draw.rand([n]) < cfg.xflip * p, flip, zeros)
            g_inv = g_inv @ _scale2d(1 / (1 - 2 * flip), 1, n, dev)
        if cfg.rotate90 > 0:
            turns = torch.floor(draw.rand([n]) * 4)
            turns = torch.where(draw.rand([n]) < cfg.rotate90 * p, turns, zeros)
            g_inv = g_inv @ _rotate2d(np.pi / 2 * turns, n, dev)
        if cfg.xint > 0:
            t = (draw.rand([n, 2]) * 2 - 1) * cfg.xint_max
            t = torch.where(draw.rand([n, 1]) < cfg.xint * p, t, torch.zeros_like(t))
            shift = torch.stack([torch.round(t[:, 0] * width), torch.round(t[:, 1] * height)], dim=1)
            g_inv = g_inv @ _translate2d(-shift[:, 0], -shift[:, 1], n, dev)

        steps = []  # general transforms, in the official order
        if cfg.scale > 0:
            s = torch.exp2(draw.randn([n]) * cfg.scale_std)
            s = torch.where(draw.rand([n]) < cfg.scale * p, s, torch.ones_like(s))
            steps.append(_scale2d(1 / s, 1 / s, n, dev))
        # Rotation is split into a pre- and a post-anisotropy rotation, each with p_rot, so that
        # P(any rotation) = rotate * p.
        p_rot = 1 - torch.sqrt((1 - cfg.rotate * p).clamp(0, 1))
        if cfg.rotate > 0:
            steps.append(_rotate2d(self._rotation_angle(draw, p_rot), n, dev))
        if cfg.aniso > 0:
            s = torch.exp2(draw.randn([n]) * cfg.aniso_std)
            s = torch.where(draw.rand([n]) < cfg.aniso * p, s, torch.ones_like(s))
            steps.append(_scale2d(1 / s, 1 / (1 / s), n, dev))  # official inverse form, bit-exact
        if cfg.rotate > 0:
            steps.append(_rotate2d(self._rotation_angle(draw, p_rot), n, dev))
        if cfg.xfrac > 0:
            t = draw.randn([n, 2]) * cfg.xfrac_std
            t = torch.where(draw.rand([n, 1]) < cfg.xfrac * p, t, torch.zeros_like(t))
            steps.append(_translate2d(-t[:, 0] * width, -t[:, 1] * height, n, dev))
        general = torch.eye(3, device=dev).expand(n, 3, 3)
        for step in steps:
            general, g_inv = general @ step, g_inv @ step
        resampled = (general != torch.eye(3, device=dev)).flatten(1).any(dim=1)
        if width != height:
            # A quarter turn cannot move the pixels of a non-square image in place: warp instead.
            resampled, turns = resampled | (turns != 0), zeros
        return _Geometry(flip.bool(), turns.long(), shift.long(), g_inv, resampled)

    def _rotation_angle(self, draw: _Draws, p_rot: Tensor) -> Tensor:
        theta = (draw.rand([draw.batch]) * 2 - 1) * np.pi * self.config.rotate_max
        return torch.where(draw.rand([draw.batch]) < p_rot, theta, torch.zeros_like(theta))

    def _warp(self, images: Tensor, g_inv: Tensor) -> Tensor:
        """Resample images [N, C, H, W] at G_inv @ pixel (reflect-padded, 2x oversampled)."""
        batch, channels, height, width = images.shape
        dev = images.device
        # Pad just enough (by reflection) that every transformed corner, plus the filter support,
        # lands inside the image.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = device_constant(((-cx, cx, cx, -cx), (-cy, -cy, cy, cy), (1, 1, 1, 1)), dev)
        corners = g_inv @ corners  # [N, 3, 4]
        filter_pad = self.Hz_geom.shape[0] // 4
        extent = corners[:, :2, :].permute(1, 0, 2).flatten(1)  # [2, N * 4]
        margin = torch.cat([-extent, extent]).max(dim=1).values  # [x0, y0, x1, y1]
        margin = margin + device_constant((filter_pad * 2 - cx, filter_pad * 2 - cy) * 2, dev)
        margin = margin.clamp(min=0)
        margin = margin.min(device_constant((width - 1, height - 1) * 2, dev, margin.dtype))
        mx0, my0, mx1, my1 = (int(m) for m in margin.ceil().tolist())

        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        g_inv = _translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, batch, dev) @ g_inv
        images = upsample2d(images, self.Hz_geom, up=2)
        g_inv = _scale2d(2, 2, batch, dev) @ g_inv @ _scale2d(1 / 2, 1 / 2, batch, dev)
        g_inv = _translate2d(-0.5, -0.5, batch, dev) @ g_inv @ _translate2d(0.5, 0.5, batch, dev)
        # affine_grid works in [-1, 1] coordinates of the output (shape) and input (images) grids.
        shape = [batch, channels, (height + filter_pad * 2) * 2, (width + filter_pad * 2) * 2]
        to_input = _scale2d(2 / images.shape[3], 2 / images.shape[2], batch, dev)
        from_output = _scale2d(1 / (2 / shape[3]), 1 / (2 / shape[2]), batch, dev)
        g_inv = to_input @ g_inv @ from_output
        grid = F.affine_grid(g_inv[:, :2, :].to(images.dtype), shape, align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return downsample2d(images, self.Hz_geom, down=2, padding=-filter_pad * 2, flip_filter=True)

    def _sample_color(self, draw: _Draws, channels: int) -> Tensor | None:
        """Colour transform C [N, 4, 4] acting on homogeneous RGB, or None if all are disabled."""
        cfg, p, n, dev = self.config, self.p, draw.batch, draw.device
        multipliers = [cfg.brightness, cfg.contrast, cfg.lumaflip]
        if channels > 1:
            multipliers += [cfg.hue, cfg.saturation]
        if not any(m > 0 for m in multipliers):
            return None
        eye = torch.eye(4, device=dev)
        color = eye.expand(n, 4, 4)
        if cfg.brightness > 0:
            b = draw.randn([n]) * cfg.brightness_std
            b = torch.where(draw.rand([n]) < cfg.brightness * p, b, torch.zeros_like(b))
            color = _translate3d(b, n, dev) @ color
        if cfg.contrast > 0:
            c = torch.exp2(draw.randn([n]) * cfg.contrast_std)
            c = torch.where(draw.rand([n]) < cfg.contrast * p, c, torch.ones_like(c))
            color = _scale3d(c, n, dev) @ color
        unit = np.asarray([1, 1, 1, 0]) / np.sqrt(3)
        luma = device_constant(tuple(unit), dev, torch.get_default_dtype())
        luma_outer = torch.outer(luma, luma)
        if cfg.lumaflip > 0:
            i = torch.floor(draw.rand([n, 1, 1]) * 2)
            i = torch.where(draw.rand([n, 1, 1]) < cfg.lumaflip * p, i, torch.zeros_like(i))
            color = (eye - 2 * luma_outer * i) @ color  # Householder reflection of the luma axis
        if cfg.hue > 0 and channels > 1:
            theta = (draw.rand([n]) * 2 - 1) * np.pi * cfg.hue_max
            theta = torch.where(draw.rand([n]) < cfg.hue * p, theta, torch.zeros_like(theta))
            color = _rotate3d(luma, theta, n, dev) @ color
        if cfg.saturation > 0 and channels > 1:
            s = torch.exp2(draw.randn([n, 1, 1]) * cfg.saturation_std)
            s = torch.where(draw.rand([n, 1, 1]) < cfg.saturation * p, s, torch.ones_like(s))
            color = (luma_outer + (eye - luma_outer) * s) @ color
        return color


class _Geometry(NamedTuple):
    """Sampled geometric transforms of a batch of N images."""

    flip: Tensor  # [N] bool, x-flip
    turns: Tensor  # [N] int, quarter turns (torch.rot90 direction)
    shift: Tensor  # [N, 2] int, content moves by (dx, dy) pixels
    g_inv: Tensor  # [N, 3, 3] all transforms composed: output pixel -> input pixel
    resampled: Tensor  # [N] bool, a general (non-blit) transform fired


def _blit(images: Tensor, geometry: _Geometry) -> Tensor:
    """x-flip, quarter turns and integer translation as exact pixel moves (in that order)."""
    images = torch.where(geometry.flip[:, None, None, None], images.flip(3), images)
    if images.shape[2] == images.shape[3]:  # non-square images take quarter turns in the warp
        for k in range(1, 4):
            turned = (geometry.turns == k)[:, None, None, None]
            images = torch.where(turned, torch.rot90(images, k, dims=(2, 3)), images)
    return _translate_reflect(images, geometry.shift)


def _translate_reflect(images: Tensor, shift: Tensor) -> Tensor:
    """Move each image's content by shift [N, 2] = (dx, dy) whole pixels, reflecting at borders.

    Equals reflect-padding then cropping (the official warp's result for a pure integer shift);
    valid for |shift| < size, which ``xint_max <= 0.5`` guarantees.
    """
    batch, _, height, width = images.shape
    rows = _reflect_index(torch.arange(height, device=images.device)[None] - shift[:, 1:], height)
    cols = _reflect_index(torch.arange(width, device=images.device)[None] - shift[:, :1], width)
    picked = images[
        torch.arange(batch, device=images.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]
    ]
    return picked.permute(0, 3, 1, 2)  # advanced indexing put the channel axis last


def _reflect_index(index: Tensor, size: int) -> Tensor:
    """Map indices in (-size, 2 size - 1) into [0, size) by reflection about the edge pixels."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


class _Draws:
    """Random numbers for one batch, from ``generator`` or the global RNG of ``device``."""

    def __init__(self, batch: int, device: torch.device, generator: torch.Generator | None) -> None:
        self.batch, self.device, self.generator = batch, device, generator

    def rand(self, shape: list[int]) -> Tensor:
        return torch.rand(shape, device=self.device, generator=self.generator)

    def randn(self, shape: list[int]) -> Tensor:
        return torch.randn(shape, device=self.device, generator=self.generator)


def _apply_color(images: Tensor, color: Tensor) -> Tensor:
    """images [N, C, H, W] (C = 1 or 3k) -> colour-transformed; each RGB triple gets the same C."""
    batch, channels, height, width = images.shape
    flat = images.reshape(batch, channels, height * width)
    color = color.to(images.dtype)
    if channels == 1:
        # Grayscale: the average of the three RGB rows acting on (v, v, v).
        row = color[:, :3, :].mean(dim=1, keepdim=True)
        out = flat * row[:, :, :3].sum(dim=2, keepdim=True) + row[:, :, 3:]
    else:
        groups = flat.reshape(batch, channels // 3, 3, height * width)
        out = color[:, None, :3, :3] @ groups + color[:, None, :3, 3:]
    return out.reshape(batch, channels, height, width)


def ada_adjustment(
    mean_sign: float | Tensor, target: float, batch_size: int, interval: int, speed_kimg: float
) -> float | Tensor:
    """Change of p after one ADA interval: sign(E[sign D(real)] - target) * batch * interval / kimg / 1000.

    A tensor ``mean_sign`` gives a tensor on its device (no host round trip).
    """
    step = batch_size * interval / (speed_kimg * 1000)
    if isinstance(mean_sign, Tensor):
        return torch.sign(mean_sign - target) * step
    return float(np.sign(mean_sign - target)) * step


class AdaptiveProbability:
    """ADA's controller for ``AugmentPipe.p``.

    Call ``observe(real_logits)`` for every discriminator pass on reals and ``step(pipe,
    batch_size)`` once per training step (``batch_size`` = global batch). Every ``interval``-th step
    p moves by ``ada_adjustment`` (p reaches +-1 in ``speed_kimg`` kimg) and is clamped at >= 0.
    Pass ``all_reduce`` (e.g. ``torch.distributed.all_reduce``) to pool the statistics of all ranks.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed_kimg: float = 500.0) -> None:
        if not 0 <= target <= 1:
            raise ValueError(f"ADA target must be in [0, 1], got {target}")
        if interval < 1:
            raise ValueError(f"ADA interval must be >= 1 steps, got {interval}")
        if speed_kimg <= 0:
            raise ValueError(f"ADA speed_kimg must be > 0, got {speed_kimg}")
        self.target, self.interval, self.speed_kimg = target, interval, speed_kimg
        self.steps = 0
        self.sign_sum = torch.zeros([], dtype=torch.float64)
        self.count = torch.zeros([], dtype=torch.float64)

    def observe(self, real_logits: Tensor) -> None:
        """Accumulate sign(D(real)) over all entries of real_logits [N, ...]."""
        logits = real_logits.detach()
        if self.sign_sum.device != logits.device:
            # Moved by arithmetic on a Python number: no host-to-device copy.
            zero = torch.zeros([], dtype=torch.float64, device=logits.device)
            self.sign_sum, self.count = zero + self.sign_sum.item(), zero + self.count.item()
        self.sign_sum = self.sign_sum + logits.sign().sum(dtype=torch.float64)
        self.count = self.count + logits.numel()

    def step(
        self, pipe: AugmentPipe, batch_size: int, all_reduce: Callable[[Tensor], object] | None = None
    ) -> bool:
        """Advance one training step; returns True on the steps that adjust p (every ``interval``-th;
        p stays where it is if no logits were observed). ``ada_adjustment`` is computed on p's device,
        without reading the statistics back to the host."""
        self.steps += 1
        if self.steps % self.interval != 0:
            return False
        stats = torch.stack([self.sign_sum, self.count]).to(pipe.p.device)
        if all_reduce is not None:
            all_reduce(stats)
        self.sign_sum = torch.zeros_like(self.sign_sum)
        self.count = torch.zeros_like(self.count)
        sign_sum, count = stats.unbind()
        mean_sign = sign_sum / count.clamp(min=1)
        adjust = ada_adjustment(mean_sign, self.target, batch_size, self.interval, self.speed_kimg)
        adjust = torch.where(count > 0, adjust, torch.zeros_like(adjust)).to(pipe.p.dtype)
        pipe.p.copy_((pipe.p + adjust).clamp(min=0))
        return True

    def state_dict(self) -> dict[str, float | int]:
        return {"steps": self.steps, "sign_sum": float(self.sign_sum), "count": float(self.count)}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.steps = int(state["steps"])
        self.sign_sum = torch.tensor(float(state["sign_sum"]), dtype=torch.float64)
        self.count = torch.tensor(float(state["count"]), dtype=torch.float64)
