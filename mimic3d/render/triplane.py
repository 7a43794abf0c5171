"""Tri-plane projection and bilinear feature lookup.

A tri-plane is a tensor [N, 3, C, S, S]; a point is looked up on each plane by bilinear interpolation
with exactly the semantics of ``F.grid_sample(..., padding_mode="zeros")`` (grid x indexes the plane's
width), with ``align_corners=False`` (EG3D, Mimic3D) or ``True`` (EpiGRAF). Coordinates are first
scaled by ``2 / box_warp`` so that the cube [-box_warp/2, box_warp/2]^3 maps onto the planes.

A convention names the plane frame and the two frame axes of each plane. The frame is the world
itself for "eg3d" and "xyz"; EpiGRAF's field lives in a world whose subject faces +x (ours faces +z),
so its frame axes are (z, y, -x) of our world (a rotation about +y; see ``mimic3d.camera.from_angles``).

Speed: instead of ``grid_sample`` (channels-first, per-channel gathers, slow backward on CPU) the planes
are laid out once per render as a channels-last row table with a zero border, every point/plane gets
four flat row indices and bilinear weights, and one fused weighted gather (``F.embedding_bag``) returns
the plane-averaged feature directly, so the MLP sees one [P, C] matrix. The backward pass is a chunked
``index_add_`` scatter, several times faster than both ``grid_sample``'s and ``embedding_bag``'s own;
its chunk size depends on the device (``mimic3d.runtime.kernel_paths``: cache-sized on CPU, a few
large kernels on GPUs).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from mimic3d.runtime import device_constant, full_precision, kernel_paths

# (width axis, height axis) of each plane, as indices into the plane frame (see PLANE_FRAMES).
PLANE_AXES: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    # Official EG3D projects onto (x,y), (x,z), (z,x); a known bug kept so that its weights work.
    "eg3d": ((0, 1), (0, 2), (2, 0)),
    # Mimic3D's corrected projection (x,y), (y,z), (z,x).
    "xyz": ((0, 1), (1, 2), (2, 0)),
    # EpiGRAF's (x,y), (x,z), (y,z) of its own frame.
    "epigraf": ((0, 1), (0, 2), (1, 2)),
}
# Plane frame of each convention: frame axis i is sign[i] * world axis source[i]. A permutation with
# signs, so the change of frame is exact in floating point.
PLANE_FRAMES: dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]] = {
    "eg3d": ((0, 1, 2), (1.0, 1.0, 1.0)),
    "xyz": ((0, 1, 2), (1.0, 1.0, 1.0)),
    "epigraf": ((2, 1, 0), (1.0, 1.0, -1.0)),
}
_IDENTITY_FRAME = ((0, 1, 2), (1.0, 1.0, 1.0))

# Zero texels added before / after each plane axis so that floor(q) in [-1, S] always has both
# bilinear neighbours inside the table: zero padding then needs no masks.
_PAD_BEFORE = 1
_PAD_AFTER = 2
# Index tensors switch from int32 to int64 when the table's rows or the number of indices (points x
# corners, which embedding_bag's bag offsets count) reach this.
INT32_INDEX_LIMIT = 2**31


def plane_axes(convention: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(width axis, height axis) of the three planes for ``convention`` ("eg3d" or "xyz")."""
    if convention not in PLANE_AXES:
        raise ValueError(f"convention: expected one of {sorted(PLANE_AXES)}, got {convention!r}")
    return PLANE_AXES[convention]


def to_plane_frame(points: Tensor, convention: str = "eg3d") -> Tensor:
    """World points [..., 3] in the convention's plane frame [..., 3] (the identity for eg3d/xyz)."""
    plane_axes(convention)
    source, sign = PLANE_FRAMES[convention]
    if (source, sign) == _IDENTITY_FRAME:
        return points
    # A device constant: a fresh tensor from Python numbers would be copied to the GPU every call.
    return points[..., list(source)] * device_constant(sign, points.device, points.dtype)


def plane_axis_names(convention: str) -> list[tuple[str, str]]:
    """(width, height) world-axis names of the three planes: [("x", "y"), ("x", "z"), ("z", "x")] for
    "eg3d"; a leading "-" marks a negated axis (EpiGRAF: ("z", "y"), ("z", "-x"), ("y", "-x"))."""
    source, sign = PLANE_FRAMES[convention]
    names = [("-" if sign[i] < 0 else "") + "xyz"[source[i]] for i in range(3)]
    return [(names[w], names[h]) for w, h in plane_axes(convention)]


