"""The 3D-aware re-organisation against its per-point definition, and the 3D-aware blocks."""

from __future__ import annotations

import itertools

import pytest
import torch
from numerics import assert_close

from mimic3d.models.aware3d import TriplaneSynthesisLayer
from mimic3d.models.triplane_conv import modulated_triplane_conv, pixels_last, reorganize_triplane
from mimic3d.nn.modulated import modulated_conv2d
from mimic3d.nn.resample import setup_filter

# (H axis, W axis) of each plane, axes numbered x=0, y=1, z=2 (Mimic3D's xy, yz, zx layout).
PLANE_AXES = [(1, 0), (2, 1), (0, 2)]


def _feature_at(planes: torch.Tensor, plane: int, point: tuple[int, int, int]) -> torch.Tensor:
    h_axis, w_axis = PLANE_AXES[plane]
    return planes[:, plane, :, point[h_axis], point[w_axis]]


def _reorganize_brute_force(planes: torch.Tensor) -> torch.Tensor:
    """For every cell of every target plane, average each source plane over the target's missing axis."""
    n, _, c, r, _ = planes.shape
    out = torch.zeros(n, 3, 3 * c, r, r, dtype=torch.float64)
    for target, (h_axis, w_axis) in enumerate(PLANE_AXES):
        missing = 3 - h_axis - w_axis
        for h, w in itertools.product(range(r), range(r)):
            for source in range(3):
                total = torch.zeros(n, c, dtype=torch.float64)
                for k in range(r):
                    point = [0, 0, 0]
                    point[h_axis], point[w_axis], point[missing] = h, w, k
                    total += _feature_at(planes, source, tuple(point)).double()
                out[:, target, source * c : (source + 1) * c, h, w] = total / r
    return out


def test_reorganize_matches_per_point_pooling():
    torch.manual_seed(0)
    planes = torch.randn(2, 3, 4, 5, 5)
    expected = _reorganize_brute_force(planes)
    got = reorganize_triplane(planes)
    assert got.shape == (2, 3, 12, 5, 5)
    assert_close(got, expected, terms=5)  # a mean over the 5 cells of the pooled axis


def test_reorganize_keeps_own_plane_and_is_constant_along_pooled_axis():
    planes = torch.randn(1, 3, 2, 6, 6)
    out = reorganize_triplane(planes)
    for p in range(3):
        torch.testing.assert_close(out[:, p, 2 * p : 2 * p + 2], planes[:, p], rtol=0, atol=0)  # a copy
    # xy's yz block depends on y (rows) only; its zx block depends on x (columns) only.
    assert torch.allclose(out[:, 0, 2:4], out[:, 0, 2:4, :, :1].expand_as(out[:, 0, 2:4]))
    assert torch.allclose(out[:, 0, 4:6], out[:, 0, 4:6, :1, :].expand_as(out[:, 0, 4:6]))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 4, 5, 5), (1, 3, 4, 5, 6)])
def test_reorganize_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="planes"):
        reorganize_triplane(torch.zeros(shape))


def _reference_triplane_conv(x, weight, styles, aware, up, padding, resample_filter, demodulate):
    """Official formulation: re-organise (if aware), then one modulated conv per (sample, plane)."""
    n, c3, h, w = x.shape
    planes = x.view(n, 3, c3 // 3, h, w)
    if aware:
        planes = reorganize_triplane(planes)
    batched = planes.reshape(n * 3, -1, h, w)
    out = modulated_conv2d(
        batched,
        weight,
        styles.reshape(n * 3, -1),
        up=up,
        padding=padding,
        resample_filter=resample_filter,
        demodulate=demodulate,
        flip_weight=up == 1,
    )
    return out.reshape(n, -1, *out.shape[-2:])


@pytest.mark.parametrize(
    "aware, size, up, kernel, demodulate",
    [
        (True, 4, 1, 3, True),  # narrower than the narrow image: plain path
        (True, 12, 1, 3, True),
        (True, 16, 2, 3, True),
        (True, 4, 2, 3, True),
        (True, 9, 1, 1, False),  # ToRGB
        (False, 8, 2, 3, True),  # S^3D: per-plane styles, no re-organisation
        (False, 8, 1, 1, False),
    ],
)
def test_structured_triplane_conv_equals_reorganise_then_convolve(aware, size, up, kernel, demodulate):
    torch.manual_seed(1)
    n, c, o = 2, 5, 6
    x = torch.randn(n, 3 * c, size, size)
    weight = torch.randn(o, c * (3 if aware else 1), kernel, kernel)
    styles = torch.randn(n, 3, weight.shape[1])
    f = setup_filter([1, 3, 3, 1])
    args = (x, weight, styles, aware, up, kernel // 2, f, demodulate)
    expected = _reference_triplane_conv(*args)
    got = modulated_triplane_conv(*args)
    assert got.shape == expected.shape == (n, 3 * o, size * up, size * up)
    # A kernel x kernel convolution over 3c channels and the 4x4 up-filter, demodulated.
    assert_close(got, expected, terms=3 * c * kernel**2 + 16, depth=2)


def test_structured_triplane_conv_gradients_match_reference():
    torch.manual_seed(2)
    x = torch.randn(1, 3 * 3, 10, 10, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 9, 3, 3, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(1, 3, 9, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()
    probe = torch.randn(1, 12, 20, 20, dtype=torch.float64)
    grads = []
    for fn in (modulated_triplane_conv, _reference_triplane_conv):
        out = fn(x, weight, styles, True, 2, 1, f, True)
        grads.append(torch.autograd.grad((out * probe).sum(), (x, weight, styles)))
    for ours, theirs in zip(*grads):
        assert_close(ours, theirs, terms=9 * 9 * 20 * 20, depth=3)  # float64: its eps


def test_pixels_last_keeps_values_and_allows_batch_in_channels_view():
    x = torch.randn(2, 6, 5, 7)
    y = pixels_last(x)
    assert torch.equal(x, y)
    assert y.view(1, 12, 5, 7).is_contiguous(memory_format=torch.channels_last)
    assert pixels_last(y) is y


def test_layer_clamp_and_backward():
    torch.manual_seed(3)
    layer = TriplaneSynthesisLayer(4, 4, w_dim=8, resolution=8, aware=True, up=2, conv_clamp=0.1)
    x = torch.randn(2, 12, 4, 4, requires_grad=True)
    out = layer(x, torch.randn(2, 8), noise_mode="random")
    assert out.shape == (2, 12, 8, 8) and out.abs().max() <= 0.1
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
