"""Mimic3D's 3D-aware tri-plane convolution: re-organisation of the planes and the modulated
convolution that reads them, the kernel of ``mimic3d.models.aware3d``'s layers.

Plane layout (Mimic3D's (x,y), (y,z), (z,x) projection; every plane square, R x R):
``P_xy[C, H=y, W=x]``, ``P_yz[C, H=z, W=y]``, ``P_zx[C, H=x, W=z]``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.nn.resample import conv2d_resample
from mimic3d.runtime import kernel_paths


def reorganize_triplane(planes: Tensor) -> Tensor:
    """Give every plane the other two planes' features, pooled along the axis it lacks.

    For the plane spanned by axes (a, b), the third axis c is averaged out of each other plane and
    the resulting line of features is broadcast across the plane. Channel blocks are always ordered by
    source plane (xy, yz, zx), the plane's own features sitting in its own slot:

    - xy: [P_xy | mean_z P_yz (a function of y) | mean_z P_zx (a function of x)]
    - yz: [mean_x P_xy (of y) | P_yz | mean_x P_zx (of z)]
    - zx: [mean_y P_xy (of x) | mean_y P_yz (of z) | P_zx]

    Args:
        planes: [N, 3, C, R, R] tri-planes in the layout above.

    Returns:
        [N, 3, 3C, R, R].
    """
    if planes.ndim != 5 or planes.shape[1] != 3 or planes.shape[-1] != planes.shape[-2]:
        raise ValueError(f"planes: expected [N, 3, C, R, R] with square planes, got {list(planes.shape)}")
    n, _, c, r, _ = planes.shape
    p_xy, p_yz, p_zx = planes.unbind(1)
    xy_along_x = p_xy.mean(dim=-1)  # mean over x -> [N, C, y]
    xy_along_y = p_xy.mean(dim=-2)  # mean over y -> [N, C, x]
    yz_along_y = p_yz.mean(dim=-1)  # mean over y -> [N, C, z]
    yz_along_z = p_yz.mean(dim=-2)  # mean over z -> [N, C, y]
    zx_along_z = p_zx.mean(dim=-1)  # mean over z -> [N, C, x]
    zx_along_x = p_zx.mean(dim=-2)  # mean over x -> [N, C, z]

    out = planes.new_empty(n, 3, 3, c, r, r)
    out[:, 0, 0] = p_xy
    out[:, 0, 1] = yz_along_z.unsqueeze(-1)  # indexed by y = H
    out[:, 0, 2] = zx_along_z.unsqueeze(-2)  # indexed by x = W
    out[:, 1, 0] = xy_along_x.unsqueeze(-2)  # indexed by y = W
    out[:, 1, 1] = p_yz
    out[:, 1, 2] = zx_along_x.unsqueeze(-1)  # indexed by z = H
    out[:, 2, 0] = xy_along_y.unsqueeze(-1)  # indexed by x = H
    out[:, 2, 1] = yz_along_y.unsqueeze(-2)  # indexed by z = W
    out[:, 2, 2] = p_zx
    return out.view(n, 3, 3 * c, r, r)


def pixels_last(x: Tensor) -> Tensor:
    """The same [N, C, H, W] values stored pixel-major (memory order H, W, N, C).

    Then ``x.view(1, N * C, H, W)`` is a channels-last image: the layout in which the grouped
    per-sample convolutions of the tri-plane stream run fastest on CPU.
    """
    if _is_pixels_last(x):
        return x
    return x.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)


def conv_layout(x: Tensor) -> Tensor:
    """x [N, C, H, W] in the layout the tri-plane convolutions use on its device (``kernel_paths``):
    pixel-major on CPU, plain NCHW (as the official code) elsewhere."""
    return pixels_last(x) if kernel_paths(x.device).pixel_major_triplanes else x.contiguous()


def _is_pixels_last(x: Tensor) -> bool:
    n, c, h, w = x.shape
    return x.stride() == (c, 1, w * n * c, n * c)


# Width of the narrow image a line term is convolved on: wide enough that its middle column sees
# no padding, so the middle stands for every interior column of the full-size output.
def _narrow_size(kernel_size: int, up: int) -> int:
    if up > 1:
        return 8
    return 2 if kernel_size == 1 else 4


def modulated_triplane_conv(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    aware: bool,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    demodulate: bool = True,
    gain: float = 1.0,
    bias: Tensor | None = None,
) -> Tensor:
    """Modulated conv of the three planes with shared weights and per-plane styles.

    x [N, 3C, H, W] (the three planes' channels stacked, xy/yz/zx), weight [O, K, k, k],
    styles [N, 3, K], bias [O] -> ``gain`` * conv + bias [N, 3O, H', W'], pixel-major (see
    ``pixels_last``); K = 3C with ``aware`` (the conv reads ``reorganize_triplane(x)``), else C.

    Equal to modulating and convolving the re-organised planes, but the re-organised tensor is never
    built: in each plane's conv input only its own C channels vary in both directions; the other
    2C are lines broadcast across the plane (another plane averaged along the missing axis). A
    convolution of a line broadcast along W is constant along W except near the borders, so it is
    computed on a narrow image and spread out; only the own channels need a full-size conv
    (a third of the official FLOPs, and no 3x larger intermediate). The layout is ``conv_layout``'s.
    """
    n, in_channels, h, w = x.shape
    c = in_channels // 3
    out_channels, _, kh, kw = weight.shape
    x = conv_layout(x)
    wgt = weight[None, None] * styles[:, :, None, :, None, None]  # [N, 3, O, K, k, k]
    if demodulate:
        wgt = wgt * (wgt.square().sum(dim=[3, 4, 5], keepdim=True) + 1e-8).rsqrt()
    if gain != 1:
        wgt = wgt * gain
    conv = dict(up=up, padding=padding, resample_filter=resample_filter)
    if not aware:
        return _grouped_conv(x, wgt.reshape(-1, c, kh, kw), bias=bias, **conv)

    # Slot s of plane p's input holds plane s; the line from plane p+1 varies along p's H (rows),
    # the one from plane p-1 along p's W (columns).
    wgt = wgt.view(n, 3, out_channels, 3, c, kh, kw)
    own = torch.stack([wgt[:, p, :, p] for p in range(3)], 1).reshape(-1, c, kh, kw)
    rows = torch.stack([wgt[:, p, :, (p + 1) % 3] for p in range(3)], 1).reshape(-1, c, kh, kw)
    cols = torch.stack([wgt[:, p, :, (p - 1) % 3] for p in range(3)], 1).reshape(-1, c, kh, kw)
    pixels = x.permute(2, 3, 0, 1)  # [H, W, N, 3C]; pixel-major: contiguous, both means reduce outer axes
    row_lines = pixels.mean(0).reshape(w, n, 3, c).permute(1, 2, 3, 0).roll(-1, dims=1)  # [N, 3, C, W]
    col_lines = pixels.mean(1).reshape(h, n, 3, c).permute(1, 2, 3, 0).roll(1, dims=1)  # [N, 3, C, H]
    narrow = min(_narrow_size(kw, up), w)
    row_image = row_lines.unsqueeze(-1).expand(n, 3, c, h, narrow).reshape(n, -1, h, narrow)
    col_image = col_lines.unsqueeze(-2).expand(n, 3, c, narrow, w).reshape(n, -1, narrow, w)

    out = _grouped_conv(x, own, bias=bias, **conv)
    _add_line_term(out, _grouped_conv(row_image, rows, **conv), -1)
    _add_line_term(out, _grouped_conv(col_image, cols, **conv), -2)
    return out


def _grouped_conv(
    x: Tensor,
    weight: Tensor,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """Per-(sample, plane) convolution: x [N, G*C, H, W], weight [N*G*O, C, k, k], optional bias [O]
    shared by all groups -> [N, G*O, H', W'] pixel-major.

    Runs on the channels-last image [1, N*G*C, H, W] (a view of pixel-major x), with the bias added
    inside the convolution; 1x1 kernels run as one matrix product per sample, written straight into
    the output. ``up=2`` is EG3D's upsampling conv (3x3 kernels, padding 1, 4x4 filter). Off the CPU
    (``kernel_paths``) the official formulation runs instead: ``_grouped_conv_nchw``.
    """
    n, _, h, w = x.shape
    c = weight.shape[1]
    groups = x.shape[1] * n // c
    if not kernel_paths(x.device).pixel_major_triplanes:
        return _grouped_conv_nchw(x, weight, groups, up, padding, resample_filter, bias)
    x = pixels_last(x)
    out_channels = weight.shape[0] // groups
    kernel_size = weight.shape[-1]
    if kernel_size == 1 and up == 1:
        pixels = x.permute(2, 3, 0, 1).reshape(h * w, groups, c)
        weight_t = weight.view(groups, out_channels, c).transpose(1, 2)
        grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
        if grads or torch.is_autocast_enabled(x.device.type):
            # Autograd- and autocast-friendly (``out=`` products are neither).
            out = torch.matmul(pixels.transpose(0, 1), weight_t).transpose(0, 1)
            out = out if bias is None else out + bias
            return out.reshape(h, w, n, -1).permute(2, 3, 0, 1)
        # One product per sample with the groups' weights on a block diagonal: 3x the multiply-adds
        # of per-group products, but contiguous rows in and out, which is what the CPU GEMM needs.
        per_sample = groups // n
        out = x.new_empty(h, w, n, per_sample * out_channels)
        out_pixels = out.view(h * w, n, -1)
        in_pixels = x.permute(2, 3, 0, 1).reshape(h * w, n, -1)
        bias_row = None if bias is None else bias.repeat(per_sample)
        for i in range(n):
            block = torch.block_diag(*weight_t[i * per_sample : (i + 1) * per_sample])
            if bias_row is None:
                torch.mm(in_pixels[:, i], block, out=out_pixels[:, i])
            else:
                torch.addmm(bias_row, in_pixels[:, i], block, out=out_pixels[:, i])
        return out.permute(2, 3, 0, 1)
    # Canonical channels-last strides (a plain view keeps batch stride N*C, and mkldnn then copies).
    image = x.permute(2, 3, 0, 1).reshape(1, h, w, -1).permute(0, 3, 1, 2)
    if up == 1:
        out = F.conv2d(
            image, weight, None if bias is None else bias.repeat(groups), padding=padding, groups=groups
        )
        return out.view(n, -1, *out.shape[-2:])
    if up != 2 or kernel_size != 3 or padding != 1 or resample_filter is None:
        raise ValueError("up: only EG3D's 2x upsampling of 3x3 convs (padding 1, with a filter) is supported")
    kernels = _upsampling_phase_kernels(weight.view(groups, out_channels, c, 3, 3), resample_filter)
    phases_bias = None if bias is None else bias.repeat(groups * 4)
    phases = F.conv2d(image, kernels, phases_bias, padding=1, groups=groups)  # [1, G*4*O, H, W]
    # Interleave the four output phases: memory [H, W, G, 2, 2, O] -> [H, 2, W, 2, G, O].
    out = phases.permute(0, 2, 3, 1).reshape(h, w, groups, 2, 2, out_channels).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(2 * h, 2 * w, n, -1).permute(2, 3, 0, 1)


def _grouped_conv_nchw(
    x: Tensor,
    weight: Tensor,
    groups: int,
    up: int,
    padding: int,
    resample_filter: Tensor | None,
    bias: Tensor | None,
) -> Tensor:
    """``_grouped_conv`` as the official code computes it: one grouped convolution of the NCHW image
    [1, N*G*C, H, W] (EG3D's fused modulated conv), 2x upsampling as transposed conv + FIR filter."""
    n = x.shape[0]
    image = x.contiguous().view(1, -1, *x.shape[-2:])
    if up == 1:
        bias_row = None if bias is None else bias.repeat(groups)
        out = F.conv2d(image, weight, bias_row, padding=padding, groups=groups)
    else:
        weight = weight.to(image.dtype)  # conv2d_resample wants equal dtypes (autocast casts both)
        out = conv2d_resample(
            image, weight, f=resample_filter, up=up, padding=padding, groups=groups, flip_weight=False
        )
        if bias is not None:
            out = out + bias.repeat(groups).to(out.dtype).view(1, -1, 1, 1)
    return out.view(n, -1, *out.shape[-2:])


def _upsampling_phase_kernels(weight: Tensor, resample_filter: Tensor) -> Tensor:
    """EG3D's 2x upsampling conv (3x3 transposed conv, then the 4x4 FIR with gain 4) as four 3x3 convs.

    Output pixel (2a + ry, 2b + rx) only sees inputs a-1..a+1, b-1..b+1, through a kernel that
    combines the conv and the filter taps of that phase. weight [G, O, C, 3, 3] (per group) ->
    [G * 4 * O, C, 3, 3], ordered (group, ry, rx, output channel). Four times the transposed conv's
    multiply-adds, but one dense conv instead of a strided scatter and a depthwise filter pass.
    """
    if resample_filter.shape != (4, 4):
        raise ValueError(f"resample_filter: expected a 4x4 filter, got {list(resample_filter.shape)}")
    taps = resample_filter.flip([0, 1]).to(weight) * 4  # upfirdn2d convolves; the gain is up**2
    select = _phase_selection(weight.device, weight.dtype)
    combined = torch.einsum("aeij,bfkl,ik->abefjl", select, select, taps)
    kernels = torch.einsum("abefjl,gocjl->gabocef", combined, weight)
    return kernels.reshape(-1, weight.shape[2], 3, 3)


@functools.lru_cache(maxsize=16)
def _phase_selection(device: torch.device, dtype: torch.dtype) -> Tensor:
    """select[r, e, j, k] [2, 3, 4, 3]: filter tap j and conv tap k land on input offset e - 1 of output
    phase r. Built once per device (building it on the CPU per layer would copy it every call)."""
    r, e, j, k = torch.meshgrid(*(torch.arange(n, device=device) for n in (2, 3, 4, 3)), indexing="ij")
    return (r + j - 1 - k == 2 * (e - 1)).to(dtype)


def _add_line_term(out: Tensor, narrow: Tensor, dim: int) -> None:
    """Add in place a term computed on a narrow image whose middle stands for the interior along ``dim``."""
    size, narrow_size = out.shape[dim], narrow.shape[dim]
    if narrow_size == size:
        out.add_(narrow)
        return
    half = narrow_size // 2
    middle = narrow.narrow(dim, half - 1, 1)
    out.add_(middle)
    out.narrow(dim, 0, half).add_(narrow.narrow(dim, 0, half) - middle)
    out.narrow(dim, size - half, half).add_(narrow.narrow(dim, half, half) - middle)
