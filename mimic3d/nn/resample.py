"""FIR resampling of image batches (StyleGAN2/EG3D ``upfirdn2d`` family) in plain PyTorch.

``upfirdn2d`` means: upsample by inserting zeros, pad (negative = crop), convolve with a FIR
filter, keep every ``down``-th pixel. The official code does exactly that with a slow reference
path off CUDA; here the same result comes from a few large ops instead: a depthwise transposed
convolution replaces "insert zeros + convolve" (no multiplications by the inserted zeros) and a
strided depthwise convolution replaces "convolve + drop pixels". On CPU a 2-D depthwise kernel
beat two separable 1-D passes for the 4x4 filters StyleGAN uses, so 2-D filters stay 2-D and
only filters stored 1-D (``setup_filter(..., separable=True)``) run as two passes.

Filters follow the official layout: ``[fh, fw]`` (2-D) or ``[taps]`` (separable), in the default
dtype (float32 unless a float64 test sets it), normalised to unit DC gain;
``setup_filter([1, 3, 3, 1])`` is the 4x4 outer product / 64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.runtime import kernel_paths

Scaling = int | Sequence[int]
Padding = int | Sequence[int]


def parse_scaling(scaling: Scaling, name: str = "scaling") -> tuple[int, int]:
    """``int`` or ``[x, y]`` -> ``(sx, sy)``, each an integer >= 1."""
    sx, sy = (scaling, scaling) if isinstance(scaling, int) else tuple(scaling)
    if not all(isinstance(s, int) and s >= 1 for s in (sx, sy)):
        raise ValueError(f"{name} must be an int >= 1 or a pair of them, got {scaling!r}")
    return sx, sy


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """``int``, ``[x, y]`` or ``[x0, x1, y0, y1]`` -> ``(x0, x1, y0, y1)``; negative values crop."""
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")
    return padding[0], padding[1], padding[2], padding[3]


def filter_size(f: Tensor | None) -> tuple[int, int]:
    """``(fw, fh)`` of a filter from ``setup_filter`` (``None`` = 1x1 identity)."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must have shape [taps] or [fh, fw], got {list(f.shape)}")
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(
    f: Tensor | Sequence | float | None,
    device: torch.device | str | None = None,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> Tensor:
    """Prepare a FIR filter for ``upfirdn2d``: ``[fh, fw]`` (default dtype) or separable ``[taps]``.

    A 1-D input becomes its outer product unless ``separable`` (default: separable only from 8
    taps up, as in the official code, so that ``[1, 3, 3, 1]`` gives the 4x4 buffer stored in
    EG3D checkpoints). ``normalize`` scales to unit sum; ``gain`` is the overall signal gain.
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.get_default_dtype(), device=device)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be a scalar, [taps] or [fh, fw], got shape {list(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("a 2-D filter cannot be made separable; pass the 1-D taps instead")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f * (gain ** (f.ndim / 2))


def _depthwise_pass(
    x: Tensor, kernel: Tensor, up: tuple[int, int], down: tuple[int, int], pad: tuple[int, int, int, int]
) -> Tensor:
    """One upfirdn pass with a correlation kernel [kh, kw] on x [N, C, H, W] (steps as in upfirdn2d)."""
    channels = int(x.shape[1])  # a constant, not a traced size: exporters need the filter's shape
    kh, kw = kernel.shape
    (ux, uy), (dx, dy) = up, down
    px0, px1, py0, py1 = pad
    weight = kernel[None, None].repeat(channels, 1, 1, 1)  # contiguous: mkldnn is slower on expanded weights
    if ux == 1 and uy == 1:
        if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
            return F.conv2d(x, weight, stride=(dy, dx), padding=(py0, px0), groups=channels)
        return F.conv2d(F.pad(x, [px0, px1, py0, py1]), weight, stride=(dy, dx), groups=channels)
    # Transposed convolution scatters each input pixel through the (convolution-oriented) kernel:
    # its full output starts kernel-1 samples before the zero-upsampled image, so cropping
    # kernel-1-pad0 in front and kernel-up-pad1 behind reproduces "insert zeros, pad, filter".
    crop = (kw - 1 - px0, kw - ux - px1, kh - 1 - py0, kh - uy - py1)
    shared_x = min(max(min(crop[0], crop[1]), 0), kw - 1)
    shared_y = min(max(min(crop[2], crop[3]), 0), kh - 1)
    x = F.conv_transpose2d(
        x, weight.flip([2, 3]), stride=(uy, ux), padding=(shared_y, shared_x), groups=channels
    )
    rest = [shared_x - crop[0], shared_x - crop[1], shared_y - crop[2], shared_y - crop[3]]
    if any(rest):
        x = F.pad(x, rest)
    if dx > 1 or dy > 1:
        x = x[:, :, ::dy, ::dx]
    return x


def upfirdn2d(
    x: Tensor,
    f: Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> Tensor:
    """Upsample (zero insertion), pad/crop, FIR-filter and downsample every channel.

    x [N, C, H, W] -> [N, C, (H*up + pad_y0 + pad_y1 - fh + 1) // down (rounded up), ...].
    ``padding`` is relative to the upsampled image; ``flip_filter=False`` is a true convolution
    (the official default), ``True`` a correlation. Same result as EG3D's ``upfirdn2d``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {list(x.shape)}")
    ux, uy = parse_scaling(up, "up")
    dx, dy = parse_scaling(down, "down")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    if x.shape[3] * ux + px0 + px1 < fw or x.shape[2] * uy + py0 + py1 < fh:
        raise ValueError(
            f"upfirdn2d: padded/upsampled image {list(x.shape[2:])}*{(uy, ux)} is smaller than the filter"
        )
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    settings = ((ux, uy), (dx, dy), (px0, px1, py0, py1), bool(flip_filter), float(gain))
    if torch.is_grad_enabled() and x.requires_grad:
        return _Upfirdn2d.apply(x, f, settings)
    return _upfirdn2d(x, f, *settings)


def _upfirdn2d(
    x: Tensor,
    f: Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> Tensor:
    """``upfirdn2d`` on checked arguments, as depthwise (transposed) convolutions."""
    f = f.to(device=x.device, dtype=x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, pad
    if f.ndim == 2:
        return _depthwise_pass(x, f, (ux, uy), (dx, dy), (px0, px1, py0, py1))
    x = _depthwise_pass(x, f[None, :], (ux, 1), (dx, 1), (px0, px1, 0, 0))
    return _depthwise_pass(x, f[:, None], (1, uy), (1, dy), (0, 0, py0, py1))


class _Upfirdn2d(torch.autograd.Function):
    """``upfirdn2d`` whose backward is another ``upfirdn2d`` (its adjoint), as the official CUDA op:
    nothing but shapes is kept for the backward pass (autograd would keep each padded copy), and the
    backward is itself differentiable (R1). The filter is a constant (no gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, f: Tensor, settings: tuple) -> Tensor:  # type: ignore[override]
        ctx.f, ctx.settings, ctx.in_shape = f, settings, x.shape
        return _upfirdn2d(x, f, *settings)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (ux, uy), (dx, dy), (px0, _, py0, _), flip_filter, gain = ctx.settings
        fw, fh = filter_size(ctx.f)
        ih, iw = ctx.in_shape[2:]
        oh, ow = grad.shape[2:]
        # The official op's adjoint padding: the transposed pipeline maps the output grid back onto
        # the input grid exactly.
        pad = (
            fw - px0 - 1,
            iw * ux - ow * dx + px0 - ux + 1,
            fh - py0 - 1,
            ih * uy - oh * dy + py0 - uy + 1,
        )
        settings = ((dx, dy), (ux, uy), pad, not flip_filter, gain)
        if torch.is_grad_enabled():
            return _Upfirdn2d.apply(grad, ctx.f, settings), None, None
        return _upfirdn2d(grad, ctx.f, *settings), None, None


def filter2d(
    x: Tensor, f: Tensor | None, padding: Padding = 0, flip_filter: bool = False, gain: float = 1.0
) -> Tensor:
    """FIR-filter x [N, C, H, W] keeping its size (zero outside); ``padding`` adds to that."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain)


def upsample2d(
    x: Tensor,
    f: Tensor | None,
    up: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> Tensor:
    """Upsample x [N, C, H, W] -> [N, C, H*up, W*up]; the filter gets gain up^2 to keep the DC level."""
    ux, uy = parse_scaling(up, "up")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [
        px0 + (fw + ux - 1) // 2,
        px1 + (fw - ux) // 2,
        py0 + (fh + uy - 1) // 2,
        py1 + (fh - uy) // 2,
    ]
    return upfirdn2d(x, f, up=(ux, uy), padding=pad, flip_filter=flip_filter, gain=gain * ux * uy)


def downsample2d(
    x: Tensor,
    f: Tensor | None,
    down: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> Tensor:
    """Low-pass and downsample x [N, C, H, W] -> [N, C, H/down, W/down]."""
    dx, dy = parse_scaling(down, "down")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [
        px0 + (fw - dx + 1) // 2,
        px1 + (fw - dx) // 2,
        py0 + (fh - dy + 1) // 2,
        py1 + (fh - dy) // 2,
    ]
    return upfirdn2d(x, f, down=(dx, dy), padding=pad, flip_filter=flip_filter, gain=gain)


def _conv(
    x: Tensor,
    w: Tensor,
    stride: int = 1,
    padding: Sequence[int] = (0, 0),
    groups: int = 1,
    flip_weight: bool = True,
) -> Tensor:
    """conv2d; ``flip_weight=False`` turns torch's correlation into a convolution.

    Grouped 1x1 convolutions (ToRGB at inference) run as one batched matmul: torch's CPU conv
    falls back to a slow kernel for them.
    """
    kh, kw = w.shape[2:]
    if not flip_weight and (kh > 1 or kw > 1):
        w = w.flip([2, 3])
    if groups > 1 and kh == 1 and kw == 1 and stride == 1 and tuple(padding) == (0, 0):
        n, _, h, width = x.shape
        weight = w.reshape(groups, -1, w.shape[1])  # [G, O/G, I/G]
        y = torch.matmul(weight, x.reshape(n, groups, -1, h * width))  # [N, G, O/G, H*W]
        return y.reshape(n, -1, h, width)
    return F.conv2d(x, w, stride=stride, padding=tuple(padding), groups=groups)


def _transposed_conv(x: Tensor, kernel: Tensor, stride: int, groups: int) -> Tensor:
    """Full strided transposed convolution, y[m] = sum_i x[i] kernel[m - stride*i], per axis.

    x [N, I, H, W], kernel [O, I/groups, kh, kw] (convolution orientation, out-channels first)
    -> [N, O, (H-1)*stride + kh, (W-1)*stride + kw]. Computed polyphase: output pixels with the
    same phase (m mod stride) see only every stride-th tap, so each phase is an ordinary
    convolution of x with that sub-kernel. On CPU this beats conv_transpose2d by up to ~1.8x for
    the StyleGAN layer sizes (same multiply count, faster kernels); elsewhere (``kernel_paths``)
    ``F.conv_transpose2d`` runs, as in the official code.
    """
    if torch.jit.is_tracing() or not kernel_paths(x.device).polyphase_transposed_conv:
        # Exporters (TorchScript, ONNX) need static shapes, which the phase-wise writes below lose;
        # off CPU, F.conv_transpose2d runs as in the official code.
        return transposed_conv_direct(x, kernel, stride, groups)
    n, _, height, width = x.shape
    out_channels, _, kh, kw = kernel.shape
    out_shape = [n, out_channels, (height - 1) * stride + kh, (width - 1) * stride + kw]
    covered = stride <= kh and stride <= kw
    y = x.new_empty(out_shape) if covered else x.new_zeros(out_shape)
    for ry in range(min(stride, kh)):
        for rx in range(min(stride, kw)):
            # Taps r, r+stride, ... reversed: conv2d correlates, the transposed conv convolves.
            sub = kernel[:, :, ry::stride, rx::stride].flip([2, 3])
            ty, tx = sub.shape[2:]
            y[:, :, ry::stride, rx::stride] = F.conv2d(x, sub, padding=(ty - 1, tx - 1), groups=groups)
    return y


def transposed_conv_direct(x: Tensor, kernel: Tensor, stride: int, groups: int) -> Tensor:
    """``_transposed_conv`` as one ``conv_transpose2d`` (its weight layout: [I, O/groups, kh, kw])."""
    out_channels, in_per_group, kh, kw = kernel.shape
    weight = kernel.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    weight = weight.reshape(groups * in_per_group, -1, kh, kw)
    return F.conv_transpose2d(x, weight, stride=stride, groups=groups)


def conv2d_resample(
    x: Tensor,
    w: Tensor,
    f: Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> Tensor:
    """2-D convolution with optional FIR up/downsampling, padding applied once up front.

    x [N, I, H, W], w [O, I/groups, kh, kw] -> [N, O, H*up/down, W*up/down] (for "same" padding).
    ``padding`` is relative to the upsampled image. Mirrors EG3D's ``conv2d_resample``: upsampling
    runs as a strided transposed convolution (computed polyphase) followed by the filter,
    downsampling as the filter followed by a strided convolution, and 1x1 kernels resample on the
    cheaper side of the conv.
    ``flip_weight=True`` correlates with w (torch's conv2d), ``False`` convolves.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(
            f"conv2d_resample expects x [N, C, H, W] and w [O, I, kh, kw], got "
            f"{list(x.shape)} and {list(w.shape)}"
        )
    if w.dtype != x.dtype:
        raise ValueError(f"conv2d_resample: weight dtype {w.dtype} differs from input dtype {x.dtype}")
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1 and groups >= 1):
        raise ValueError(
            f"conv2d_resample: up, down and groups must be ints >= 1, got {up}, {down}, {groups}"
        )
    kh, kw = w.shape[2:]
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        kernel = w.flip([2, 3]) if flip_weight else w
        x = _transposed_conv(x, kernel, stride=up, groups=groups)
        # The full transposed output starts kernel-1 samples before the upsampled image.
        pad = [px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)]
        x = upfirdn2d(x, f, padding=pad, gain=up**2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv(x, w, groups=groups, flip_weight=flip_weight)
