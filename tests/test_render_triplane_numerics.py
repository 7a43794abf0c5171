"""The tri-plane sampler's index/weight arithmetic: exact, autocast-proof, int64 when needed, and the
device-dependent backward chunking."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from mimic3d.render import TriplaneSampler, project_onto_planes, sample_triplane
from mimic3d.render import triplane as triplane_module
from mimic3d.render.triplane import backward_chunk, plane_axes
from mimic3d.runtime import ACCELERATOR_PATHS, CPU_PATHS, forced_kernel_paths, kernel_paths


def float_matmul_corners(sampler: TriplaneSampler, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous formulation: float texel coordinates spread onto the 12 corner columns by 0/1
    selection matmuls, and the row index as a float matmul of the texel floor (exact in float32 up to
    2^24 rows, not in fp16 or TF32). Only for a single tri-plane."""
    (size,) = [layout.size for layout in sampler._layouts]
    stride = size + 3
    n, p, _ = points.shape
    texel = ((points * (2 / sampler.box_warp) + 1) * (size / 2) - 0.5).clamp(-1, size).reshape(n * p, 3)
    floor = texel.floor()
    frac = texel - floor
    h_frac, h_comp, w_frac, w_comp, mix = (torch.zeros(3, 12) for _ in range(5))
    offset = torch.zeros(12, dtype=torch.long)
    for plane, (w_axis, h_axis) in enumerate(plane_axes(sampler.convention)):
        for lower in range(2):
            for right in range(2):
                col = plane * 4 + lower * 2 + right
                (h_frac if lower else h_comp)[h_axis, col] = 1
                (w_frac if right else w_comp)[w_axis, col] = 1
                mix[h_axis, col] += stride
                mix[w_axis, col] += 1
                offset[col] = plane * stride * stride + (stride + 1) + lower * stride + right
    height = frac @ h_frac + (1 - frac) @ h_comp
    width = frac @ w_frac + (1 - frac) @ w_comp
    batch = torch.arange(n).view(-1, 1, 1) * (3 * stride * stride)
    index = (floor @ mix).long().view(n, p, 12) + batch + offset
    return index.view(n * p, 12), height * width


def _inputs(size: int = 12, seed: int = 0, n: int = 2, points: int = 400):
    gen = torch.Generator().manual_seed(seed)
    planes = torch.randn(n, 3, 5, size, size, generator=gen)
    # Past the box on every side (zero padding and the clamps), plus exact texel centres and edges.
    xyz = (torch.rand(n, points, 3, generator=gen) * 2 - 1) * 0.7
    centres = (torch.arange(size) + 0.5) / size - 0.5
    xyz[:, :size, :] = centres[:, None]
    xyz[:, size : size + 2, :] = torch.tensor([-0.5, 0.5])[:, None]
    return planes, xyz


@pytest.mark.parametrize("convention", ["eg3d", "xyz"])
def test_integer_indices_and_weights_equal_the_float_formulation_exactly(convention: str) -> None:
    planes, points = _inputs()
    sampler = TriplaneSampler(planes, 1.0, convention)
    index, weight = sampler.corners(points)
    ref_index, ref_weight = float_matmul_corners(sampler, points)
    # Both compute the same products of the same float32 fractions (the 0/1 matmuls add exact zeros).
    assert index.dtype == torch.int32
    assert torch.equal(index.long(), ref_index)
    assert torch.equal(weight, ref_weight)


def test_indices_of_large_planes_are_exact_under_fp16_autocast() -> None:
    # Rows of a 512^2 tri-plane table reach 3 * 515^2 ~ 8e5: far past fp16's 65504 and its 11-bit
    # mantissa, so any index arithmetic in the autocast dtype would be wrong.
    planes = torch.zeros(1, 3, 1, 512, 512)
    points = torch.tensor([[[0.49, 0.49, 0.49], [-0.3, 0.2, 0.45], [0.1, -0.45, 0.0]]])
    sampler = TriplaneSampler(planes, 1.0, "eg3d")
    exact, weight = sampler.corners(points)
    with torch.autocast("cpu", dtype=torch.float16):
        index, weight_fp16 = sampler.corners(points)
    assert torch.equal(index, exact) and torch.equal(weight_fp16, weight)
    assert weight_fp16.dtype == torch.float32
    ref_index, _ = float_matmul_corners(sampler, points.double().float())
    assert torch.equal(exact.long(), ref_index) and int(exact.max()) > 65504


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_features_under_autocast_equal_float32(dtype: torch.dtype) -> None:
    planes, points = _inputs(seed=1)
    sampler = TriplaneSampler(planes, 1.0, "xyz")
    expected = sampler.mean_features(points)
    with torch.autocast("cpu", dtype=dtype):
        got = sampler.mean_features(points)
    # The lookup is done in float32 with autocast off: identical kernels, identical result.
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    # Reduced-precision planes are upcast once into the float32 table: the lookup equals float32's on
    # the rounded planes.
    rounded = planes.to(dtype)
    torch.testing.assert_close(
        TriplaneSampler(rounded, 1.0, "xyz").mean_features(points),
        TriplaneSampler(rounded.float(), 1.0, "xyz").mean_features(points),
        rtol=0,
        atol=0,
    )