def project_onto_planes(points: Tensor, convention: str = "eg3d") -> Tensor:
    """Plane coordinates of ``points`` [N, P, 3] -> [N, 3, P, 2] (grid_sample order: width, height)."""
    _check_points(points)
    framed = to_plane_frame(points, convention)
    return torch.stack([framed[..., list(axes)] for axes in plane_axes(convention)], dim=1)


def _check_points(points: Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points: expected shape [N, P, 3], got {list(points.shape)}")


def _check_planes(planes: Tensor, name: str = "planes") -> None:
    if planes.ndim != 5 or planes.shape[1] != 3:
        raise ValueError(f"{name}: expected shape [N, 3, C, S, S], got {list(planes.shape)}")
    if planes.shape[-1] != planes.shape[-2]:
        raise ValueError(f"{name}: planes must be square, got {planes.shape[-2]}x{planes.shape[-1]}")


class _GradientBuffer:
    """One dense gradient for a row table, summed in place by every gather that reads the table.

    A chunked render gathers from the same table once per chunk; returning a full-size gradient from
    each chunk's backward would allocate, zero and sum one table-sized tensor per chunk.
    """

    def __init__(self) -> None:
        self.grad: Tensor | None = None

    def scatter(self, rows: Tensor, index: Tensor, weight: Tensor, grad_out: Tensor) -> None:
        if self.grad is None:
            self.grad = torch.zeros_like(rows)
        _scatter_rows(self.grad, index, weight, grad_out)

    def take(self) -> Tensor | None:
        grad, self.grad = self.grad, None
        return grad


def backward_chunk(device: torch.device, corners: int, channels: int) -> int:
    """Points per backward chunk for ``corners`` x ``channels`` per point, by ``kernel_paths(device)``:
    a fixed count that keeps the [chunk, K, C] scatter source in cache on CPU, about
    ``gather_backward_elements`` source elements per chunk (few large kernels, bounded memory) elsewhere."""
    paths = kernel_paths(device)
    if paths.gather_backward_points is not None:
        return paths.gather_backward_points
    return max(1, paths.gather_backward_elements // max(1, corners * channels))


def _scatter_rows(target: Tensor, index: Tensor, weight: Tensor, grad_out: Tensor) -> None:
    """target[index[b, k]] += weight[b, k] * grad_out[b], in chunks (``backward_chunk``)."""
    chunk = backward_chunk(target.device, index.shape[1], target.shape[1])
    for start in range(0, index.shape[0], chunk):
        stop = start + chunk
        source = grad_out[start:stop, None, :] * weight[start:stop, :, None]
        # index_add_ is several times slower with int32 indices than with int64.
        target.index_add_(0, index[start:stop].reshape(-1).long(), source.reshape(-1, target.shape[1]))


class _SharedRows(torch.autograd.Function):
    """Identity on a row table whose backward hands over the gathers' accumulated gradient."""

    @staticmethod
    def forward(ctx, table: Tensor, buffer: _GradientBuffer) -> Tensor:  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.buffer = buffer
        return table.view_as(table)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor | None) -> tuple[Tensor | None, None]:  # type: ignore[override]
        accumulated = ctx.buffer.take()
        if grad is None:
            return accumulated, None
        return (grad if accumulated is None else accumulated + grad), None


class _BilinearGather(torch.autograd.Function):
    """out[b] = sum_k weight[b, k] * rows[index[b, k]] with a scatter-based backward.

    Shapes: rows [T, C], index [B, K] (int32 or int64), weight [B, K] -> out [B, C]. With a ``buffer`` the
    rows' gradient is added to it (see ``_SharedRows``) instead of being returned.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, rows: Tensor, index: Tensor, weight: Tensor, buffer: _GradientBuffer | None
    ) -> Tensor:
        ctx.save_for_backward(rows, index, weight)
        ctx.buffer = buffer
        return F.embedding_bag(index, rows, per_sample_weights=weight, mode="sum")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, Tensor | None, None]:  # type: ignore[override]
        rows, index, weight = ctx.saved_tensors
        grad_rows = grad_weight = None
        # embedding_bag's own backward sorts all indices first, which costs more than the scatter.
        if ctx.needs_input_grad[0]:
            if ctx.buffer is not None:
                ctx.buffer.scatter(rows, index, weight, grad_out)
            else:
                grad_rows = torch.zeros_like(rows)
                _scatter_rows(grad_rows, index, weight, grad_out)
        if ctx.needs_input_grad[2]:
            grad_weight = torch.empty_like(weight)
            chunk = backward_chunk(rows.device, index.shape[1], rows.shape[1])
            for start in range(0, index.shape[0], chunk):
                stop = start + chunk
                corners = rows[index[start:stop]]
                grad_weight[start:stop] = (corners @ grad_out[start:stop, :, None]).squeeze(-1)
        return grad_rows, None, grad_weight, None


def gather_bilinear(rows: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Weighted row gather: rows [T, C], index [B, K], weight [B, K] -> [B, C].

    Differentiable in ``rows`` and ``weight``.
    """
    return _BilinearGather.apply(rows, index, weight, None)


def _traceable_gather(rows: Tensor, index: Tensor, weight: Tensor, buffer: _GradientBuffer | None) -> Tensor:
    """``_BilinearGather`` outside tracing; its forward alone inside (TorchScript and ONNX exporters
    cannot record a Python autograd function, and an exported graph computes no gradients)."""
    if torch.jit.is_tracing():
        return F.embedding_bag(index, rows, per_sample_weights=weight, mode="sum")
    return _BilinearGather.apply(rows, index, weight, buffer)


class _TriplaneLayout(NamedTuple):
    """Per-tri-plane constants turning texel coordinates [P, 3] into corner weights/indices [P, 12].

    Corner column ``k`` = (plane, lower, right) reads its height value from column ``height_column[k]``
    and its width value from ``width_column[k]`` of ``[1 - f | f]`` [P, 6] (f: the per-axis bilinear
    fractions); plane ``p``'s top-left texel is given by the texel floor along ``plane_height_axis[p]``
    and ``plane_width_axis[p]``.
    """

    size: int
    stride: int  # padded plane side: rows per texel row of the table
    height_column: Tensor  # [12] int64: height axis + 3 * lower
    width_column: Tensor  # [12] int64: width axis + 3 * right
    plane_height_axis: Tensor  # [3] int64
    plane_width_axis: Tensor  # [3] int64
    index_offset: Tensor  # [N, 1, 12] int64: each corner's row when the texel floor is (0, 0)


class TriplaneSampler:
    """Bilinear lookup in one tri-plane or in several whose features are summed (Mimic3D: P^c + P^r).

    The planes are re-laid out once at construction (one copy into a float32 table, gradient flows back
    to them), so build one sampler per set of planes and query it for many chunks of points.

    Numerics: indices are computed with integer arithmetic and the bilinear weights in float32 with
    autocast disabled, so results do not depend on ``torch.autocast``, TF32 matmuls or the planes'
    dtype; features come back in float32.

    planes: [N, 3, C, S, S] or a sequence of such tensors (same N and C, any S each).
    align_corners: grid_sample's alignment (False: texel centres at (i + 0.5) / S * 2 - 1, EG3D;
    True: at i / (S - 1) * 2 - 1, EpiGRAF); only the texel coordinate transform depends on it.
    """

    def __init__(
        self,
        planes: Tensor | Sequence[Tensor],
        box_warp: float,
        convention: str = "eg3d",
        align_corners: bool = False,
    ) -> None:
        plane_list = [planes] if isinstance(planes, Tensor) else list(planes)
        if not plane_list:
            raise ValueError("planes: expected a tensor or a non-empty sequence of tensors")
        for i, p in enumerate(plane_list):
            _check_planes(p, f"planes[{i}]" if len(plane_list) > 1 else "planes")
            if p.shape[:3] != plane_list[0].shape[:3]:
                raise ValueError(
                    f"planes[{i}]: batch and channels {list(p.shape[:3])} differ from planes[0] "
                    f"{list(plane_list[0].shape[:3])}"
                )
        if not box_warp > 0:
            raise ValueError(f"box_warp: expected a positive number, got {box_warp}")
        self.batch_size, _, self.channels = plane_list[0].shape[:3]
        self.box_warp = float(box_warp)
        self.convention = convention
        self.align_corners = bool(align_corners)
        axes = plane_axes(convention)
        self._layouts: list[_TriplaneLayout] = []
        row_offset = 0
        for p in plane_list:
            self._layouts.append(_layout(p.shape[-1], axes, self.batch_size, row_offset, p.device))
            row_offset += _table_rows(p)
        self.table_rows = row_offset
        with torch.autocast(plane_list[0].device.type, enabled=False):
            rows = _row_table(plane_list, row_offset)
        self._grad_buffer: _GradientBuffer | None = None
        if torch.is_grad_enabled() and rows.requires_grad:
            self._grad_buffer = _GradientBuffer()
            rows = _SharedRows.apply(rows, self._grad_buffer)
        self.rows = rows

    def corners(self, points: Tensor, plane_scale: float = 1.0) -> tuple[Tensor, Tensor]:
        """Row indices and float32 bilinear weights of every corner: [N * P, 12 * n_triplanes] each.

        Corners are ordered (tri-plane, plane, height 0/1, width 0/1). ``plane_scale`` multiplies the
        weights (1/3 turns the per-plane sum into EG3D's plane mean). Indices are int32, or int64 when
        the table's rows or the index count reach ``INT32_INDEX_LIMIT``.
        """
        _check_points(points)
        if points.shape[0] != self.batch_size:
            raise ValueError(f"points: batch size {points.shape[0]} != planes batch size {self.batch_size}")
        n, p, _ = points.shape
        # int32 indices are cheaper to build and gather with; embedding_bag's bag offsets (points x
        # corners) share their dtype.
        big = max(self.table_rows, n * p * 12 * len(self._layouts)) >= INT32_INDEX_LIMIT
        index_dtype = torch.int64 if big else torch.int32
        with torch.autocast(points.device.type, enabled=False):
            # float32 at least (float64 stays: gradient checks).
            scaled = to_plane_frame(full_precision(points), self.convention) * (2 / self.box_warp)
            indices, weights = [], []
            for layout in self._layouts:
                texel = texel_coordinates(scaled, layout.size, self.align_corners).reshape(n * p, 3)
                texel_floor = texel.floor()
                frac = texel - texel_floor
                both = torch.cat([1 - frac, frac], 1)  # [P, 6]: (1 - f, f) per axis
                height = both.index_select(1, layout.height_column)
                weight = height * both.index_select(1, layout.width_column)
                if plane_scale != 1:
                    weight = weight * plane_scale
                weights.append(weight.to(self.rows.dtype))
                # A NaN coordinate keeps NaN weights (NaN features, as EG3D's mean) but needs a valid row.
                floor = torch.nan_to_num(texel_floor, nan=0.0)
                # Each plane's top-left texel, height * stride + width: elementwise products and sums
                # of integers below (S + 3)^2 < 2^24, exact in float32 (unlike a TF32 or fp16 matmul);
                # the batch and corner offsets, which can be large, are added in integer arithmetic.
                plane_base = floor.index_select(1, layout.plane_height_axis) * layout.stride
                plane_base = (plane_base + floor.index_select(1, layout.plane_width_axis)).to(index_dtype)
                corners = plane_base.view(n, p, 3, 1).expand(n, p, 3, 4).reshape(n, p, 12)
                indices.append((corners + layout.index_offset.to(index_dtype)).view(n * p, 12))
        if len(indices) == 1:
            return indices[0], weights[0]
        return torch.cat(indices, 1), torch.cat(weights, 1)

    def mean_features(self, points: Tensor) -> Tensor:
        """Plane-averaged features, summed over tri-planes: points [N, P, 3] -> [N, P, C] float32."""
        index, weight = self.corners(points, plane_scale=1 / 3)
        with torch.autocast(points.device.type, enabled=False):
            out = _traceable_gather(self.rows, index, weight, self._grad_buffer)
        return out.view(points.shape[0], points.shape[1], self.channels)

    def plane_features(self, points: Tensor) -> Tensor:
        """Per-plane features, summed over tri-planes: points [N, P, 3] -> [N, 3, P, C] float32."""
        index, weight = self.corners(points)
        n, p, _ = points.shape
        # Group the corners by plane: [N*P, triplane, plane, 4] -> [N*P*plane, triplane * 4].
        index = index.view(n * p, -1, 3, 4).transpose(1, 2).reshape(n * p * 3, -1)
        weight = weight.view(n * p, -1, 3, 4).transpose(1, 2).reshape(n * p * 3, -1)
        with torch.autocast(points.device.type, enabled=False):
            out = _traceable_gather(self.rows, index, weight, self._grad_buffer)
        return out.view(n, p, 3, self.channels).permute(0, 2, 1, 3)


def texel_coordinates(coords: Tensor, size: int, align_corners: bool = False) -> Tensor:
    """Grid coordinates in [-1, 1] -> texel coordinates of an axis of ``size`` texels, clamped to
    [-1, size] (beyond that every bilinear neighbour is zero padding); any shape, float32.

    The same unnormalisation as grid_sample's CPU kernel: ((x + 1) * S/2) - 0.5 with
    ``align_corners=False`` (texel centres at (i + 0.5) / S * 2 - 1), (x + 1) * (S - 1)/2 with True
    (the corner texels' centres at -1 and 1, EpiGRAF).
    """
    if align_corners:
        texel = (coords + 1) * ((size - 1) / 2)
    else:
        texel = (coords + 1) * (size / 2) - 0.5
    return texel.clamp(-1, size)


def _table_rows(planes: Tensor) -> int:
    n, _, _, size, _ = planes.shape
    return n * 3 * (size + _PAD_BEFORE + _PAD_AFTER) ** 2


def _row_table(plane_list: Sequence[Tensor], total_rows: int) -> Tensor:
    """All tri-planes as one zero-bordered channels-last table [total_rows, C], copied once (float32 at
    least: reduced-precision planes are upcast by the copy).

    Each [N, 3, C, S, S] tri-plane occupies N * 3 * (S + 3)^2 consecutive rows laid out as
    [N, 3, S + 3, S + 3] texels (``_PAD_BEFORE`` zero rows/columns before the plane, ``_PAD_AFTER`` after).
    """
    first = plane_list[0]
    channels = first.shape[2]
    rows = first.new_empty(total_rows, channels, dtype=torch.promote_types(first.dtype, torch.float32))
    start = 0
    for p in plane_list:
        n, _, _, size, _ = p.shape
        stride = size + _PAD_BEFORE + _PAD_AFTER
        table = rows[start : start + _table_rows(p)].view(n, 3, stride, stride, channels)
        inner = slice(_PAD_BEFORE, _PAD_BEFORE + size)
        table[:, :, :_PAD_BEFORE].zero_()
        table[:, :, _PAD_BEFORE + size :].zero_()
        table[:, :, inner, :_PAD_BEFORE].zero_()
        table[:, :, inner, _PAD_BEFORE + size :].zero_()
        table[:, :, inner, inner].copy_(p.permute(0, 1, 3, 4, 2))
        start += _table_rows(p)
    return rows


@functools.lru_cache(maxsize=64)
def _layout(
    size: int, axes: tuple[tuple[int, int], ...], batch_size: int, row_offset: int, device: torch.device
) -> _TriplaneLayout:
    """Constants for one S x S tri-plane whose padded table starts at row ``row_offset``.

    Cached per device: building them on the CPU and copying them for every render would make each
    render wait for the copies (a host-device synchronisation on CUDA).
    """
    stride = size + _PAD_BEFORE + _PAD_AFTER
    if stride * stride >= 2**24:
        raise ValueError(f"planes: {size}x{size} is too large (texel indices are exact below 4093^2)")
    height_column, width_column, corner_offset = [], [], []
    for plane, (w_axis, h_axis) in enumerate(axes):
        for lower in range(2):
            for right in range(2):
                height_column.append(h_axis + 3 * lower)
                width_column.append(w_axis + 3 * right)
                corner_offset.append(
                    plane * stride * stride + _PAD_BEFORE * (stride + 1) + lower * stride + right
                )
    batch_start = torch.arange(batch_size).view(-1, 1, 1) * (3 * stride * stride) + row_offset
    offsets = batch_start + torch.tensor(corner_offset)

    def const(values: list[int] | Tensor) -> Tensor:
        return torch.as_tensor(values, dtype=torch.long).to(device)

    return _TriplaneLayout(
        size,
        stride,
        const(height_column),
        const(width_column),
        const([h_axis for _, h_axis in axes]),
        const([w_axis for w_axis, _ in axes]),
        const(offsets),
    )


def sample_triplane(
    planes: Tensor | Sequence[Tensor],
    points: Tensor,
    box_warp: float,
    convention: str = "eg3d",
    align_corners: bool = False,
) -> Tensor:
    """Per-plane bilinear features of ``points`` [N, P, 3] on ``planes`` [N, 3, C, S, S] -> [N, 3, P, C].

    Equals EG3D's ``sample_from_planes`` (grid_sample, align_corners=False, zero padding) or, with
    ``convention="epigraf", align_corners=True``, EpiGRAF's ``tri_plane_renderer`` lookup; a
    sequence of tri-planes gives the sum of their features (Mimic3D's coarse + residual planes).
    Differentiable in planes and points (first order only).
    """
    return TriplaneSampler(planes, box_warp, convention, align_corners).plane_features(points)
