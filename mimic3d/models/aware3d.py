"""Mimic3D's 3D-aware tri-plane stream: its layers, blocks and the synthesis of the coarse and
residual planes (the convolution they share: ``mimic3d.models.triplane_conv``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.models.triplane_conv import (
    conv_layout,
    modulated_triplane_conv,
)
from mimic3d.nn.layers import ACTIVATIONS, FullyConnectedLayer
from mimic3d.nn.modulated import NOISE_MODES
from mimic3d.nn.resample import setup_filter
from mimic3d.nn.synthesis import SynthesisNetwork


class TriplaneSynthesisLayer(nn.Module):
    """Modulated 3x3 conv shared by the three planes, one style per plane (Mimic3D's rolled-out layer).

    With ``aware=True`` the conv reads the re-organised planes (``reorganize_triplane``), so its
    weight has 3x the input channels. Shapes: x [N, 3 C_in, R/up, R/up] (planes' channels stacked),
    w [N, w_dim] -> [N, 3 C_out, R, R]. Parameters as the official layer: ``affine`` maps w to the
    three planes' styles [N, 3 * C_in * (3 if aware else 1)], ``weight`` [C_out, C_in * (3|1), k, k].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        aware: bool,
        up: int = 1,
        kernel_size: int = 3,
        conv_clamp: float | None = None,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.aware = aware
        self.conv_in_channels = in_channels * (3 if aware else 1)
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.padding = kernel_size // 2
        self.conv_clamp = conv_clamp
        self.act_gain = ACTIVATIONS["lrelu"].default_gain
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, 3 * self.conv_in_channels, bias_init=1)
        self.weight = nn.Parameter(
            torch.randn([out_channels, self.conv_in_channels, kernel_size, kernel_size])
        )
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode: expected one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w).view(w.shape[0], 3, self.conv_in_channels)
        # lrelu(y) * gain == lrelu(y * gain): the gain rides on the weights, noise and bias.
        gain = self.act_gain
        x = modulated_triplane_conv(
            x,
            self.weight,
            styles,
            self.aware,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            gain=gain,
            bias=self.bias * gain,
        )
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 3, 1, self.resolution, self.resolution], device=x.device)
            x.view(x.shape[0], 3, -1, *x.shape[-2:]).add_(noise * (self.noise_strength * gain))
        elif noise_mode == "const":
            x.add_(self.noise_const * (self.noise_strength * gain))
        x = F.leaky_relu_(x, 0.2)
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class TriplaneToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation, shared weights and per-plane styles.

    Shapes: x [N, 3 C_in, R, R], w [N, w_dim] -> [N, 3 C_out, R, R]. As in the official code the
    style gain is 1/sqrt(C_in) even when re-organisation triples the conv's input channels.
    """

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, aware: bool, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.aware = aware
        self.conv_in_channels = in_channels * (3 if aware else 1)
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, 3 * self.conv_in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, self.conv_in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = (self.affine(w) * self.weight_gain).view(w.shape[0], 3, self.conv_in_channels)
        x = modulated_triplane_conv(x, self.weight, styles, self.aware, demodulate=False, bias=self.bias)
        return x.clamp_(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class TriplaneSynthesisBlock(nn.Module):
    """conv0 (2x up unless ``up=1``) -> conv1 -> ToRGB on stacked tri-planes, one w for all three.

    Shapes: x [N, 3C, R/up, R/up], w [N, w_dim] -> ToRGB output [N, 3C, R, R] (the block's
    features are not passed on: the next 3D block starts from this output).
    """

    def __init__(
        self,
        channels: int,
        w_dim: int,
        resolution: int,
        up: int,
        aware: bool,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        # Unused by the computation; the official block registers it, so state dicts carry it.
        self.register_buffer("resample_filter", setup_filter((1, 3, 3, 1)))
        layer = dict(w_dim=w_dim, resolution=resolution, aware=aware, conv_clamp=conv_clamp)
        self.conv0 = TriplaneSynthesisLayer(channels, channels, up=up, **layer)
        self.conv1 = TriplaneSynthesisLayer(channels, channels, **layer)
        self.torgb = TriplaneToRGBLayer(channels, channels, w_dim=w_dim, aware=aware, conv_clamp=conv_clamp)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        x = self.conv0(x, w, noise_mode=noise_mode)
        x = self.conv1(x, w, noise_mode=noise_mode)
        return self.torgb(x, w)


class Aware3DBlock(nn.Module):
    """The 3D-aware block attached to backbone block b{R} (module ``b3d{R}`` of the synthesis network).

    ``block`` maps (main ToRGB image at R + previous 3D output) to the next level: R -> 2R, or R -> R
    at the tri-plane resolution, where its output is the coarse tri-plane P^c. The last block also
    holds the 3D super-resolution S^3D when ``sr3d``: ``block2`` (R -> 2R) and ``block3`` (2R -> 2R),
    plain per-plane modulated blocks whose ToRGB output is the residual tri-plane P^r.
    """

    def __init__(
        self,
        channels: int,
        w_dim: int,
        resolution: int,
        is_last: bool,
        sr3d: bool,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        up = 1 if is_last else 2
        self.block = TriplaneSynthesisBlock(
            channels, w_dim, resolution * up, up=up, aware=True, conv_clamp=conv_clamp
        )
        if sr3d:
            if not is_last:
                raise ValueError("sr3d: the 3D super-resolution belongs to the last 3D-aware block")
            self.block2 = TriplaneSynthesisBlock(
                channels, w_dim, resolution * 2, up=2, aware=False, conv_clamp=conv_clamp
            )
            self.block3 = TriplaneSynthesisBlock(
                channels, w_dim, resolution * 2, up=1, aware=False, conv_clamp=conv_clamp
            )

    @property
    def has_sr3d(self) -> bool:
        return hasattr(self, "block2")

    def forward(self, img: Tensor, previous: Tensor | None, w: Tensor, noise_mode: str = "random") -> Tensor:
        """img [N, 3C, R, R] (main ToRGB), previous [N, 3C, R, R] or None, w [N, w_dim] -> [N, 3C, R', R']."""
        if previous is None:
            return self.block(conv_layout(img), w, noise_mode=noise_mode)
        if torch.is_grad_enabled() and (img.requires_grad or previous.requires_grad):
            return self.block(conv_layout(img) + previous, w, noise_mode=noise_mode)
        # Written pixel-major in one pass (the main image itself is channel-major).
        return self.block(torch.add(img, previous, out=torch.empty_like(previous)), w, noise_mode=noise_mode)

    def residual(self, coarse: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        """S^3D: coarse [N, 3C, R, R] -> residual [N, 3C, 2R, 2R]."""
        if not self.has_sr3d:
            raise ValueError("residual: this model has no 3D super-resolution (sr3d=False)")
        x = self.block2(coarse, w, noise_mode=noise_mode)
        return self.block3(x, w, noise_mode=noise_mode)


def add_aware3d_blocks(
    synthesis: SynthesisNetwork, min_resolution: int, sr3d: bool, conv_clamp: float | None = None
) -> None:
    """Register ``b3d{R}`` on ``synthesis`` for every block resolution R >= ``min_resolution``."""
    if synthesis.img_channels % 3:
        raise ValueError(
            f"img_channels: the 3D-aware stream needs 3 planes, got {synthesis.img_channels} channels"
        )
    if min_resolution not in synthesis.block_resolutions:
        raise ValueError(
            f"aware3d_min_resolution: expected one of {synthesis.block_resolutions}, got {min_resolution}"
        )
    for res in synthesis.block_resolutions:
        if res >= min_resolution:
            is_last = res == synthesis.img_resolution
            block = Aware3DBlock(
                synthesis.img_channels // 3,
                synthesis.w_dim,
                res,
                is_last=is_last,
                sr3d=sr3d and is_last,
                conv_clamp=conv_clamp,
            )
            synthesis.add_module(f"b3d{res}", block)


def synthesize_coarse_planes(
    synthesis: SynthesisNetwork, ws: Tensor, noise_mode: str = "random", fused_modconv: bool = True
) -> Tensor:
    """Main stream plus 3D-aware stream: ws [N, num_ws, w_dim] -> P^c [N, 3, C, R, R].

    Each 3D block reads its main block's ToRGB w (the last w of that block's slice).
    ``fused_modconv`` applies to the main stream; the 3D blocks always fold the styles into
    per-sample weights (``modulated_triplane_conv``).
    """
    if ws.ndim != 3 or tuple(ws.shape[1:]) != (synthesis.num_ws, synthesis.w_dim):
        raise ValueError(f"ws: expected [N, {synthesis.num_ws}, {synthesis.w_dim}], got {list(ws.shape)}")
    ws = ws.to(torch.get_default_dtype())
    x = img = planes = None
    w_idx = 0
    for res in synthesis.block_resolutions:
        block = getattr(synthesis, f"b{res}")
        block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
        x, img = block(x, img, block_ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        w_idx += block.num_conv
        block3d = getattr(synthesis, f"b3d{res}", None)
        if block3d is not None:
            planes = block3d(img, planes, block_ws[:, -1], noise_mode=noise_mode)
    if planes is None:
        raise ValueError("synthesis: no 3D-aware blocks registered (add_aware3d_blocks)")
    return planes.view(ws.shape[0], 3, -1, *planes.shape[-2:])


def synthesize_residual_planes(
    synthesis: SynthesisNetwork, coarse: Tensor, ws: Tensor, noise_mode: str = "random"
) -> Tensor:
    """S^3D: P^c [N, 3, C, R, R] and ws [N, num_ws, w_dim] -> P^r [N, 3, C, 2R, 2R] (driven by the last w)."""
    block3d = getattr(synthesis, f"b3d{synthesis.img_resolution}")
    n = coarse.shape[0]
    w_last = ws[:, -1].to(torch.get_default_dtype())
    residual = block3d.residual(coarse.flatten(1, 2), w_last, noise_mode=noise_mode)
    return residual.view(n, 3, -1, *residual.shape[-2:])