def test_int64_indices_when_points_times_corners_reach_the_limit(monkeypatch) -> None:
    planes, points = _inputs(seed=2)
    sampler = TriplaneSampler(planes, 1.0, "eg3d")
    index32, _ = sampler.corners(points)
    expected = sampler.plane_features(points)
    # Forcing the limit to just the index count of this call (2 x 400 points x 12 corners) flips the dtype.
    monkeypatch.setattr(triplane_module, "INT32_INDEX_LIMIT", index32.numel())
    index64, _ = sampler.corners(points)
    assert index32.dtype == torch.int32 and index64.dtype == torch.int64
    assert torch.equal(index64, index32.long())
    assert torch.equal(sampler.plane_features(points), expected)
    # The table's own row count also counts (a huge batch of planes).
    monkeypatch.setattr(triplane_module, "INT32_INDEX_LIMIT", sampler.table_rows)
    assert sampler.corners(points[:, :1])[0].dtype == torch.int64


@pytest.mark.parametrize("convention", ["eg3d", "xyz"])
def test_align_corners_true_equals_grid_sample(convention: str) -> None:
    planes, points = _inputs(seed=3)
    n, _, c, h, w = planes.shape
    coords = project_onto_planes(points * 2, convention)
    reference = (
        F.grid_sample(planes.reshape(n * 3, c, h, w), coords.reshape(n * 3, 1, -1, 2), align_corners=True)
        .permute(0, 3, 2, 1)
        .reshape(n, 3, -1, c)
    )
    got = sample_triplane(planes, points, 1.0, convention, align_corners=True)
    # Different float32 rounding of the unnormalised coordinate (one product, error ~S * eps).
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-5)
    assert not torch.allclose(got, sample_triplane(planes, points, 1.0, convention), atol=1e-3)


def test_backward_chunk_depends_on_the_device() -> None:
    assert kernel_paths("cpu") == CPU_PATHS and kernel_paths("cuda") == ACCELERATOR_PATHS
    # CPU: a fixed, cache-sized number of points; GPUs: a fixed number of scatter-source elements.
    assert backward_chunk(torch.device("cpu"), 24, 32) == 4096
    assert backward_chunk(torch.device("cuda"), 12, 32) == (1 << 26) // (12 * 32)
    assert backward_chunk(torch.device("cuda"), 24, 32) == (1 << 26) // (24 * 32)


@pytest.mark.parametrize(
    "paths", [CPU_PATHS, ACCELERATOR_PATHS, replace(ACCELERATOR_PATHS, gather_backward_elements=700)]
)
def test_gradients_do_not_depend_on_the_backward_chunking(paths) -> None:
    planes, points = _inputs(seed=4, points=300)
    coarse = planes.clone().requires_grad_(True)
    residual = torch.randn(2, 3, 5, 24, 24, generator=torch.Generator().manual_seed(5), requires_grad=True)
    xyz = points.clone().requires_grad_(True)
    upstream = torch.randn(2, 300, 5, generator=torch.Generator().manual_seed(6))

    def grads():
        out = TriplaneSampler([coarse, residual], 1.0, "xyz").mean_features(xyz)
        return torch.autograd.grad((out * upstream).sum(), [coarse, residual, xyz])

    with forced_kernel_paths(replace(CPU_PATHS, gather_backward_points=10**9)):
        expected = grads()  # one chunk
    with forced_kernel_paths(paths):
        got = grads()
    for g, e in zip(got, expected):
        # Chunked scatter-adds sum the same terms in another order: a few float32 ulps of the
        # gradient's magnitude (each texel gathers O(10) terms of O(1)).
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
